#!/usr/bin/env python3
"""Choose how novel-view depth is fused with the views' own live depth, on data the evaluation never uses (prints a table, writes JSON).

    python training/tune_fusion.py --set hololens_train --views 6
    python training/tune_fusion.py --set procedural --views 3 --num 96 --variant min_views=1 --variant min_views=2
    python training/tune_fusion.py --set hololens_train --views 6 --variant min_views=1 --figure fusion.jpg
    python training/tune_fusion.py --set procedural --views 3 --num 96 --variant min_views=1 --oracle 2   # bounds no rule can pass

For each novel target: the depth the node publishes without fusion (network + refinement), each
conditioning view's own live depth (`MVGDPredictor.view_depths`: that view as the target, as the
node had it when the view was the live camera), then `MVGDPredictor.fused` with every variant on
that same depth. Scored on the observable regime as evaluate_model does: median over targets of
AbsRel and δ<1.25, and the share of pixels fused. Sets as in tune_refine.py (none is an
evaluation set). Variants: `--variant key=value[,key=value]` over FusionConfig fields.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "training"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from tune_refine import load_tuning, observable_targets, parse_variants, report_tuning, tuning_parser  # noqa: E402
from mvgd_core.config import settings_from_text  # noqa: E402
from mvgd_core.data.types import collate_samples  # noqa: E402
from mvgd_core.inference import MVGDPredictor, views_from_tensor  # noqa: E402
from mvgd_core.metrics import depth_scores  # noqa: E402
from mvgd_core.view_depth_fusion import FusionConfig, view_splats  # noqa: E402

DEFAULT_VARIANTS = ("min_views=1", "min_views=2", "min_views=3")


def parse_variant(text: str) -> FusionConfig:
    """'key=value,...' over FusionConfig fields (not `enabled`); ValueError naming them if malformed."""
    return settings_from_text(FusionConfig, text)


ORACLE_ROWS = ("views' own live depth", "oracle: nearest vote to the truth", "oracle: nearest of votes and network")


def best_candidate(cands: torch.Tensor, gt: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """(H, W): per pixel the candidate (C, H, W; 0 = none) nearest the truth gt (H, W); fallback
    where no candidate has a value. An oracle: it reads the ground truth."""
    err = torch.where(cands > 0, (cands - gt).abs(), torch.full_like(cands, float("inf")))
    best = cands.gather(0, err.argmin(0, keepdim=True))[0]
    return torch.where((cands > 0).any(0), best, fallback)


def oracle_scores(depth, sample, view_depth, radius: int) -> dict:
    """Bounds no fusion rule can pass, for one novel target: depth (H, W) the network's (refined),
    view_depth (N, H, W) the conditioning views' own live depth; each view's splat widened by
    `radius` px as `FusionConfig.splat_radius` does. {ORACLE_ROWS[i]: depth_scores}; the first is
    the median over the views of their own live depth's AbsRel against their true depth."""
    if sample.cond_depth is None:
        raise ValueError("tune_fusion --oracle: the tuning samples carry no depth of their conditioning views")
    gt = sample.tgt_depth
    splats = view_splats(sample.tgt_K, sample.tgt_T_wc, tuple(gt.shape), list(view_depth), list(sample.cond_K), list(sample.cond_T_wc), radius)
    own = [depth_scores(view_depth[v], sample.cond_depth[v]) for v in range(view_depth.shape[0])]
    return {ORACLE_ROWS[0]: {key: float(np.median([o[key] for o in own])) for key in own[0]},
            ORACLE_ROWS[1]: depth_scores(best_candidate(splats, gt, depth), gt),
            ORACLE_ROWS[2]: depth_scores(best_candidate(torch.cat([splats, depth[None]]), gt, depth), gt)}


def run(pred: MVGDPredictor, samples, variants: dict, batch: int = 8, oracle_radius: int | None = None) -> tuple[dict, list]:
    """({"no fusion" | variant: {"targets", "abs_rel_median", "delta1_median", "fused_share"}} over
    observable targets, picks: (sample, depth without fusion, fused depth, fused mask) of the first
    variant on every observable target, in order, for save_figure). oracle_radius: also the
    ORACLE_ROWS (`oracle_scores`; needs the samples' cond_depth)."""
    scores = {"no fusion": []} | {k: [] for k in variants} | ({k: [] for k in ORACLE_ROWS} if oracle_radius is not None else {})
    picks = []
    shares = {k: [] for k in variants}
    shipped = pred.fusion
    try:
        for i in range(0, len(samples), batch):
            chunk = samples[i : i + batch]
            b = collate_samples(chunk)
            view_depth = pred.view_depths(b, 1, i)
            views = views_from_tensor(view_depth, b.cond_K)
            depth = pred.predict_batch(b, "depth", steps=1, seed=i)
            out = {}
            for k, cfg in variants.items():
                pred.fusion = cfg
                out[k] = pred.fused(depth, b.cond_K, b.cond_T_wc, b.tgt_K, b.tgt_T_wc, views)
            for j, s in observable_targets(chunk):
                scores["no fusion"].append(depth_scores(depth[j], s.tgt_depth))
                d0, m0 = next(iter(out.values()))
                picks.append((s, depth[j], d0[j], torch.zeros_like(depth[j], dtype=torch.bool) if m0 is None else m0[j]))
                for k, (d, mask) in out.items():
                    scores[k].append(depth_scores(d[j], s.tgt_depth))
                    shares[k].append(0.0 if mask is None else float(mask[j].float().mean()))
                if oracle_radius is not None:
                    for k, sc in oracle_scores(depth[j], s, view_depth[j], oracle_radius).items():
                        scores[k].append(sc)
    finally:
        pred.fusion = shipped
    med = lambda xs, key: float(np.median([x[key] for x in xs])) if xs else float("nan")  # noqa: E731
    return {k: {"targets": len(v), "abs_rel_median": med(v, "abs_rel"), "delta1_median": med(v, "delta1"),
                "fused_share": float(np.mean(shares[k])) if shares.get(k) else None} for k, v in scores.items()}, picks


def save_figure(path, picks: list, rows: int = 4) -> Path:
    """The first `rows` observable targets (not selected by result): the novel view's true image,
    GT depth, depth without and with fusion (one colour scale), the fused pixels, the two error maps."""
    from mvgd_core import viz

    grid, labels = [], []
    for s, before, after, mask in picks[:rows]:
        lo, hi = viz.depth_range(s.tgt_depth, before, after)
        grid.append([s.tgt_rgb, viz.colorize_depth(s.tgt_depth, lo, hi), viz.colorize_depth(before, lo, hi),
                     viz.colorize_depth(after, lo, hi), np.repeat(mask.numpy()[..., None].astype(np.uint8) * 255, 3, -1),
                     viz.colorize_error(before, s.tgt_depth), viz.colorize_error(after, s.tgt_depth)])
        e0, e1 = (depth_scores(d, s.tgt_depth)["abs_rel"] for d in (before, after))
        labels.append(["novel view (GT image)", f"GT {lo:.1f}-{hi:.1f} m", f"no fusion AbsRel {e0:.3f}", f"fused AbsRel {e1:.3f}",
                       f"fused {100 * float(mask.float().mean()):.0f} %", "error, no fusion", "error, fused"])
    return viz.save_png(path, viz.make_grid(grid, labels, cell_hw=viz.legible_cell(picks[0][0].tgt_depth.shape[-2:])))


def main(argv=None) -> int:
    ap = tuning_parser(__doc__, 64, "FusionConfig overrides, e.g. min_views=2 (repeatable)",
                       "also draw the first 4 observable targets (first variant) to this image",
                       "JSON path (default runs/tune_fusion/<set>_<views>v.json)")
    ap.add_argument("--oracle", type=int, default=None, metavar="RADIUS",
                    help="also the bounds no fusion rule can pass (per pixel the vote nearest the truth, splats widened by RADIUS px)")
    args = ap.parse_args(argv)
    if args.oracle is not None and args.oracle < 0:
        ap.error("--oracle: the splat radius must be >= 0")
    variants = parse_variants(ap, args.variant, DEFAULT_VARIANTS, parse_variant)
    pred, samples = load_tuning(args, "novel")
    res, picks = run(pred, samples, variants, oracle_radius=args.oracle)
    table = ["| novel-view depth | targets | AbsRel | δ<1.25 | pixels fused |", "|---|---|---|---|---|"]
    for k, r in res.items():
        share = "–" if r["fused_share"] is None else f"{r['fused_share']:.2f}"
        table.append(f"| {k} | {r['targets']} | {r['abs_rel_median']:.3f} | {r['delta1_median']:.3f} | {share} |")
    out = Path(args.out) if args.out else ROOT / "runs" / "tune_fusion" / f"{args.set}_{args.views}v.json"
    report_tuning("tune_fusion.py", argv, f"{args.set}, novel targets, {args.views} views, observable targets, medians", table, out,
                  variants, res, args.figure if picks else "", lambda path: save_figure(path, picks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
