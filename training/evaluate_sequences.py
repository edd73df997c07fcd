#!/usr/bin/env python3
"""Depth on held-out sequences as a robot gets it: the node's keyframe policy and lag, against `mvs` on the same views (prints a table, writes JSON).

    python training/evaluate_sequences.py --trajectories forward wide handheld --sequences 6 --lookahead 0 2
    python training/evaluate_sequences.py --trajectories --bags data/bags/hololens_office --lookahead 0 2
    python training/evaluate_sequences.py --trajectories --real hololens tabletop --lookahead 0 2 --no-mvs
    python training/evaluate_sequences.py --from-json runs/eval/sequences.json --figure sequences_live.png

`evaluate_model.py`'s tables give each target 3 views sampled around it; a robot's node picks its
views itself, from a stream, and can wait for newer frames (`lookahead_frames`). This replays whole
sequences the way `mvgd-eval` feeds the node (`training/sequence_replay.py`: every 4th frame
withheld, the node's keyframe policy and lag, its prediction and refinement), without DDS, so many
held-out sequences can be scored:
- procedural: rendered sequences like the `procedural_demo` bag (48 frames at 128x96, indoor
  scenes) at held-out seeds (SEQUENCE_SEEDS: no training run, table, tuning set or demo bag uses
  them), one set per camera trajectory kind (`--trajectories`);
- bags: any rosbag2 with depth (`--bags`), e.g. the shipped demo bags: the same frames `make demo`
  sends through the real node, so its figures check this replay;
- real held-out sequences from their folders (`--real`, `REAL`): the HoloLens walk's whole
  held-out quarter (94 frames, twice its bag's) and the tabletop set, for tighter intervals.

Per live frame with depth: MVGD's AbsRel and δ<1.25 in the camera the node publishes (where
mvgd-eval scores), the regime (`mvgd_core.observability`, from the same views), and the classical
multi-view stereo baseline (`mvs`, holes filled, as mvgd-eval's row) on the same views (`--no-mvs`:
off; it costs ~0.6 s a frame). Per set and lag: medians over the observable frames with 95 %
bootstrap intervals, and the paired interval of median(MVGD) - median(mvs)
(`compare_models.paired_cell`); a frame where `mvs` estimates nothing is left out of its median
and of the pairs, as mvgd-eval's summaries do. `--novel` adds the withheld frames' poses,
rendered as the node renders a target request (RGB by view synthesis and its depth, the views'
own live depth fused in), with `mvs` at the same virtual views. `--figure`: a chart of the
live-camera medians and intervals per set and lag (`--from-json` redraws it, and the table, from
an earlier run). On the demo bags this reproduces the node's reports exactly (MODEL_CARD "Held-out
sequences as a robot's node sees them").
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "training"))

import numpy as np  # noqa: E402

from compare_models import paired_cell  # noqa: E402
from sequence_replay import Scorer, replay  # noqa: E402
from mvgd_core.config import settings_arg  # noqa: E402
from mvgd_core.data.types import Frame  # noqa: E402
from mvgd_core.metrics import median_ci95  # noqa: E402
from mvgd_core.refine import RefineConfig  # noqa: E402
from mvgd_core.view_depth_fusion import FusionConfig  # noqa: E402

# First seed of each trajectory kind's held-out sequences: training draws 62-bit scene seeds, the
# evaluation tables use 2_000_000 / 2_000_001 (their datasets' own seeds), tuning 6_000_001+, the
# demo bag 7.
SEQUENCE_SEEDS = {"forward": 2_100_000, "wide": 2_101_000, "handheld": 2_102_000, "turn": 2_103_000}


def procedural_sets(trajectories: list[str], sequences: int) -> dict[str, list[list[Frame]]]:
    """{"procedural <kind>": its held-out sequences}, rendered like the procedural_demo bag."""
    from mvgd_core.data.make_bag import PROCEDURAL as BAG
    from mvgd_core.data.render import ProceduralConfig, render_sequence

    return {f"procedural {kind}": [render_sequence(SEQUENCE_SEEDS[kind] + k, BAG["num_frames"], BAG["height"], BAG["width"],
                                                   ProceduralConfig(p_indoor=1.0), trajectory=kind) for k in range(sequences)]
            for kind in trajectories}


# Held-out real sequences read from their folders (first existing path wins), more frames than the
# demo bags: the HoloLens walk's whole held-out quarter (94 frames; its bag has every 2nd) and the
# tabletop set (evaluation only). Never trained on (mvgd_core.data.splits).
REAL = {"hololens": "data/hololens_office|../shared/data/hololens_office", "tabletop": "data/tabletop_box|../shared/data/tabletop_box"}


def real_sets(names: list[str]) -> dict[str, list[list[Frame]]]:
    """{set name (with its frame count): [its frames]} for REAL's names; SystemExit when no folder exists."""
    from evaluate_model import _first_existing
    from mvgd_core.data.deepvideomvs import list_images, read_deepvideomvs
    from mvgd_core.data.seven_scenes import read_seven_scenes
    from mvgd_core.data.splits import hololens_split

    out = {}
    for name in names:
        path = _first_existing(REAL[name])
        if path is None:
            raise SystemExit(f"evaluate_sequences: none of {REAL[name]} exists")
        if name == "hololens":
            held = hololens_split(len(list_images(path)))[1]
            out[f"hololens held-out quarter ({len(held)} frames)"] = [read_deepvideomvs(path, indices=held)]
        else:
            frames = read_seven_scenes(path)
            out[f"tabletop ({len(frames)} frames)"] = [frames]
    return out


def bag_sets(bags: list[str]) -> dict[str, list[list[Frame]]]:
    """{bag folder name: [its frames]}; SystemExit naming a bag that cannot be read or has no depth."""
    from mvgd_core.data.rosbag_io import BagError, read_bag

    out = {}
    for b in bags:
        try:
            frames = read_bag(b)
        except (BagError, OSError) as exc:
            raise SystemExit(f"evaluate_sequences: {exc}") from exc
        if not any(f.depth is not None for f in frames):
            raise SystemExit(f"evaluate_sequences: {b} has no depth to score against")
        out[Path(b).name] = [frames]
    return out


def answers(seqs: list[list[Frame]], lookahead: int, novel: bool = False, kf_cfg=None, depth_of=None) -> list[tuple[int, int, list[int]]]:
    """[(sequence, frame, its conditioning views)] for every depth map the node publishes with ground
    truth to score: at the live camera, or (novel) at the withheld frames' poses (target requests).
    kf_cfg: the node's keyframe parameters (default KeyframeConfig()); depth_of(s, frames): the live
    depth fed back to the keyframe set (`replay`'s live_depth), for `reference_depth`."""
    from mvgd_ros.keyframes import KeyframeConfig

    kf_cfg = kf_cfg or KeyframeConfig()
    return [(s, i, w) for s, frames in enumerate(seqs)
            for i, w in replay(frames, kf_cfg, lookahead, novel=novel, live_depth=depth_of(s, frames) if depth_of else None)]


def score_set(scorer: Scorer, seqs: list[list[Frame]], jobs: list, lookahead: int, mvs: bool, bar, live: dict | None = None) -> list[dict]:
    """One row per job (`answers`): MVGD's scores, its regime and views, and `mvs`' on the same views.
    live None: the jobs are live frames. Else they are target poses, rendered as the node renders
    them (task rgb: view synthesis and its depth) with the views' own live depth fused in:
    live = {(sequence, frame): its live job's views}, from the same lag's live pass with
    `scorer.keep_depth`; only views older than the target have it (the node's queue releases in
    stamp order)."""
    from mvgd_ros.lookahead import refine_sources

    sources = refine_sources(lookahead)
    rows = []
    for s, i, window in jobs:
        if live is None:
            r = scorer.score(s, seqs[s], i, window, "depth", sources)
        else:
            views = [scorer.kept_depth(s, j, live[s, j], sources) if j < i and (s, j) in live else None for j in window]
            r = scorer.score(s, seqs[s], i, window, "rgb", view_depth=views if any(v is not None for v in views) else None,
                             tag=("fused", lookahead))
        if r is not None:
            base = scorer.mvs(s, seqs[s], i, window) if mvs else {}
            rows.append({"sequence": s, "frame": i, "views": len(window), **r, **{f"mvs_{k}": v for k, v in base.items()}})
        bar.update()
    return rows


def summary(rows: list[dict]) -> dict:
    """Medians (with 95 % intervals) over the observable rows and over all rows; MVGD vs mvs paired."""
    obs = [r for r in rows if r["regime"] == "observable"]
    out = {"frames": len(rows), "observable": len(obs), "mean_views": float(np.mean([r["views"] for r in rows])) if rows else 0.0}
    for name, rs in (("obs", obs), ("all", rows)):
        for k in ("abs_rel", "delta1", "psnr", "mvs_abs_rel", "mvs_delta1"):
            a = np.array([r[k] for r in rs if k in r], float)
            a = a[np.isfinite(a)]  # `mvs` estimated nothing: left out, as mvgd-eval's summaries do
            out[f"{k}_{name}"] = float(np.median(a)) if a.size else float("nan")
            out[f"{k}_{name}_ci95"] = median_ci95(a) if a.size else [float("nan")] * 2
    both = [r for r in obs if np.isfinite(r.get("mvs_abs_rel", np.nan))]
    if both:
        rng = np.random.default_rng(0)
        for k, sign in (("abs_rel", -1), ("delta1", 1)):  # "B better" = MVGD better
            out[f"vs_mvs_{k}"] = paired_cell(np.array([r[f"mvs_{k}"] for r in both]), np.array([r[k] for r in both]), sign, 2000, rng)
    return out


def table(results: dict) -> str:
    """Markdown: one row per set, lag and camera (results[set][lag][camera] = `summary`)."""
    lines = ["| set | lookahead_frames | camera | frames (observable) | MVGD AbsRel / δ1 [δ1 95 %] | `mvs` AbsRel / δ1 | MVGD − `mvs` AbsRel [95 %] | all frames MVGD / `mvs` AbsRel | MVGD PSNR |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, by_lag in results.items():
        for lag, by_camera in by_lag.items():
            for camera, s in by_camera.items():
                v = s.get("vs_mvs_abs_rel")
                paired = f"{v['diff']:+.3f} [{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}]" if v else "–"
                psnr = f"{s['psnr_all']:.2f} dB" if np.isfinite(s["psnr_all"]) else "–"
                lines.append(f"| {name} | {lag} | {camera} | {s['frames']} ({s['observable']}) | {s['abs_rel_obs']:.3f} / {s['delta1_obs']:.3f} "
                             f"[{s['delta1_obs_ci95'][0]:.3f}, {s['delta1_obs_ci95'][1]:.3f}] | {s['mvs_abs_rel_obs']:.3f} / {s['mvs_delta1_obs']:.3f} "
                             f"| {paired} | {s['abs_rel_all']:.3f} / {s['mvs_abs_rel_all']:.3f} | {psnr} |")
    return "\n".join(lines)


def save_chart(path, results: dict, target: float = 0.10) -> Path:
    """Live-camera AbsRel per set and lag: MVGD's observable median with its 95 % interval (bar),
    `mvs`' median (grey dot), the issue's live-camera target (dashed)."""
    from PIL import Image, ImageDraw, ImageFont

    from mvgd_core import charts

    cells = [(f"{name} / {lag}", c["live"]) for name, by_lag in results.items() for lag, c in by_lag.items() if "live" in c]
    img = Image.new("RGB", (120 + 84 * len(cells), 464), "white")
    draw, font = ImageDraw.Draw(img), ImageFont.load_default()
    top = max([c["abs_rel_obs_ci95"][1] for _, c in cells] + [c["mvs_abs_rel_obs"] for _, c in cells] + [target])
    top = min(top * 1.1, 1.0) if math.isfinite(top) else 1.0
    X, Y = charts.axes(draw, (0, 0, img.width, 400), "live-camera AbsRel, observable frames (set / lookahead_frames)", font,
                       f"blue: MVGD median, 95 % interval; grey: mvs, same views; dashed: live target {target:.2f}", (-0.5, len(cells) - 0.5),
                       (0.0, top), [])
    for x in range(int(X(-0.5)), int(X(len(cells) - 0.5)), 8):
        draw.line([x, Y(target), x + 4, Y(target)], fill=(214, 39, 40))
    for k, (label, c) in enumerate(cells):
        lo, hi = c["abs_rel_obs_ci95"]
        if math.isfinite(lo):
            draw.line([X(k), Y(lo), X(k), Y(hi)], fill=(31, 119, 180), width=3)
        charts.polyline(draw, X, Y, [k], [c["abs_rel_obs"]], (31, 119, 180))
        charts.polyline(draw, X, Y, [k + 0.2], [c["mvs_abs_rel_obs"]], (127, 127, 127))
        name, lag = label.replace("procedural ", "").rsplit(" / ", 1)
        for j, part in enumerate(textwrap.wrap(name, 14)[:3] + [f"lag {lag}"]):
            draw.text((X(k) - 36, 404 + 12 * j), part, fill=(0, 0, 0), font=font)
    img.save(path)
    return Path(path)


def evaluate(pred, sets: dict[str, list[list[Frame]]], lookahead: list[int], novel: bool, mvs: bool, quiet: bool, kf_cfg=None) -> dict:
    """results[set][lag][camera] = `summary` with its "rows"; camera "live", and "virtual" with novel.
    kf_cfg: the node's keyframe parameters (default KeyframeConfig()); with reference_depth > 0 the
    views depend on the depth predicted so far, so each lag's answers are replayed with the scorer."""
    from tqdm import tqdm

    from mvgd_ros.lookahead import refine_sources

    adaptive = kf_cfg is not None and kf_cfg.reference_depth > 0
    cameras = ("live", "virtual") if novel else ("live",)
    # Pose-only replay: the views (fixed-metre keyframes) and, always, how many answers there are.
    jobs = {(name, lag, cam): answers(seqs, lag, cam == "virtual", kf_cfg) for name, seqs in sets.items() for lag in lookahead for cam in cameras}
    bar = tqdm(total=sum(map(len, jobs.values())), unit="frame", disable=quiet)
    results = {name: {lag: {} for lag in lookahead} for name in sets}
    for name, seqs in sets.items():
        scorer = Scorer(pred, tuple(pred.image_size), keep_depth=novel or adaptive)  # its cache is keyed by sequence index: one per set
        for lag in lookahead:
            depth_of = lambda s, frames, lag=lag: scorer.live_depth_fn(s, frames, refine_sources(lag))  # noqa: E731
            for cam in cameras:  # live first: the targets fuse the live depth
                bar.set_description(f"{name}, lookahead {lag}, {cam}")
                if adaptive:  # the views follow the depth predicted so far: replayed again with it
                    jobs[name, lag, cam] = answers(seqs, lag, cam == "virtual", kf_cfg, depth_of)
                live = None if cam == "live" else {(s, i): w for s, i, w in jobs[name, lag, "live"]}
                rows = score_set(scorer, seqs, jobs[name, lag, cam], lag, mvs, bar, live)
                results[name][lag][cam] = {**summary(rows), "rows": rows}
            scorer.live_depth.clear()  # this lag's live depth is no longer needed
    bar.close()
    return results


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trajectories", nargs="*", default=["forward", "wide", "handheld"], choices=sorted(SEQUENCE_SEEDS),
                    help="procedural trajectory kinds, one set each (none: no procedural set)")
    ap.add_argument("--sequences", type=int, default=6, help="held-out sequences per trajectory kind")
    ap.add_argument("--bags", nargs="*", default=[], help="rosbag2 folders with depth, e.g. data/bags/hololens_office")
    ap.add_argument("--real", nargs="*", default=[], choices=sorted(REAL),
                    help="held-out real sequences from their folders: hololens (the walk's last quarter), tabletop")
    ap.add_argument("--lookahead", type=int, nargs="+", default=[0, 2], help="the node's lookahead_frames (each set at each)")
    ap.add_argument("--keyframe-reference-depth", type=float, default=0.0,
                    help="the node's keyframe_reference_depth (m; 0: fixed metre thresholds, the default)")
    ap.add_argument("--no-mvs", dest="mvs", action="store_false", help="skip the classical baseline (~0.6 s a frame)")
    ap.add_argument("--novel", action="store_true", help="also the withheld frames' poses (virtual views: depth, RGB PSNR)")
    ap.add_argument("--fusion-settings", dest="fusion", type=settings_arg(FusionConfig), default=FusionConfig(), metavar="KEY=VALUE[,...]",
                    help="FusionConfig fields for the virtual views' depth, e.g. splat_radius=1 (cracks filled: MODEL_CARD, stop 30)")
    ap.add_argument("--refine-settings", dest="refine", type=settings_arg(RefineConfig), default=RefineConfig(), metavar="KEY=VALUE[,...]",
                    help="RefineConfig fields, e.g. hypotheses=11 (the node's refine_hypotheses)")
    ap.add_argument("--model", default=str(ROOT / "models" / "mvgd_default.pt"))
    ap.add_argument("--refine-net", action=argparse.BooleanOptionalAction, default=True,
                    help="through the checkpoint's learned second stage, as the node's refine_net (default on since stop 31)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    ap.add_argument("--out", default=str(ROOT / "runs" / "eval" / "sequences.json"))
    ap.add_argument("--figure", default="", help="also draw the live-camera chart (PNG) here")
    ap.add_argument("--from-json", default="", help="no evaluation: table and --figure from an earlier run's JSON")
    a = ap.parse_args(argv)
    if a.sequences < 1 or any(k < 0 for k in a.lookahead) or a.keyframe_reference_depth < 0:
        ap.error("--sequences must be >= 1, --lookahead values and --keyframe-reference-depth >= 0")
    if not a.trajectories and not a.bags and not a.real and not a.from_json:
        ap.error("nothing to evaluate: give --trajectories, --bags and / or --real")
    a.command = " ".join(["python training/evaluate_sequences.py", *(sys.argv[1:] if argv is None else argv)])
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.from_json:
        results = json.loads(Path(a.from_json).read_text())["results"]
        print(table(results))
        if a.figure:
            print(f"wrote {save_chart(a.figure, results)}")
        return 0
    import torch

    from mvgd_core.allocator import keep_freed_memory
    from mvgd_core.inference import MVGDPredictor

    torch.set_num_threads(a.threads)
    keep_freed_memory()  # this script owns its process: freed buffers stay for the next step (~25 % faster on CPU)
    sets = {**procedural_sets(a.trajectories, a.sequences), **real_sets(a.real), **bag_sets(a.bags)}
    pred = MVGDPredictor.from_checkpoint(a.model, device="cpu", steps=1, refine=a.refine, fusion=a.fusion)
    pred.use_refine_net = a.refine_net
    t0 = time.time()
    from mvgd_ros.keyframes import KeyframeConfig

    results = evaluate(pred, sets, a.lookahead, a.novel, a.mvs, a.quiet, KeyframeConfig(reference_depth=a.keyframe_reference_depth))
    md = table(results)
    print(f"`{a.command}` ({time.time() - t0:.0f} s), medians over observable frames:\n\n{md}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": a.command, "model": a.model, "seeds": {k: SEQUENCE_SEEDS[k] for k in a.trajectories},
                               "sequences": a.sequences, "results": {n: {str(lag): v for lag, v in r.items()} for n, r in results.items()},
                               "table": md}, indent=1))
    print(f"\nwrote {out}")
    if a.figure:
        print(f"wrote {save_chart(a.figure, results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
