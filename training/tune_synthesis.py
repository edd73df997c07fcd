#!/usr/bin/env python3
"""Choose how novel-view RGB is synthesized from the conditioning views, on data the evaluation never uses (prints a table, writes JSON).

    python training/tune_synthesis.py --set hololens_train --views 6
    python training/tune_synthesis.py --set procedural --views 3 --variant sources=1 --variant sources=2
    python training/tune_synthesis.py --set hololens_train --views 6 --variant sources=2 --variant sources=3 --figure synthesis.jpg

For each novel target: the depth the node uses for it (network + refinement, fused with each
conditioning view's own live depth, `MVGDPredictor.view_depths`), the network's RGB as the
fallback, then `synthesize_batch` with every variant on that same depth.
Scored per target (PSNR, SSIM against the true image), medians over all targets and over the
observable ones (as evaluate_model's regimes). Sets as in tune_refine.py (none is an evaluation
set). Variants: `--variant key=value[,key=value]` over SynthesisConfig fields.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "training"))

import numpy as np  # noqa: E402

from tune_refine import load_tuning, observable_targets, parse_variants, report_tuning, tuning_parser  # noqa: E402
from mvgd_core.config import settings_from_text  # noqa: E402
from mvgd_core.data.types import collate_samples  # noqa: E402
from mvgd_core.inference import MVGDPredictor  # noqa: E402
from mvgd_core.metrics import psnr, ssim  # noqa: E402
from mvgd_core.view_synthesis import SynthesisConfig, synthesize_batch  # noqa: E402

DEFAULT_VARIANTS = ("sources=1", "sources=2", "sources=3", "sources=4")


def parse_variant(text: str) -> SynthesisConfig:
    """'key=value,...' over SynthesisConfig fields; ValueError naming them if malformed."""
    return settings_from_text(SynthesisConfig, text)


def run(pred: MVGDPredictor, samples, variants: dict, batch: int = 8) -> tuple[dict, list]:
    """({variant: {"targets", "psnr_median", "ssim_median", "observable": {...same}}}, picks: (sample,
    {variant: rgb}) for every target in order, for save_figure)."""
    rows = {k: [] for k in variants}  # per target: (observable?, psnr, ssim)
    picks = []
    for i in range(0, len(samples), batch):
        chunk = samples[i : i + batch]
        b = collate_samples(chunk)
        depth = pred.predict_batch(b, "depth", steps=1, seed=i, view_depth=pred.view_depths(b, 1, i))  # fused, as the node's
        net_rgb = pred.predict_batch(b, "rgb", steps=1, seed=i, synthesize=False)
        outs = {k: synthesize_batch(b.cond_rgb, b.cond_K, b.cond_T_wc, b.tgt_K, b.tgt_T_wc, depth, net_rgb, cfg)
                for k, cfg in variants.items()}
        observable = {j for j, _ in observable_targets(chunk)}
        for j, s in enumerate(chunk):
            picks.append((s, {k: o[j] for k, o in outs.items()}))
            for k, o in outs.items():
                rows[k].append((j in observable, psnr(o[j], s.tgt_rgb), ssim(o[j], s.tgt_rgb)))

    def stats(rs):
        return {"targets": len(rs), "psnr_median": float(np.median([r[1] for r in rs])) if rs else float("nan"),
                "ssim_median": float(np.median([r[2] for r in rs])) if rs else float("nan")}
    return {k: {**stats(rs), "observable": stats([r for r in rs if r[0]])} for k, rs in rows.items()}, picks


def save_figure(path, picks: list, rows: int = 4) -> Path:
    """The `rows` targets where the first two variants differ most (mean absolute RGB difference):
    the true image, each variant's RGB, and the two variants' absolute difference."""
    from mvgd_core import viz

    names = list(picks[0][1])[:2]
    diff = lambda p: float((p[1][names[0]] - p[1][names[-1]]).abs().mean())  # noqa: E731
    grid, labels = [], []
    for s, rgbs in sorted(picks, key=lambda p: -diff(p))[:rows]:
        d = (rgbs[names[0]] - rgbs[names[-1]]).abs().amax(0)
        grid.append([s.tgt_rgb] + [rgbs[n] for n in names] + [np.repeat((d.clamp(0, 1) * 255).byte().numpy()[..., None], 3, -1)])
        labels.append(["novel view (GT image)"] + [f"{n}: {psnr(rgbs[n], s.tgt_rgb):.2f} dB" for n in names] + ["|difference|"])
    return viz.save_png(path, viz.make_grid(grid, labels, cell_hw=viz.legible_cell(picks[0][0].tgt_depth.shape[-2:])))


def main(argv=None) -> int:
    ap = tuning_parser(__doc__, 64, "SynthesisConfig overrides, e.g. sources=3 (repeatable)",
                       "also draw the 4 targets where the first two variants differ most to this image",
                       "JSON path (default runs/tune_synthesis/<set>_<views>v.json)")
    args = ap.parse_args(argv)
    variants = parse_variants(ap, args.variant, DEFAULT_VARIANTS, parse_variant)
    pred, samples = load_tuning(args, "novel")
    res, picks = run(pred, samples, variants)
    table = ["| view synthesis | targets | PSNR (dB) | SSIM | observable: targets | PSNR | SSIM |", "|---|---|---|---|---|---|---|"]
    for k, r in res.items():
        o = r["observable"]
        table.append(f"| {k} | {r['targets']} | {r['psnr_median']:.2f} | {r['ssim_median']:.3f} | {o['targets']} | {o['psnr_median']:.2f} | {o['ssim_median']:.3f} |")
    out = Path(args.out) if args.out else ROOT / "runs" / "tune_synthesis" / f"{args.set}_{args.views}v.json"
    report_tuning("tune_synthesis.py", argv, f"{args.set}, novel targets, {args.views} views, medians over targets", table, out,
                  variants, res, args.figure if picks else "", lambda path: save_figure(path, picks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
