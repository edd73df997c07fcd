#!/usr/bin/env python3
"""Measure a trained MVGD checkpoint next to the classical baselines (the numbers in MODEL_CARD.md).

    python training/evaluate_model.py --model models/mvgd_default.pt --out runs/eval/default.json

Sections (each printed as a Markdown table and stored in the JSON):
1. procedural: held-out procedural scenes (seeds 2_000_000 / 2_000_001; training uses data.seed
   0.., validation 1_000_000..), --num targets per set: depth at a conditioning view ("cond"),
   depth and RGB at a novel view ("novel"). MVGD vs nearest-view reprojection (oracle GT depth
   of the nearest other view) vs plane-sweep stereo (RGB + poses, like MVGD).
2. tum: the same on the shipped TUM fr1/rpy frames (data/tum_fr1_rpy_small), using only frames
   with index >= --tum-first (the default TUM fine-tune trains on frames 0..39 only).
3. steps: DDIM steps (1, 2, 5, 10, 25, 50) vs quality on the procedural sets, with sampling time
   (batched, per target) and single-target latency.
All numbers are measured at run time; nothing is hard-coded.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from mvgd_core.checkpoint import load_checkpoint  # noqa: E402
from mvgd_core.config import from_dict  # noqa: E402
from mvgd_core.data.sampler import DataConfig, ViewSamplingConfig  # noqa: E402
from mvgd_core.data.types import collate_samples  # noqa: E402
from mvgd_core.inference import MVGDPredictor  # noqa: E402
from mvgd_core.model_eval import SWEEP, evaluate_samples, held_out_samples, save_grid, sequence_samples  # noqa: E402

METHODS = (("mvgd", "MVGD"), ("reprojection", "nearest-view reprojection (GT depth of nearest other view)"),
           ("plane_sweep", "plane-sweep stereo"))


def fmt(v, nd=3):
    return "n/a" if v is None or v != v else f"{v:.{nd}f}"


def quality_table(summary: dict) -> str:
    """Markdown: one row per method, columns depth@cond, depth@novel, RGB@novel."""
    head = ("| method | cond AbsRel ↓ | cond δ<1.25 ↑ | novel AbsRel ↓ | novel δ<1.25 ↑ | novel PSNR ↑ | novel SSIM ↑ |\n"
            "|---|---|---|---|---|---|---|")
    rows = []
    for key, label in METHODS:
        g = lambda s, m: summary.get(f"{s}/{key}/{m}")  # noqa: E731
        rows.append(f"| {label} | {fmt(g('cond', 'abs_rel'))} | {fmt(g('cond', 'delta1'))} | {fmt(g('novel', 'abs_rel'))} | "
                    f"{fmt(g('novel', 'delta1'))} | {fmt(g('novel', 'psnr'), 2)} | {fmt(g('novel', 'ssim'))} |")
    return "\n".join([head, *rows])


def steps_table(rows: list[dict]) -> str:
    head = ("| DDIM steps | cond AbsRel ↓ | cond δ<1.25 ↑ | novel AbsRel ↓ | novel PSNR ↑ | s / target (batch 8) | s / target (batch 1) |\n"
            "|---|---|---|---|---|---|---|")
    body = [f"| {r['steps']} | {fmt(r['cond/mvgd/abs_rel'])} | {fmt(r['cond/mvgd/delta1'])} | {fmt(r['novel/mvgd/abs_rel'])} | "
            f"{fmt(r['novel/mvgd/psnr'], 2)} | {fmt(r['s_per_target_batched'])} | {fmt(r['s_per_target_single'])} |" for r in rows]
    return "\n".join([head, *body])


def single_latency(pred: MVGDPredictor, samples, steps: int, task: str = "depth") -> float:
    """Median seconds for one target (batch of 1), after one warm-up call."""
    times = []
    for i, s in enumerate(samples):
        b = collate_samples([s])
        t0 = time.perf_counter()
        pred.predict_batch(b, task, steps=steps, seed=i)
        if i:
            times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/mvgd_default.pt")
    ap.add_argument("--out", default="runs/eval/default.json")
    ap.add_argument("--num", type=int, default=24, help="targets per procedural set")
    ap.add_argument("--views", type=int, default=3, help="conditioning views per sample")
    ap.add_argument("--steps", type=int, default=10, help="DDIM steps for the quality tables")
    ap.add_argument("--sweep-steps", default="1,2,5,10,25,50", help="DDIM step counts for the steps table ('' = skip)")
    ap.add_argument("--sweep-num", type=int, default=16, help="targets per set in the steps table")
    ap.add_argument("--tum", default="data/tum_fr1_rpy_small", help="TUM folder ('' = skip)")
    ap.add_argument("--tum-first", type=int, default=40, help="evaluate on TUM frames with index >= this (held out from fine-tuning)")
    ap.add_argument("--tum-num", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    ckpt = load_checkpoint(args.model)
    pred = MVGDPredictor.from_checkpoint(args.model, device=args.device, steps=args.steps)
    hw = pred.image_size
    train_cfg = ckpt["config"].get("train") or {}
    data = from_dict(DataConfig, {**(train_cfg.get("data") or {}), "image_hw": list(hw)}, where="checkpoint.config.train.data")
    out_dir = Path(args.out).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = "python training/evaluate_model.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = {"model": args.model, "step": ckpt.get("step"), "image_size": hw, "views": args.views, "command": cmd.strip(),
              "device": args.device, "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
              "plane_sweep": SWEEP, "sections": {}}

    # 1. held-out procedural scenes
    proc = {"cond": held_out_samples(data, args.num, 2_000_000, args.views, "cond"),
            "novel": held_out_samples(data, args.num, 2_000_001, args.views, "novel")}
    res = evaluate_samples(pred, proc, steps=args.steps, baselines=True)
    save_grid(out_dir / "procedural_grid.png", res, rows=4)
    report["sections"]["procedural"] = {"num": args.num, "steps": args.steps, "summary": res["summary"]}
    print(f"\n## Held-out procedural scenes ({args.num} targets per set, {args.views} views, {args.steps} DDIM steps)\n")
    print(quality_table(res["summary"]))

    # 2. TUM (real data)
    if args.tum:
        from mvgd_core.data.tum import read_tum

        frames = read_tum(args.tum)
        held = frames[args.tum_first:]
        samp = ViewSamplingConfig(max_translation=1.0, max_rotation_deg=45.0, min_overlap=0.3, max_frame_gap=6)
        tum = {"cond": sequence_samples([held], hw, args.tum_num, 3_000_000, args.views, "cond", samp),
               "novel": sequence_samples([held], hw, args.tum_num, 3_000_001, args.views, "novel", samp)}
        tres = evaluate_samples(pred, tum, steps=args.steps, baselines=True)
        save_grid(out_dir / "tum_grid.png", tres, rows=4)
        report["sections"]["tum"] = {"frames": f"{args.tum_first}..{len(frames) - 1} of {len(frames)}", "num": args.tum_num,
                                     "steps": args.steps, "summary": tres["summary"]}
        print(f"\n## TUM fr1/rpy, held-out frames {args.tum_first}..{len(frames) - 1} ({args.tum_num} targets per set)\n")
        print(quality_table(tres["summary"]))

    # 3. DDIM steps vs quality and time
    if args.sweep_steps:
        rows = []
        sub = {k: v[: args.sweep_num] for k, v in proc.items()}
        for n in [int(x) for x in args.sweep_steps.split(",")]:
            r = evaluate_samples(pred, sub, steps=n, baselines=False)
            targets = len(sub["cond"]) + 2 * len(sub["novel"])  # novel set: depth and RGB
            row = {"steps": n, **{k: r["summary"][k] for k in ("cond/mvgd/abs_rel", "cond/mvgd/delta1", "novel/mvgd/abs_rel", "novel/mvgd/psnr")},
                   "s_per_target_batched": sum(r["time_s"].values()) / targets,
                   "s_per_target_single": single_latency(pred, sub["cond"][:4], n)}
            rows.append(row)
        report["sections"]["steps"] = rows
        print(f"\n## DDIM steps ({args.sweep_num} targets per set, {args.device}, {torch.get_num_threads()} threads)\n")
        print(steps_table(rows))

    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}, grids in {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
