"""`mvgd-eval`: replay a rosbag2 through the running `mvgd_node` over real DDS and score it.

    mvgd-eval BAG [--model models/mvgd_default.pt] [--out report] [--holdout-every 4]
              [--image-topic T --camera-info-topic T --depth-topic T --world-frame map] ...

What happens:
1. Ground truth: the bag's frames (RGB, depth if the bag has a depth topic, intrinsics, camera
   poses from its TF) via `mvgd_core.data.rosbag_io.read_bag`.
2. `mvgd_node` starts as a subprocess with the model and topic remaps; we wait until it
   subscribes to the image topic (its stderr tail is shown if it dies or never does).
3. The player (`mvgd_ros.player`) publishes the bag's image, camera_info and TF messages as raw
   CDR. Every k-th image (`--holdout-every`) is withheld from the node; instead its camera
   pose goes out on /mvgd/target_pose and the node's virtual view (/mvgd/rgb, plus depth if
   the node publishes one for it) is compared with the withheld frame. By default playback
   is gated: each image waits for its /mvgd/depth (same stamp) before the next is sent
   (`--rate R` paces by bag time instead, dropping frames like a live robot would).
4. Predictions are matched to ground truth by header stamp, resampled ground truth into the
   output camera (its camera_info), and scored with mvgd_core.metrics (per frame, then the
   median AND mean over frames, overall and per observability regime of the frame's target
   from its conditioning views: "observable" is the headline): depth AbsRel, RMSE,
   delta<1.25 (+SqRel, log RMSE) and RGB PSNR/SSIM; the baselines of mvgd_core.baselines
   (mvs, plane_sweep, reprojection) run on the same frames with the node's conditioning
   views, so every number has a reference.
   Reference rows on the same frames: const_gt_median (each frame's true median: knows the
   scale only), const_train_median (the model's training-data median: knows nothing), the
   multi-view stereo baseline "mvs" (and "mvs_confident", its kept pixels only; "mvgd_confident":
   MVGD's most confident pixels by the confidence the node publishes, as many as mvs kept).
5. report/: metrics.json, README.md and index.html (tables), frames/*.png (inputs, GT, every
   method's depth on one colour scale with a legend, error maps, observability), overview.png.
   --out: a folder mvgd-eval creates gets a marker file (.mvgd-eval-report); a non-empty
   folder without it is refused and never touched. Old report files are replaced only once
   the node has produced output, so a failed run leaves the previous report in place.

Modules: this one is the CLI and the report folder; `eval_bag` reads the bag (topics, ground
truth, hold-outs), `eval_node` runs the node and collects its outputs, `eval_scoring` scores
them (no ROS).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

import torch

from mvgd_core import viz
from mvgd_core.report import headline, latency_stats, write_report
from mvgd_ros.eval_bag import EvalError, ground_truth, messages_to_play
from mvgd_ros.eval_node import Playback, node_param_values, play_through_node
from mvgd_ros.eval_scoring import node_conditioning, pick_overview, score_frames


REPORT_MARKER = ".mvgd-eval-report"  # in every folder mvgd-eval created; only such folders are ever cleaned
REPORT_OUTPUTS = ("frames", "overview.png", "metrics.json", "README.md", "index.html")  # what --clean removes


def prepare_out_dir(out: Path) -> None:
    """Claim `out` for a report: create it (with our marker), or accept it when it is empty,
    holds our marker, or holds only files mvgd-eval writes (an earlier report). Anything else
    is someone else's folder: refuse (EvalError) and touch nothing."""
    if out.exists() and not out.is_dir():
        raise EvalError(f"--out {out} is a file, not a folder")
    if out.is_dir() and not (out / REPORT_MARKER).is_file() and not _only_report_files(out):
        raise EvalError(f"--out {out} is a non-empty folder that mvgd-eval did not create (no {REPORT_MARKER} in it, and files "
                        f"other than a report's); "
                        f"refusing to write or delete anything there. Choose a new or empty folder.")
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_MARKER).write_text("written by mvgd-eval; `mvgd-eval --clean` may replace this folder's report files\n")


def _only_report_files(out: Path) -> bool:
    """True for an empty folder, or one holding nothing but what mvgd-eval writes (a report
    from a version before the marker existed)."""
    return all(p.name in (*REPORT_OUTPUTS, "node.log") for p in out.iterdir())


def clean_report(out: Path) -> None:
    """Remove the previous report's files (only REPORT_OUTPUTS, only in a folder we marked).
    Called after the node has produced output, so a failed run leaves the old report in place."""
    if not (out / REPORT_MARKER).is_file():
        return
    for name in REPORT_OUTPUTS:
        p = out / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


def model_facts(model: str | None, train_median: float | None) -> tuple[tuple[int, int], float | None, str]:
    """(model resolution, const_train_median depth, where that depth comes from) for a checkpoint.

    --train-median wins; else the value stored in / measured from the checkpoint's training
    data (mvgd_core.model_eval.checkpoint_depth_median). An unreadable checkpoint gives the
    default (48, 64) and no const_train_median row (the node will report the real error)."""
    hw = (48, 64)
    try:
        from mvgd_core.checkpoint import load_checkpoint

        ckpt = load_checkpoint(model) if model else None
    except Exception as exc:  # the node reports a bad checkpoint itself, with its own message
        return hw, train_median, "--train-median" if train_median else f"unknown (checkpoint unreadable: {exc})"
    if ckpt is not None:
        hw = tuple(ckpt["config"]["model"].get("image_size", hw))
    if train_median is not None:
        return hw, train_median, "--train-median"
    if ckpt is None:
        return hw, None, "unknown (no --model)"
    from mvgd_core.model_eval import checkpoint_depth_median

    med, where = checkpoint_depth_median(ckpt)
    return hw, med, where


def run_eval(args) -> dict:
    """The whole evaluation; returns the summary dict (also written to args.out/metrics.json)."""
    t_start = time.time()
    bag = Path(args.bag)
    if not bag.exists():
        raise EvalError(f"bag not found: {bag}")
    out = Path(args.out)
    prepare_out_dir(out)  # before anything else: a folder that is not ours is never touched
    notes: list[str] = []
    node_params = node_param_values(args)
    topics, frames, held = ground_truth(bag, args, notes)  # 1. ground truth
    msgs = messages_to_play(bag, topics, frames, args)  # 2. what to play
    pb = play_through_node(bag, args, out, frames, held, msgs, notes)  # 3. node + collector
    wall_play = time.time() - t_start

    # 4. score (ground truth vs outputs, baselines on the same frames)
    if args.clean:
        clean_report(out)
    model_hw, train_median, median_src = model_facts(args.model, args.train_median)
    live = dict(list(pb.live.items())[:: max(1, args.eval_every)])
    sweep = dict(d_min=args.sweep_dmin, d_max=args.sweep_dmax, num_planes=args.sweep_planes, cost=args.sweep_cost,
                 window=args.sweep_window, cost_filter=args.sweep_filter)
    from mvgd_ros.node import keyframe_config

    kf_cfg = keyframe_config(node_params)  # with keyframe_reference_depth the views followed the depth the node published
    fed = (lambda i, views: pb.live[i].data if i in pb.live else None) if kf_cfg.reference_depth > 0 else None
    cond_sets = node_conditioning(frames, held, kf_cfg, node_params.select_views, node_params.lookahead_frames, live_depth=fed)
    results, rows, labels, more = score_frames(frames, live, pb.rgb, pb.vdepth, cond_sets, sweep, out,
                                               baselines=not args.no_baselines, max_pictures=args.max_pictures, progress=not args.quiet,
                                               model_hw=model_hw, train_median=train_median)
    notes += sorted(set(more))
    overview = _write_overview(out, rows, labels, args.overview_rows)
    summary = {
        "bag": str(bag), "command": getattr(args, "command", None), "model": str(args.model),
        "node_cmd": " ".join(shlex.quote(c) for c in pb.node_cmd), "node_exit_code": pb.node_rc,
        "topics": {"image": args.image_topic, "camera_info": args.camera_info_topic, "depth_gt": args.depth_topic or None,
                   "world_frame": args.world_frame, "depth_out": args.depth_out, "rgb_out": args.rgb_out, "target_pose": args.target_pose_topic},
        "frames_info": {"frames": len(frames), "held_out": len(held), "live_depth_outputs": len(live),
                        "novel_outputs": len(pb.rgb), "mode": f"rate x{args.rate}" if args.rate else "gated (as fast as the node keeps up)"},
        **_reference_info(args, sweep, model_hw, train_median, median_src),
        **_latency_info(args, pb),
        "node_startup_s": round(pb.startup_s, 2), "wall_time_s": round(time.time() - t_start, 1), "playback_s": round(wall_play, 1),
        "notes": notes,
    }
    readme = write_report(out, summary, results, overview)
    summary = json.loads((out / "metrics.json").read_text())
    summary["readme"] = str(readme)
    return summary


def _write_overview(out: Path, rows: list, labels: list, n: int) -> str | None:
    """overview.png from up to n of the scored rows; its name, or None without rows."""
    if not rows:
        return None
    r, lab = pick_overview(rows, labels, n)
    viz.save_png(out / "overview.png", viz.make_grid(r, lab, cell_hw=viz.legible_cell(r[0][0].shape[:2])))
    return "overview.png"


def _reference_info(args, sweep: dict, model_hw, train_median: float | None, median_src: str) -> dict:
    """The summary's account of what every number is compared with: baselines and reference rows."""
    return {
        "baselines_info": None if args.no_baselines else {"conditioning": "the node's own views (its keyframe policy replayed with its parameters)",
                                                           "plane_sweep": sweep, "mvs": "mvgd_core.mvs defaults (holes filled; mvs_confident: kept pixels only; mvgd_confident: MVGD's most confident pixels, as many)",
                                                           "reprojection": "nearest other view by |dt| + 1 m/rad * angle, GT depth"},
        "references_info": {"const_train_median": f"{train_median:.3f} m: {median_src}" if train_median else median_src,
                            "const_gt_median": "each frame's median valid GT depth (knows the scale only)",
                            "regimes": f"observability of each target from its conditioning views at the model's resolution "
                                       f"{model_hw[0]}x{model_hw[1]} (mvgd_core.observability)"},
    }


def _latency_info(args, pb: Playback) -> dict:
    """The summary's latency figures (image published -> depth received) and the node's peak memory."""
    lat = [x for _, x in pb.lat_samples]
    return {
        "latency": latency_stats(lat),
        "latency_note": "Gated playback: one image in flight at a time, so this is the node's processing latency without queueing." if not args.rate else
                        f"Paced at x{args.rate} bag time: includes queueing; dropped frames have no latency sample.",
        "latency_samples": [[round(t, 6), round(x, 6)] for t, x in pb.lat_samples],
        "node_peak_rss_mb": pb.node_peak_mb,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mvgd-eval", description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("bag", help="rosbag2 folder (sqlite3 or mcap)")
    p.add_argument("--model", default="models/mvgd_default.pt", help="checkpoint passed to the node")
    p.add_argument("--out", default="report", help="report folder. Created if missing and marked as ours; an existing "
                   "non-empty folder without our marker is refused, never written to or deleted")
    p.add_argument("--clean", action=argparse.BooleanOptionalAction, default=True,
                   help="replace the previous report's files in --out (only in a folder mvgd-eval created, only once the node has answered)")
    g = p.add_argument_group("bag topics and frames (default: detected)")
    g.add_argument("--image-topic", default=None)
    g.add_argument("--camera-info-topic", default=None)
    g.add_argument("--depth-topic", default=None, help="depth ground truth (32FC1 m or 16UC1 mm); '' for none")
    g.add_argument("--world-frame", default="map", help="fixed TF frame of the poses")
    g = p.add_argument_group("node")
    g.add_argument("--node-cmd", default="mvgd_node")
    g.add_argument("--model-param", default="checkpoint", help="node parameter that takes the checkpoint")
    g.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE", help="extra node parameter (repeatable)")
    g.add_argument("--depth-out", default="/mvgd/depth", help="live depth output: <base>/image and <base>/camera_info")
    g.add_argument("--rgb-out", default="/mvgd/rgb", help="virtual-view RGB output base ('' to skip novel views)")
    g.add_argument("--virtual-depth-out", default="/mvgd/rgb/depth",
                   help="virtual-view depth output base ('' to skip): <base>/image; K from <rgb-out>/camera_info")
    g.add_argument("--target-pose-topic", default="/mvgd/target_pose")
    g.add_argument("--startup-timeout", type=float, default=120.0, help="s to wait for the node to subscribe")
    g.add_argument("--settle", type=float, default=1.0, help="s to wait after DDS matching before playing")
    g = p.add_argument_group("playback")
    g.add_argument("--rate", type=float, default=None, help="pace by bag time at this multiplier (default: gated, as fast as the node keeps up)")
    g.add_argument("--timeout", type=float, default=20.0, help="gate: s to wait for each output")
    g.add_argument("--first-timeout", type=float, default=60.0, help="gate: s to wait before the node's first output")
    g.add_argument("--drain", type=float, default=10.0, help="paced mode: s to wait for outputs after the last message")
    g.add_argument("--tf-lead", type=float, default=0.5)
    g.add_argument("--max-frames", type=int, default=0, help="use only the first N image frames (0 = all)")
    g.add_argument("--holdout-every", type=int, default=4, help="withhold every k-th frame as a novel view (0 = none)")
    g.add_argument("--warmup", type=int, default=2, help="frames always sent before the first hold-out")
    g = p.add_argument_group("scoring")
    g.add_argument("--eval-every", type=int, default=1, help="score every n-th live depth output")
    g.add_argument("--no-baselines", action="store_true")
    g.add_argument("--sweep-dmin", type=float, default=0.3)
    g.add_argument("--sweep-dmax", type=float, default=10.0)
    g.add_argument("--sweep-planes", type=int, default=64)
    g.add_argument("--sweep-cost", choices=["zncc", "ad"], default="zncc")
    g.add_argument("--sweep-window", type=int, default=7, help="matching window (px)")
    g.add_argument("--sweep-filter", type=int, default=5, help="box filter on the cost volume (px)")
    g.add_argument("--train-median", type=float, default=None,
                   help="depth (m) of the const_train_median reference row (default: stored in / measured from the checkpoint's training data)")
    g.add_argument("--max-pictures", type=int, default=200)
    g.add_argument("--overview-rows", type=int, default=8)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.command = "mvgd-eval " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    # An isolated DDS domain unless the caller chose one: a node or bag running elsewhere on
    # the default domain must not feed our node (or our collector) stray /tf or images.
    os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    try:
        s = run_eval(args)
    except EvalError as exc:
        print(f"mvgd-eval: error: {exc}", file=sys.stderr)
        return 2
    print(f"report: {Path(args.out).resolve()}/README.md (also index.html, metrics.json, overview.png)")
    for line in headline(s):
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
