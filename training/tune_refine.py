#!/usr/bin/env python3
"""Choose the photometric refinement's settings on data the evaluation never uses (prints a table, writes JSON).

    python training/tune_refine.py --set hololens_train --views 3 --mode cond
    python training/tune_refine.py --set tum --views 4 --mode cond --variant min_agree=1 --variant min_agree=2

For each target: the network's depth once (refinement off), then mvgd_core.refine.refine_batch
with every variant on that same depth; scored on the observable regime (mvgd_core.observability)
as evaluate_model does: median over targets of AbsRel and δ<1.25, plus the share of pixels the
refinement replaced and its time per target.

Sets (none is an evaluation set of training/evaluate_model.py):
- hololens_train: the HoloLens walk's TRAINING part (frames 0-278, mvgd_core.data.splits), seeds 7,000,000+;
- procedural: procedural scenes at seeds 6,000,000+ (evaluation uses 2,000,000+);
- tum: TUM fr1/rpy (the shipped small copy), seeds 8,000,000+. It is in the model's training data.
Variants: `--variant key=value[,key=value]` over RefineConfig fields; default: the shipped
settings next to the ones this card compares (MODEL_CARD "Photometric refinement").
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "training"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from evaluate_model import REAL_SAMPLING, _first_existing  # noqa: E402
from mvgd_core.data.sampler import ViewSamplingConfig  # noqa: E402
from mvgd_core.data.types import collate_samples  # noqa: E402
from mvgd_core.inference import MVGDPredictor  # noqa: E402
from mvgd_core.metrics import depth_scores  # noqa: E402
from mvgd_core.model_eval import held_out_samples, sequence_samples  # noqa: E402
from mvgd_core.observability import observability  # noqa: E402
from mvgd_core.config import settings_from_text  # noqa: E402
from mvgd_core.refine import RefineConfig, refine_batch  # noqa: E402

DEFAULT_VARIANTS = ("shipped", "max_sources=3,window=5,min_zncc=0.6")  # stop 14: shipped vs the stop-11 settings


def parse_variant(text: str) -> tuple[str, RefineConfig]:
    """'shipped' or 'key=value,...' over RefineConfig fields -> (name, config); ValueError if malformed."""
    return text, RefineConfig() if text == "shipped" else settings_from_text(RefineConfig, text)


def tuning_samples(name: str, hw, num: int, views: int, mode: str, ckpt_data, args):
    if name == "procedural":
        return held_out_samples(ckpt_data, num, 6_000_000 + (mode == "novel"), views, mode)
    if name == "hololens_train":
        from mvgd_core.data.deepvideomvs import list_images, read_deepvideomvs
        from mvgd_core.data.splits import hololens_split

        path = _first_existing(args.hololens)
        if path is None:
            raise SystemExit(f"tune_refine: none of {args.hololens} exists")
        train, _ = hololens_split(len(list_images(path)))
        return sequence_samples([read_deepvideomvs(path, indices=train)], hw, num, 7_000_000 + (mode == "novel"), views, mode, REAL_SAMPLING)
    if name == "tum":
        from mvgd_core.data.tum import read_tum

        samp = ViewSamplingConfig(max_translation=1.0, max_rotation_deg=45.0, min_overlap=0.3, max_frame_gap=6)
        return sequence_samples([read_tum(ROOT / "data" / "tum_fr1_rpy_small")], hw, num, 8_000_000 + (mode == "novel"), views, mode, samp)
    raise SystemExit(f"tune_refine: unknown set {name!r}")


def observable_targets(chunk: list) -> list:
    """(index, sample) of the samples whose target depth is observable from their conditioning views
    at the samples' resolution (`mvgd_core.observability`): the regime every tuning table scores."""
    out = []
    for j, s in enumerate(chunk):
        hw = tuple(s.tgt_depth.shape[-2:])
        if observability(s.tgt_depth, s.tgt_K, s.tgt_T_wc, s.cond_K, s.cond_T_wc, hw, cond_hw=hw).regime == "observable":
            out.append((j, s))
    return out


def run(pred, samples, variants: dict, batch: int = 8) -> tuple[dict, list]:
    """(results per variant and "network", picks): picks are (replaced share, sample, network depth,
    refined depth, replaced mask, second) of the first variant on every observable target, second
    being (name, depth) of the second variant or None (for save_figure)."""
    picks = []
    scores = {"network": []} | {k: [] for k in variants}
    replaced = {k: [] for k in variants}
    worse = {k: [] for k in variants}  # per target: did the replaced pixels get worse (median |log error|)?
    seconds = {k: 0.0 for k in variants}
    for i in range(0, len(samples), batch):
        chunk = samples[i : i + batch]
        b = collate_samples(chunk)
        net = pred.predict_batch(b, "depth", steps=1, seed=i, refine=False)
        out = {}
        for k, cfg in variants.items():
            t = time.perf_counter()
            out[k] = refine_batch(b.cond_rgb, b.cond_K, b.cond_T_wc, b.tgt_K, b.tgt_T_wc, net, cfg)
            seconds[k] += time.perf_counter() - t
        for j, s in observable_targets(chunk):
            scores["network"].append(depth_scores(net[j], s.tgt_depth))
            d0, acc0 = next(iter(out.values()))
            second = next(((k, d[j]) for k, (d, _) in list(out.items())[1:2]), None)
            picks.append((float(acc0[j].float().mean()), s, net[j], d0[j], acc0[j], second))
            for k, (d, acc) in out.items():
                scores[k].append(depth_scores(d[j], s.tgt_depth))
                replaced[k].append(float(acc[j].float().mean()))
                m = acc[j] & (s.tgt_depth > 0)
                if m.sum() >= 50:
                    gt = s.tgt_depth[m]
                    worse[k].append((float((net[j][m] / gt).log().abs().median()), float((d[j][m] / gt).log().abs().median())))
    med = lambda xs, key: float(np.median([x[key] for x in xs])) if xs else float("nan")  # noqa: E731
    results = {k: {"targets": len(v), "abs_rel_median": med(v, "abs_rel"), "delta1_median": med(v, "delta1"),
                   "replaced_share": float(np.mean(replaced[k])) if k in replaced and replaced[k] else None,
                   "ms_per_target": 1000 * seconds[k] / len(samples) if k in seconds else None,
                   **(_replaced_errors(worse[k]) if k in worse else {})} for k, v in scores.items()}
    return results, picks


def _replaced_errors(pairs: list) -> dict:
    """On the pixels a variant replaced: median over targets of the network's and the refined
    median |log error|, and the share of targets where the refined one is larger."""
    if not pairs:
        return {"replaced_log_err_network": None, "replaced_log_err_refined": None, "targets_worse_share": None}
    a = np.asarray(pairs)
    return {"replaced_log_err_network": float(np.median(a[:, 0])), "replaced_log_err_refined": float(np.median(a[:, 1])),
            "targets_worse_share": float(np.mean(a[:, 1] > a[:, 0]))}


def save_figure(path, picks: list, rows: int = 4) -> Path:
    """Per row one of the `rows` observable targets with most replaced pixels (`run`'s picks): live
    image, GT depth, the network's depth, the refined depth (first variant) and, with two or more
    variants, the second variant's depth (one colour scale), the replaced pixels, and the AbsRel
    maps. -> the PNG written."""
    from mvgd_core import viz

    picks = sorted(picks, key=lambda p: -p[0])[:rows]
    grid, labels = [], []
    for share, s, net, ref, acc, second in picks:
        named = [("network", net), ("refined", ref)] + ([second] if second is not None else [])
        lo, hi = viz.depth_range(s.tgt_depth, *(d for _, d in named))
        live = s.tgt_rgb if s.tgt_rgb is not None else s.cond_rgb[0]
        grid.append([live, viz.colorize_depth(s.tgt_depth, lo, hi), *(viz.colorize_depth(d, lo, hi) for _, d in named),
                     np.repeat(acc.numpy()[..., None].astype(np.uint8) * 255, 3, -1),
                     *(viz.colorize_error(d, s.tgt_depth) for _, d in named)])
        labels.append(["live image", f"GT {lo:.1f}-{hi:.1f} m",
                       *(f"{name} AbsRel {depth_scores(d, s.tgt_depth)['abs_rel']:.3f}" for name, d in named),
                       f"replaced {100 * share:.0f} %", *(f"{name} error" for name, _ in named)])
    return viz.save_png(path, viz.make_grid(grid, labels, cell_hw=viz.legible_cell(picks[0][1].tgt_depth.shape[-2:])))


def tuning_parser(doc: str, num: int, variant_help: str, figure_help: str, out_help: str) -> argparse.ArgumentParser:
    """The parser of a tuning script: `add_tuning_args` plus --variant (repeatable), --figure and --out."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    add_tuning_args(ap, num=num)
    ap.add_argument("--variant", action="append", default=[], help=variant_help)
    ap.add_argument("--figure", default="", help=figure_help)
    ap.add_argument("--out", default="", help=out_help)
    return ap


def report_tuning(script: str, argv, what: str, table: list[str], out: Path, variants: dict, results: dict,
                  figure: str = "", draw=None) -> None:
    """Print a tuning run's command and `what` it scored, its markdown `table` (header lines first),
    write its JSON to `out` and, given `figure` and `draw(figure) -> path`, its figure."""
    cmd = f"python training/{script} " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"\n`{cmd.strip()}`: {what}\n")
    print("\n".join(table))
    print(f"\nJSON: {write_tuning_json(out, cmd.strip(), variants, results)}")
    if figure and draw is not None:
        print(f"figure: {draw(figure)}")


def add_tuning_args(ap: argparse.ArgumentParser, num: int) -> None:
    """The options every tuning script shares: model, set, views, targets, HoloLens path, threads."""
    ap.add_argument("--model", default="models/mvgd_default.pt")
    ap.add_argument("--set", default="hololens_train", choices=["hololens_train", "procedural", "tum"])
    ap.add_argument("--views", type=int, default=3)
    ap.add_argument("--num", type=int, default=num, help="targets (all regimes; the observable ones are scored)")
    ap.add_argument("--hololens", default="data/hololens_office|../shared/data/hololens_office", help="first existing wins")
    ap.add_argument("--threads", type=int, default=2)


def load_tuning(args, mode: str) -> tuple[MVGDPredictor, list]:
    """(the predictor of args.model on CPU at 1 step, the tuning samples of args.set in `mode`)."""
    from mvgd_core.checkpoint import load_checkpoint
    from mvgd_core.config import from_dict
    from mvgd_core.data.sampler import DataConfig

    torch.set_num_threads(args.threads)
    model = Path(args.model) if Path(args.model).is_absolute() else ROOT / args.model
    pred = MVGDPredictor.from_checkpoint(model, device="cpu", steps=1)
    ckpt = load_checkpoint(model)
    data = from_dict(DataConfig, {**((ckpt["config"].get("train") or {}).get("data") or {}), "image_hw": list(pred.image_size)},
                     where="checkpoint.config.train.data")
    return pred, tuning_samples(args.set, pred.image_size, args.num, args.views, mode, data, args)


def parse_variants(ap: argparse.ArgumentParser, texts: list, defaults, parse) -> dict:
    """{text: parse(text)} for the --variant texts (or the defaults); a malformed one is the parser's error."""
    try:
        return {v: parse(v) for v in (texts or defaults)}
    except ValueError as exc:
        ap.error(str(exc))


def write_tuning_json(out: Path, cmd: str, variants: dict, results: dict) -> Path:
    """A tuning run's JSON (every tuning script writes the same shape): its command, each
    variant's settings (dataclass fields) and the results."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": cmd, "variants": {k: dataclasses.asdict(v) for k, v in variants.items()}, "results": results},
                              indent=2))
    return out


def main(argv=None) -> int:
    ap = tuning_parser(__doc__, 48, "RefineConfig overrides, e.g. min_agree=1,hypotheses=9 (repeatable)",
                       "also draw the targets with the most replaced pixels (first variant) to this PNG",
                       "JSON path (default runs/tune_refine/<set>_<mode>_<views>v.json)")
    ap.add_argument("--mode", default="cond", choices=["cond", "novel"], help="live camera (cond) or novel views")
    args = ap.parse_args(argv)
    variants = dict(parse_variant(v) for v in (args.variant or DEFAULT_VARIANTS))
    pred, samples = load_tuning(args, args.mode)
    res, picks = run(pred, samples, variants)
    f = lambda v, nd=2: "–" if v is None else f"{v:.{nd}f}"  # noqa: E731
    table = ["| depth | targets | AbsRel | δ<1.25 | pixels replaced | on them, median abs(log error): network -> refined "
             "| targets where they got worse | ms / target |", "|---|---|---|---|---|---|---|---|"]
    for k, r in res.items():
        err = f"{f(r.get('replaced_log_err_network'), 3)} -> {f(r.get('replaced_log_err_refined'), 3)}" if k != "network" else "–"
        table.append(f"| {k} | {r['targets']} | {r['abs_rel_median']:.3f} | {r['delta1_median']:.3f} | {f(r['replaced_share'])} | {err} "
                     f"| {f(r.get('targets_worse_share'))} | {f(r['ms_per_target'], 0)} |")
    out = Path(args.out) if args.out else ROOT / "runs" / "tune_refine" / f"{args.set}_{args.mode}_{args.views}v.json"
    report_tuning("tune_refine.py", argv, f"{args.set}, {args.mode}, {args.views} views, observable targets, medians", table, out,
                  variants, res, args.figure, lambda path: save_figure(path, picks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
