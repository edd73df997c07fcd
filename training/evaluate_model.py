#!/usr/bin/env python3
"""Measure a trained MVGD checkpoint next to the classical baselines (the numbers in MODEL_CARD.md).

    python training/evaluate_model.py --model models/mvgd_default.pt --out runs/eval/default.json --threads 1

For every set: per method the mean AND the median over targets of AbsRel, RMSE and delta<1.25,
overall and split by observability regime (mvgd_core.observability: "observable" when >= 50 %
of the target's valid pixels move by >= 1 px at model resolution in some conditioning view
when their depth changes by 25 %; "weak"; "none"). The HEADLINE is the observable regime:
elsewhere depth cannot come from geometry. Rows on the very same targets (mvgd_core.model_eval):
MVGD, "mvs" (classical multi-view stereo, when mvgd_core.baselines provides it), the naive
"plane_sweep", "const_gt_median" (knows the scale only), "const_train_median" (knows nothing:
the training data's median depth, stored in / measured from the checkpoint), "reprojection"
(oracle: GT depth of another view).

Sections (each printed as Markdown with the command above it, all stored in the JSON):
1. procedural: held-out procedural scenes (seeds 2_000_000 / 2_000_001; training uses data.seed
   0.., validation 1_000_000..), --num targets per set: depth at a conditioning view ("cond"),
   depth and RGB at a novel view ("novel").
2. hololens: the held-out last quarter of the HoloLens office walk (mvgd_core.data.splits;
   never trained on), --hololens-num targets per set.
3. tabletop: the tabletop box sequence (evaluation only), --tabletop-num targets per set.
4. tum: the shipped TUM fr1/rpy frames with index >= --tum-first (off unless --tum is given).
5. steps: DDIM steps vs quality on the procedural sets, with sampling time (off unless
   --sweep-steps is given).
All numbers are measured at run time; nothing is hard-coded. Pictures: <out dir>/<section>_grid.png (observable first) and <section>_worst.png
(the observable targets with the highest MVGD depth error).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from mvgd_core.allocator import keep_freed_memory  # noqa: E402
from mvgd_core.checkpoint import load_checkpoint  # noqa: E402
from mvgd_core.config import from_dict, settings_arg  # noqa: E402
from mvgd_core.data.sampler import DataConfig, ViewSamplingConfig  # noqa: E402
from mvgd_core.data.types import collate_samples  # noqa: E402
from mvgd_core.inference import MVGDPredictor  # noqa: E402
from mvgd_core.model_eval import (METHOD_LABELS, SWEEP, checkpoint_depth_median, evaluate_samples, held_out_samples,  # noqa: E402
                                  save_grid, sequence_samples)
from mvgd_core.refine import RefineConfig  # noqa: E402
from mvgd_core.view_depth_fusion import FusionConfig  # noqa: E402
from mvgd_core.view_synthesis import SynthesisConfig  # noqa: E402
from mvgd_core.report import _md_table, regime_headline_table, regime_split_table  # noqa: E402

# View choice on real sequences: neighbours within 1 m / 45 degrees that see >= 30 % of the target.
REAL_SAMPLING = ViewSamplingConfig(max_translation=1.0, max_rotation_deg=45.0, min_overlap=0.3, max_frame_gap=8)


def fmt(v, nd=3):
    return "n/a" if v is None or v != v else f"{v:.{nd}f}"


def regime_tables(res: dict, set_name: str) -> str:
    """Markdown for one set: the observable regime (headline), then every regime's medians."""
    agg = res["regimes"][set_name]
    n = {r: max((m.get("n", 0) for m in agg[r].values()), default=0) for r in agg}
    out = [f"**{set_name}**: {n['all']} targets = {n['observable']} observable + {n['weak']} weak + {n['none']} none. "
           "Observable regime (headline), median (mean) over targets:", ""]
    out.append(_md_table(*regime_headline_table(agg, "observable", labels=METHOD_LABELS, unit="targets")))
    out += ["", "Every regime, medians over targets:", "", _md_table(*regime_split_table(agg, labels=METHOD_LABELS, unit="targets")), ""]
    return "\n".join(out)


def rgb_table(res: dict) -> str:
    """Markdown: novel-view RGB per method, median (mean) over targets."""
    per = res["per_sample"].get("novel") or []
    if not per:
        return ""
    from mvgd_core.metrics import summarize

    rows = []
    for m in METHOD_LABELS:
        p, s = summarize(r.get(f"{m}/psnr") for r in per), summarize(r.get(f"{m}/ssim") for r in per)
        if p["n"]:
            rows.append([METHOD_LABELS[m], str(p["n"]), f"{fmt(p['median'], 2)} ({fmt(p['mean'], 2)})", f"{fmt(s['median'])} ({fmt(s['mean'])})"])
    return "Novel-view RGB, median (mean) over targets:\n\n" + _md_table(["method", "targets", "PSNR ↑", "SSIM ↑"], rows) + "\n"


def steps_table(rows: list[dict]) -> str:
    head = ("| DDIM steps | cond AbsRel median (mean) ↓ | cond δ<1.25 median ↑ | novel AbsRel median ↓ | novel PSNR ↑ | s / target (batch 8) | s / target (batch 1) |\n"
            "|---|---|---|---|---|---|---|")
    body = [f"| {r['steps']} | {fmt(r['cond/mvgd/abs_rel_median'])} ({fmt(r['cond/mvgd/abs_rel'])}) | {fmt(r['cond/mvgd/delta1_median'])} | "
            f"{fmt(r['novel/mvgd/abs_rel_median'])} | {fmt(r['novel/mvgd/psnr'], 2)} | {fmt(r['s_per_target_batched'])} | {fmt(r['s_per_target_single'])} |" for r in rows]
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


def _existing(path: str) -> Path | None:
    """The folder at `path` (relative to the repository), or None for '' / missing."""
    if not path:
        return None
    p = Path(path)
    p = p if p.is_absolute() else ROOT / p
    return p if p.exists() else None


def real_sets(frames, hw, num: int, seed: int, views: int) -> dict:
    return {"cond": sequence_samples([frames], hw, num, seed, views, "cond", REAL_SAMPLING),
            "novel": sequence_samples([frames], hw, num, seed + 1, views, "novel", REAL_SAMPLING)}


def run_section(report: dict, key: str, title: str, pred, sets: dict, args, out_dir: Path, train_median, info: dict) -> dict:
    """Evaluate one section, print its tables under its title and command, store it in the report."""
    res = evaluate_samples(pred, sets, steps=args.steps, baselines=True, train_median=train_median, sweep=SWEEP)
    grid = save_grid(out_dir / f"{key}_grid.png", res, rows=4)
    save_grid(out_dir / f"{key}_worst.png", res, rows=3, worst=True)  # MODEL_CARD "what it still gets wrong"
    report["sections"][key] = {**info, "steps": args.steps, "summary": res["summary"], "regimes": res["regimes"],
                               "per_sample": res["per_sample"], "grid": str(grid)}
    print(f"\n## {title}\n\n`{report['command']}`\n")
    for name in sets:
        print(regime_tables(res, name))
    print(rgb_table(res))
    return res


def _first_existing(paths: str) -> Path | None:
    return next((p for p in map(_existing, paths.split("|")) if p is not None), None)


def procedural_section(args, data, hw):
    """Held-out procedural targets (seeds no training or validation run uses)."""
    sets = {"cond": held_out_samples(data, args.num, 2_000_000, args.views, "cond"),
            "novel": held_out_samples(data, args.num, 2_000_001, args.views, "novel")}
    return sets, f"Held-out procedural scenes ({args.num} targets per set)", {"num": args.num, "seeds": [2_000_000, 2_000_001]}


def hololens_section(args, data, hw):
    """The HoloLens walk's held-out last quarter (mvgd_core.data.splits), conditioning views from it only."""
    path = _first_existing(args.hololens)
    if path is None:
        return f"none of {args.hololens} exists"
    from mvgd_core.data.deepvideomvs import list_images, read_deepvideomvs
    from mvgd_core.data.splits import hololens_split

    _, held = hololens_split(len(list_images(path)))
    sets = real_sets(read_deepvideomvs(path, indices=held), hw, args.hololens_num, 4_000_000, args.views)
    title = f"HoloLens office walk, held-out last quarter (frames {held[0]}..{held[-1]}, {args.hololens_num} targets per set)"
    return sets, title, {"path": str(path), "frames": [int(held[0]), int(held[-1])], "num": args.hololens_num}


def tabletop_section(args, data, hw):
    """The tabletop box sequence (evaluation only: every frame)."""
    path = _first_existing(args.tabletop)
    if path is None:
        return f"none of {args.tabletop} exists"
    from mvgd_core.data.seven_scenes import read_seven_scenes

    frames = read_seven_scenes(path)
    sets = real_sets(frames, hw, args.tabletop_num, 5_000_000, args.views)
    return sets, f"Tabletop box (evaluation only, {len(frames)} frames, {args.tabletop_num} targets per set)", {"path": str(path), "num": args.tabletop_num}


def tum_section(args, data, hw):
    """TUM fr1/rpy frames from --tum-first on (the TUM fine-tune trains on the ones before)."""
    path = _existing(args.tum)
    if path is None:
        return f"{args.tum} does not exist"
    from mvgd_core.data.tum import read_tum

    frames = read_tum(path)
    held = frames[args.tum_first:]
    samp = ViewSamplingConfig(max_translation=1.0, max_rotation_deg=45.0, min_overlap=0.3, max_frame_gap=6)
    sets = {"cond": sequence_samples([held], hw, args.tum_num, 3_000_000, args.views, "cond", samp),
            "novel": sequence_samples([held], hw, args.tum_num, 3_000_001, args.views, "novel", samp)}
    title = f"TUM fr1/rpy, held-out frames {args.tum_first}..{len(frames) - 1} ({args.tum_num} targets per set)"
    return sets, title, {"frames": f"{args.tum_first}..{len(frames) - 1} of {len(frames)}", "num": args.tum_num}


SECTIONS = {"procedural": procedural_section, "hololens": hololens_section, "tabletop": tabletop_section, "tum": tum_section}


def steps_section(report: dict, pred, proc, data, args) -> None:
    """DDIM steps vs MVGD quality and sampling time on (the first --sweep-num) procedural targets."""
    if proc is None:
        proc = {"cond": held_out_samples(data, args.sweep_num, 2_000_000, args.views, "cond"),
                "novel": held_out_samples(data, args.sweep_num, 2_000_001, args.views, "novel")}
    rows = []
    sub = {k: v[: args.sweep_num] for k, v in proc.items()}
    for n in [int(x) for x in args.sweep_steps.split(",")]:
        r = evaluate_samples(pred, sub, steps=n, baselines=False)
        targets = len(sub["cond"]) + 2 * len(sub["novel"])  # novel set: depth and RGB
        keys = ("cond/mvgd/abs_rel", "cond/mvgd/abs_rel_median", "cond/mvgd/delta1_median", "novel/mvgd/abs_rel_median", "novel/mvgd/psnr")
        rows.append({"steps": n, **{k: r["summary"][k] for k in keys}, "s_per_target_batched": sum(r["time_s"].values()) / targets,
                     "s_per_target_single": single_latency(pred, sub["cond"][:4], n)})
    report["sections"]["steps"] = rows
    print(f"\n## DDIM steps ({args.sweep_num} targets per set, {args.device}, {torch.get_num_threads()} threads)\n\n`{report['command']}`\n")
    print(steps_table(rows))


CARD_LABELS = {"mvgd": "**MVGD** (1 DDIM step, node default)", "mvgd_net": "MVGD network alone (refinement and view synthesis off)", "mvs": "multi-view stereo (RGB + poses)",
               "mvs_confident": "multi-view stereo, kept pixels only", "plane_sweep": "naive plane sweep (RGB + poses)",
               "const_gt_median": "constant = true median (knows the scale only)",
               "const_train_median": "constant = training median (knows nothing)",
               "reprojection": "reprojection (oracle: GT depth of another view)"}


def _card_labels(refined: bool) -> dict:
    """CARD_LABELS, saying whether the MVGD row is refined (reports older than the refinement: not)."""
    what = "1 DDIM step + photometric refinement, node default" if refined else "1 DDIM step, refinement off"
    return {**CARD_LABELS, "mvgd": f"**MVGD** ({what})"}


def card_tables(rep: dict) -> str:
    """MODEL_CARD's compact tables from a saved report: per section, cond and novel side by side
    in the observable regime (median (mean)), then every regime's medians as AbsRel / δ1."""
    def mm(st):
        return "–" if not st or not st.get("n") else f"{fmt(st['median'])} ({fmt(st['mean'])})"

    out = []
    for key, sec in rep["sections"].items():
        if "regimes" not in sec:
            continue
        R = sec["regimes"]
        cnt = {s: {r: max((m.get("n", 0) for m in R[s][r].values()), default=0) for r in ("all", "observable", "weak", "none")} for s in R}
        out += [f"#### {key}", "", f"`{rep['command']}` (section `{key}`). Targets: "
                + "; ".join(f"{s} {c['all']} = {c['observable']} observable + {c['weak']} weak + {c['none']} none" for s, c in cnt.items()) + ".", "",
                "Observable regime (the headline), median (mean) over targets:", "",
                "| method | cond AbsRel ↓ | cond δ<1.25 ↑ | novel AbsRel ↓ | novel δ<1.25 ↑ | coverage cond / novel |", "|---|---|---|---|---|---|"]
        labels = _card_labels(rep.get("refine", False))
        for m, lab in labels.items():
            c, n = R["cond"]["observable"].get(m), R["novel"]["observable"].get(m)
            if c or n:
                cov = f"{fmt(c['coverage']['median'], 2)} / {fmt(n['coverage']['median'], 2)}" if c and n else "–"
                out.append(f"| {lab} | {mm(c and c['abs_rel'])} | {mm(c and c['delta1'])} | {mm(n and n['abs_rel'])} | {mm(n and n['delta1'])} | {cov} |")
        out += ["", "Every regime, medians over targets, AbsRel / δ<1.25:", "",
                "| method | cond observable | cond weak | cond none | novel observable | novel weak | novel none |", "|---|---|---|---|---|---|---|"]
        for m, lab in labels.items():
            cells = [("–" if not st or not st.get("n") else f"{fmt(st['abs_rel']['median'])} / {fmt(st['delta1']['median'])}")
                     for st in (R[s][r].get(m) for s in ("cond", "novel") for r in ("observable", "weak", "none"))]
            out.append(f"| {lab} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/mvgd_default.pt")
    ap.add_argument("--out", default="runs/eval/default.json")
    ap.add_argument("--num", type=int, default=24, help="targets per procedural set")
    ap.add_argument("--views", type=int, default=3, help="conditioning views per sample")
    ap.add_argument("--steps", type=int, default=1, help="DDIM steps for the quality tables (1 = the node's default)")
    ap.add_argument("--sections", default="procedural,hololens,tabletop", help="comma list of procedural, hololens, tabletop, tum")
    ap.add_argument("--hololens", default="data/hololens_office|../shared/data/hololens_office",
                    help="HoloLens folder(s), first existing wins ('' = skip)")
    ap.add_argument("--hololens-num", type=int, default=24)
    ap.add_argument("--tabletop", default="data/tabletop_box|../shared/data/tabletop_box", help="tabletop folder(s), first existing wins")
    ap.add_argument("--tabletop-num", type=int, default=24)
    ap.add_argument("--tum", default="data/tum_fr1_rpy_small", help="TUM folder (used when 'tum' is in --sections)")
    ap.add_argument("--tum-first", type=int, default=40, help="evaluate on TUM frames with index >= this (held out from fine-tuning)")
    ap.add_argument("--tum-num", type=int, default=16)
    ap.add_argument("--train-median", type=float, default=None, help="const_train_median depth (m); default: from the checkpoint")
    ap.add_argument("--sweep-steps", default="", help="DDIM step counts for the steps table, e.g. 1,2,5,10 ('' = skip)")
    ap.add_argument("--sweep-num", type=int, default=16, help="targets per set in the steps table")
    ap.add_argument("--card", metavar="JSON", default="", help="only print MODEL_CARD's compact tables from a saved report JSON")
    ap.add_argument("--no-refine", action="store_true",
                    help="MVGD depth without the photometric refinement (mvgd_core/refine.py); by default it is refined and the "
                         "network alone is scored beside it as 'mvgd_net'")
    ap.add_argument("--refine-net", action=argparse.BooleanOptionalAction, default=True,
                    help="refined depth through the checkpoint's learned second stage (mvgd_core/refine_net.py), as the node's "
                         "refine_net parameter (on by default since stop 31); --no-refine-net: the refinement alone")
    ap.add_argument("--refine-settings", type=settings_arg(RefineConfig), default=RefineConfig(), metavar="KEY=VALUE[,...]",
                    help="RefineConfig fields for the refined MVGD rows, e.g. propagate_radius=0 (the stop-14 refinement, "
                         "without spreading its corrections; MODEL_CARD)")
    ap.add_argument("--no-synthesis", action="store_true",
                    help="MVGD novel-view RGB from the network alone, not from the warped views (mvgd_core/view_synthesis.py)")
    ap.add_argument("--no-fusion", action="store_true",
                    help="MVGD novel-view depth without the conditioning views' own depth fused in (mvgd_core/view_depth_fusion.py); "
                         "by default each view's live depth is predicted first, as the node has it for its keyframes")
    ap.add_argument("--fusion-settings", type=settings_arg(FusionConfig), default=FusionConfig(), metavar="KEY=VALUE[,...]",
                    help="FusionConfig fields for the novel-view MVGD rows, e.g. splat_radius=1 (cracks filled: MODEL_CARD, stop 30)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.card:
        print(card_tables(json.loads(Path(args.card).read_text())))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()  # this script owns its process: freed buffers stay for the next step (~25 % faster on CPU)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        print(f"evaluate_model: error: unknown section(s) {sorted(unknown)}", file=sys.stderr)
        return 2

    ckpt = load_checkpoint(args.model)
    refine, fusion = args.refine_settings, args.fusion_settings
    pred = MVGDPredictor.from_checkpoint(args.model, device=args.device, steps=args.steps,
                                       refine=dataclasses.replace(refine, enabled=not args.no_refine),
                                       synthesis=SynthesisConfig(enabled=not args.no_synthesis), fusion=dataclasses.replace(fusion, enabled=not args.no_fusion))
    pred.use_refine_net = args.refine_net
    hw = pred.image_size
    train_cfg = ckpt["config"].get("train") or {}
    data = from_dict(DataConfig, {**(train_cfg.get("data") or {}), "image_hw": list(hw)}, where="checkpoint.config.train.data")
    if args.train_median is not None:
        train_median, median_src = args.train_median, "--train-median"
    else:
        train_median, median_src = checkpoint_depth_median(ckpt)
    out_dir = Path(args.out).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = "python training/evaluate_model.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    report = {"model": args.model, "step": ckpt.get("step"), "image_size": hw, "views": args.views, "command": cmd.strip(),
              "refine": pred.refine.enabled, "refine_settings": dataclasses.asdict(pred.refine), "synthesis": pred.synthesis.enabled, "fusion": pred.fusion.enabled, "fusion_settings": dataclasses.asdict(pred.fusion),
              "device": args.device, "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
              "plane_sweep": SWEEP, "train_median_m": train_median, "train_median_source": median_src,
              "regime_rule": "observable: >= 50 % of valid target pixels move >= 1 px (model resolution) for a 25 % depth change; weak: 10-50 %; none: < 10 %",
              "sections": {}, "notes": []}
    print(f"model {args.model} (step {ckpt.get('step')}, {hw[0]}x{hw[1]}), {args.views} views, {args.steps} DDIM steps; "
          f"const_train_median = {fmt(train_median)} m ({median_src})")

    proc = None
    for key in sections:
        got = SECTIONS[key](args, data, hw)
        if isinstance(got, str):  # why it was skipped
            report["notes"].append(f"{key} skipped: {got}")
            continue
        sets, title, info = got
        proc = sets if key == "procedural" else proc
        run_section(report, key, title, pred, sets, args, out_dir, train_median, info)
    if args.sweep_steps:
        steps_section(report, pred, proc, data, args)

    for n in report["notes"]:
        print(f"note: {n}")
    Path(args.out).write_text(json.dumps(report, indent=2, default=str))
    print(f"\nwrote {args.out}, grids in {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
