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
   multi-view stereo baseline "mvs" (and "mvs_confident", its kept pixels only).
5. report/: metrics.json, README.md and index.html (tables), frames/*.png (inputs, GT, every
   method's depth on one colour scale with a legend, error maps, observability), overview.png.
   --out: a folder mvgd-eval creates gets a marker file (.mvgd-eval-report); a non-empty
   folder without it is refused and never touched. Old report files are replaced only once
   the node has produced output, so a failed run leaves the previous report in place.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from mvgd_core import baselines as BL
from mvgd_core import viz
from mvgd_core.cameras import matrix_to_quat
from mvgd_core.data.types import Frame
from mvgd_core.report import FrameResult, headline, latency_stats, write_report


class EvalError(RuntimeError):
    """A problem the user must fix (bag, topics, node); the message says what and how."""


# --------------------------------------------------------------------------- pure helpers (tested without ROS)


def match_by_stamp(stamps, ref_stamps, tol: float = 1e-3) -> dict:
    """{i: j}: for each stamps[i], the index j of the nearest ref_stamps within `tol` seconds."""
    ref = np.asarray(sorted(range(len(ref_stamps)), key=lambda j: ref_stamps[j]))
    rs = np.asarray([ref_stamps[j] for j in ref], dtype=np.float64)
    out = {}
    if rs.size == 0:
        return out
    for i, s in enumerate(stamps):
        k = int(np.searchsorted(rs, s))
        cands = [c for c in (k - 1, k) if 0 <= c < rs.size]
        best = min(cands, key=lambda c: abs(rs[c] - s))
        if abs(rs[best] - s) <= tol:
            out[i] = int(ref[best])
    return out


def holdout_indices(n: int, every: int, warmup: int = 2) -> set[int]:
    """Frame indices withheld from the node: every `every`-th one after `warmup` frames (0/1 = none)."""
    if every <= 1:
        return set()
    return {i for i in range(warmup, n) if (i - warmup) % every == every - 1}


def resample_to_camera(img: np.ndarray, K_src, K_dst, dst_hw, depth: bool) -> np.ndarray:
    """Resample an image of camera K_src into camera K_dst (same pose, other intrinsics/size).

    Anti-aliased for RGB (area resize to the target scale first, then bilinear remap);
    nearest-neighbour for depth so foreground and background never mix (0 stays invalid).
    """
    K_src, K_dst = np.asarray(K_src, np.float64), np.asarray(K_dst, np.float64)
    h, w = dst_hw
    scale = min(K_dst[0, 0] / K_src[0, 0], K_dst[1, 1] / K_src[1, 1])
    if scale < 0.9:  # pre-shrink so the remap below does not alias
        H0, W0 = img.shape[:2]
        ws, hs = max(1, int(round(W0 * scale))), max(1, int(round(H0 * scale)))
        img = cv2.resize(img, (ws, hs), interpolation=cv2.INTER_NEAREST if depth else cv2.INTER_AREA)
        sx, sy = ws / W0, hs / H0
        K_src = K_src.copy()
        K_src[0, 0] *= sx
        K_src[1, 1] *= sy
        K_src[0, 2] = (K_src[0, 2] + 0.5) * sx - 0.5
        K_src[1, 2] = (K_src[1, 2] + 0.5) * sy - 0.5
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    mx = ((u - K_dst[0, 2]) / K_dst[0, 0] * K_src[0, 0] + K_src[0, 2]).astype(np.float32)
    my = ((v - K_dst[1, 2]) / K_dst[1, 1] * K_src[1, 1] + K_src[1, 2]).astype(np.float32)
    interp = cv2.INTER_NEAREST if depth else cv2.INTER_LINEAR
    return cv2.remap(np.ascontiguousarray(img), mx, my, interp, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def depth_scores(pred: np.ndarray, gt: np.ndarray) -> dict:
    """Depth metrics on pixels valid in both ground truth and prediction (NaN / <= 0 = no
    depth), with "coverage" (mvgd_core.metrics.depth_scores); {} when the GT has no valid pixel."""
    from mvgd_core.metrics import SCORED_DEPTH_KEYS
    from mvgd_core.metrics import depth_scores as scores

    g = np.asarray(gt, np.float32)
    if not (np.isfinite(g) & (g > 0)).any():
        return {}
    return scores(pred, g, keys=(*SCORED_DEPTH_KEYS, "sq_rel", "log_rmse"))


def rgb_scores(pred: np.ndarray, gt: np.ndarray) -> dict:
    """PSNR (dB) and SSIM of uint8 (H, W, 3) images, as floats in [0, 1]."""
    from mvgd_core import metrics as M

    p = torch.as_tensor(pred).permute(2, 0, 1).float()[None] / 255.0
    g = torch.as_tensor(gt).permute(2, 0, 1).float()[None] / 255.0
    return {"psnr": float(M.psnr(p, g)), "ssim": float(M.ssim(p, g))}


def _to_t_rgb(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 255.0


def baseline_predictions(cond: list[Frame], tgt_K, tgt_T_wc, hw, target_index, sweep: dict) -> dict:
    """Both baselines at one target; cond frames are already in the output camera (size hw)."""
    rgb = torch.stack([_to_t_rgb(f.rgb) for f in cond])
    K = torch.stack([torch.as_tensor(f.K, dtype=torch.float32) for f in cond])
    T = torch.stack([torch.as_tensor(f.T_wc, dtype=torch.float32) for f in cond])
    depth = None if any(f.depth is None for f in cond) else torch.stack([torch.from_numpy(f.depth) for f in cond])
    out = BL.run_baselines(rgb, K, T, torch.as_tensor(tgt_K, dtype=torch.float32), torch.as_tensor(tgt_T_wc, dtype=torch.float32), hw,
                           cond_depth=depth, target_index=target_index, **sweep)
    res = {}
    for name, r in out.items():
        res[name] = {
            "depth": r["depth"].numpy().astype(np.float32),
            "rgb": None if r["rgb"] is None else viz.rgb_to_uint8(r["rgb"]),
            "coverage": r["coverage"],
            "depth_sparse": None if r.get("depth_sparse") is None else r["depth_sparse"].numpy().astype(np.float32),
        }
    return res


@dataclass
class Output:
    """One node output: stamp (s), decoded image, its camera (K, hw), receive wall time."""

    stamp: float
    data: np.ndarray
    K: np.ndarray | None
    recv: float


def in_camera(f: Frame, K_out, hw) -> Frame:
    """A ground-truth frame resampled into the output camera K_out of size hw."""
    return Frame(
        rgb=resample_to_camera(f.rgb, f.K, K_out, hw, depth=False),
        K=np.asarray(K_out, np.float64), T_wc=f.T_wc,
        depth=None if f.depth is None else resample_to_camera(f.depth, f.K, K_out, hw, depth=True),
        stamp=f.stamp, frame_id=f.frame_id,
    )


def node_conditioning(frames: list[Frame], held: set[int], kf_cfg, select_views: int = 0) -> dict[int, list[int]]:
    """{frame index: indices of the conditioning views the node uses for it}, by replaying the
    node's own keyframe policy (mvgd_ros.keyframes, same parameters) over the frames it was sent.

    Live frames (sent): the live frame plus keyframes (`KeyframeSet.conditioning`, live last).
    Held-out frames: the keyframes at that moment nearest the target (`KeyframeSet.select`).
    """
    from mvgd_ros.keyframes import KeyframeSet

    ks = KeyframeSet(kf_cfg)
    index = {id(f): i for i, f in enumerate(frames)}
    out = {}
    for i, f in enumerate(frames):
        if i in held:
            if ks.frames:
                out[i] = [index[id(x)] for x in ks.select(f.T_wc, select_views)]
            continue
        ks.add(f)
        out[i] = [index[id(x)] for x in ks.conditioning(f, select_views)]
    return out


SHORT_NAMES = {"mvgd": "MVGD", "mvs": "MVS", "mvs_confident": "MVS confident", "plane_sweep": "plane sweep", "reprojection": "oracle reproj.",
               "const_gt_median": "GT median", "const_train_median": "train median"}


def frame_observability(gt: Frame, cond: list[Frame], model_hw):
    """(Observability, observable mask (H, W) bool) of gt's depth from the conditioning frames
    (all in the output camera), measured at the model's resolution; (None, None) without depth."""
    from mvgd_core.observability import observability_with_mask

    if gt.depth is None or not cond:
        return None, None
    obs, mask = observability_with_mask(gt.depth, gt.K, gt.T_wc, np.stack([c.K for c in cond]), np.stack([c.T_wc for c in cond]),
                                        model_hw, gt.depth.shape)
    return obs, mask.numpy()


def frame_metrics(kind: str, gt: Frame, pred_depth, pred_rgb, base: dict, train_median: float | None) -> tuple[dict, dict]:
    """({method: {metric: value}}, {reference name: depth}) for one target: the node's output,
    the baselines and the constant reference rows (mvgd_core.metrics.constant_references)."""
    from mvgd_core.metrics import constant_references

    m: dict = {}
    refs = {}
    if gt.depth is not None:
        if pred_depth is not None:
            m["mvgd"] = depth_scores(pred_depth, gt.depth)
        for name, b in base.items():
            m[name] = depth_scores(b["depth"], gt.depth) | {"coverage": b["coverage"]}
            if b.get("depth_sparse") is not None:  # coverage: share of valid GT pixels estimated before hole filling
                sparse = depth_scores(b["depth_sparse"], gt.depth)
                m[name]["coverage"] = sparse.get("coverage", b["coverage"])
                if name == "mvs":  # only the pixels it kept (confidence + consistency)
                    m["mvs_confident"] = sparse
        refs = {k: v.numpy() for k, v in constant_references(gt.depth, train_median).items()}
        for name, d in refs.items():
            m[name] = depth_scores(d, gt.depth)
    if kind == "novel":
        if pred_rgb is not None:
            m.setdefault("mvgd", {}).update(rgb_scores(pred_rgb, gt.rgb))
        for name, b in base.items():
            if b["rgb"] is not None:
                m.setdefault(name, {}).update(rgb_scores(b["rgb"], gt.rgb) | {"coverage": b["coverage"]})
    return {k: v for k, v in m.items() if v}, refs


def _depths_to_show(pred_depth, base: dict, refs: dict) -> dict:
    """{label: depth} in table order: MVGD, MVS, plane sweep, reprojection, the true-median constant."""
    d = {"MVGD": pred_depth} if pred_depth is not None else {}
    for name in ("mvs", "plane_sweep", "reprojection"):
        if name in base:
            d[SHORT_NAMES[name]] = base[name]["depth"]
    if "const_gt_median" in refs:
        d[SHORT_NAMES["const_gt_median"]] = refs["const_gt_median"]
    return d


def _overview_row(kind: str, t_rel: float, gt: Frame, pred_rgb, depths: dict, obs_mask, obs) -> tuple[list, list]:
    """Target RGB, (MVGD RGB,) then GT and every method's depth on one colour scale, the scale,
    observability and the error maps (viz.method_depth_row)."""
    cells = [gt.rgb]
    labs = [f"{'live' if kind == 'depth_live' else 'novel'} +{t_rel:.1f}s" + (f" {obs.regime}" if obs is not None else "")]
    if kind == "novel" and pred_rgb is not None:
        cells.append(pred_rgb)
        labs.append("MVGD RGB")
    c, lab = viz.method_depth_row(gt.depth, depths, obs_mask=obs_mask, bar_hw=viz.legible_cell(gt.rgb.shape[:2]),
                                  obs_label=f"{obs.regime} {obs.frac:.0%}" if obs is not None else "observable")
    return cells + c, labs + lab


def score_frames(frames: list[Frame], live_out: dict, novel_rgb: dict, novel_depth: dict, cond_sets: dict[int, list[int]],
                 sweep: dict, out_dir: Path | None, baselines: bool = True, max_pictures: int = 1000, progress: bool = True,
                 model_hw=(48, 64), train_median: float | None = None):
    """Score node outputs against ground truth frames; optionally write per-frame pictures.

    frames: ground truth in bag order. live_out/novel_rgb/novel_depth: {frame index: Output}.
    cond_sets: {frame index: conditioning frame indices} (see `node_conditioning`): the
    baselines see the same views as the model, and each target's observability regime is
    measured against them at `model_hw`. train_median: depth of the const_train_median row
    (None: row left out). Returns (results, overview rows, labels, notes).
    """
    from tqdm import tqdm

    results, rows, labels, notes = [], [], [], []
    jobs = [(i, "depth_live") for i in sorted(live_out)] + [(i, "novel") for i in sorted(set(novel_rgb) | set(novel_depth))]
    n_pics = 0
    for i, kind in tqdm(jobs, desc="score", disable=not progress, file=sys.stderr, leave=False):
        f = frames[i]
        o = live_out.get(i) if kind == "depth_live" else (novel_rgb.get(i) or novel_depth.get(i))
        hw = o.data.shape[:2]
        K_out = o.K if o.K is not None else f.K
        gt = in_camera(f, K_out, hw)
        window = cond_sets.get(i, [])
        cond = [in_camera(frames[j], K_out, hw) for j in window]
        tgt_idx = window.index(i) if kind == "depth_live" and i in window else None
        base = {}
        if baselines and len(cond) >= (2 if tgt_idx is not None else 1):
            try:
                base = baseline_predictions(cond, K_out, f.T_wc, hw, tgt_idx, sweep)
            except ValueError as exc:
                notes.append(f"baselines skipped at {f.stamp:.3f}: {exc}")
        pred_depth = o.data if kind == "depth_live" else (novel_depth[i].data if i in novel_depth else None)
        pred_rgb = novel_rgb[i].data if kind == "novel" and i in novel_rgb else None
        obs, obs_mask = frame_observability(gt, cond, model_hw)
        m, refs = frame_metrics(kind, gt, pred_depth, pred_rgb, base, train_median)
        r = FrameResult(stamp=f.stamp, kind=kind, metrics=m, regime=obs.regime if obs else "",
                        observable_frac=obs.frac if obs else None)
        if out_dir is not None and n_pics < max_pictures:
            depths = _depths_to_show(pred_depth, base, refs)
            inputs = [cv2.resize(frames[j].rgb, (hw[1], hw[0]), interpolation=cv2.INTER_AREA) for j in window[-4:]]
            extra = {k: v for k, v in depths.items() if k != "MVGD"}
            panel = viz.depth_panel(inputs, pred_depth, gt.depth, pred_rgb=pred_rgb, gt_rgb=gt.rgb if kind == "novel" else None,
                                    extra_depths=extra, obs_mask=obs_mask,
                                    obs_label=f"{obs.regime} {obs.frac:.0%}" if obs else "observable")
            rel = f"frames/{kind}_{f.stamp:.3f}.png"
            viz.save_png(out_dir / rel, panel)
            r.picture = rel
            n_pics += 1
            c, lab = _overview_row(kind, f.stamp - frames[0].stamp, gt, pred_rgb, depths, obs_mask, obs)
            rows.append(c)
            labels.append(lab)
        results.append(r)
    return results, rows, labels, notes


def pick_overview(rows, labels, n: int = 8):
    """Up to n rows spread evenly, live-depth and novel rows both represented."""
    if len(rows) <= n:
        return rows, labels
    idx = np.unique(np.linspace(0, len(rows) - 1, n).round().astype(int))
    return [rows[i] for i in idx], [labels[i] for i in idx]


# --------------------------------------------------------------------------- ROS side


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no stderr captured)"


class NodeProcess:
    """`mvgd_node` as a subprocess; stderr/stdout to a log file for error messages."""

    def __init__(self, cmd: list[str], env: dict, log: Path):
        self.cmd, self.log = cmd, log
        self._fh = open(log, "wb")
        try:
            self.proc = subprocess.Popen(cmd, stdout=self._fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        except FileNotFoundError as exc:
            raise EvalError(f"cannot start the node: {exc}. Is the package installed (`make venv`)?") from exc

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 40) -> str:
        self._fh.flush()
        return _tail(self.log, n)

    def peak_rss_mb(self) -> float | None:
        """Peak resident memory of the node process (VmHWM, Linux), while it runs."""
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
        except OSError:
            pass
        return None

    def stop(self, timeout: float = 10.0) -> int | None:
        self.peak_mb = self.peak_rss_mb()
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._fh.close()
        return self.proc.returncode


class Collector:
    """In-process rclpy node: node outputs by stamp, target-pose publisher, gate helpers."""

    def __init__(self, args):
        import rclpy
        from geometry_msgs.msg import PoseStamped
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image

        from mvgd_ros import image_codec as IC

        self.IC = IC
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node("mvgd_eval", context=self.ctx)
        self.cv = threading.Condition()
        self.depth: dict[float, Output] = {}
        self.rgb: dict[float, Output] = {}
        self.vdepth: dict[float, Output] = {}
        self.infos: dict[str, dict[float, np.ndarray]] = {"depth": {}, "rgb": {}}
        self.errors: list[str] = []
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(Image, args.depth_out, lambda m: self._img(m, self.depth, "depth"), qos)
        self.node.create_subscription(CameraInfo, args.depth_out + "/camera_info", lambda m: self._info(m, "depth"), qos)
        if args.rgb_out:
            self.node.create_subscription(Image, args.rgb_out, lambda m: self._img(m, self.rgb, "rgb"), qos)
            self.node.create_subscription(CameraInfo, args.rgb_out + "/camera_info", lambda m: self._info(m, "rgb"), qos)
        if args.virtual_depth_out:
            self.node.create_subscription(Image, args.virtual_depth_out, lambda m: self._img(m, self.vdepth, "vdepth"), qos)
        self.pose_pub = self.node.create_publisher(PoseStamped, args.target_pose_topic, 10)
        self.PoseStamped = PoseStamped
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self.thread = threading.Thread(target=self.ex.spin, daemon=True)
        self.thread.start()

    @staticmethod
    def _stamp(h) -> float:
        return h.stamp.sec + h.stamp.nanosec * 1e-9

    def _info(self, msg, kind):
        K, _ = self.IC.camera_info_to_K(msg)
        with self.cv:
            self.infos[kind][round(self._stamp(msg.header), 3)] = K

    def _img(self, msg, store, kind):
        t = time.time()
        try:
            data = self.IC.image_to_rgb(msg) if msg.encoding in self.IC.COLOR_ENCODINGS else self.IC.image_to_depth(msg)
        except ValueError as exc:
            self.errors.append(f"{kind}: {exc}")
            return
        s = self._stamp(msg.header)
        with self.cv:
            store[round(s, 3)] = Output(s, data, None, t)
            self.cv.notify_all()

    def wait(self, store: dict, stamp: float, timeout: float) -> bool:
        key = round(stamp, 3)
        with self.cv:
            return self.cv.wait_for(lambda: key in store, timeout)

    def publish_target(self, T_wc: np.ndarray, stamp: float, frame_id: str):
        msg = self.PoseStamped()
        msg.header.stamp.sec = int(stamp // 1)
        msg.header.stamp.nanosec = int(round((stamp - int(stamp // 1)) * 1e9)) % 1_000_000_000
        msg.header.frame_id = frame_id
        q = matrix_to_quat(T_wc[:3, :3])
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(x) for x in T_wc[:3, 3])
        msg.pose.orientation.x, msg.pose.orientation.y, msg.pose.orientation.z, msg.pose.orientation.w = (float(x) for x in q)
        self.pose_pub.publish(msg)

    def attach_K(self):
        """Give each output the K of its camera_info (same stamp), if it arrived."""
        with self.cv:
            for store, kind in ((self.depth, "depth"), (self.rgb, "rgb"), (self.vdepth, "rgb")):  # virtual depth shares the rgb camera
                for key, o in store.items():
                    o.K = self.infos[kind].get(key)

    def close(self):
        import rclpy

        self.ex.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.ctx)


def _node_command(args) -> list[str]:
    exe = shutil.which(args.node_cmd) or str(Path(sys.executable).with_name(args.node_cmd))
    if not Path(exe).exists() and not shutil.which(exe):
        raise EvalError(f"node executable {args.node_cmd!r} not found (looked on PATH and next to {sys.executable}); run `make venv`")
    cmd = [exe, "--ros-args", "-p", f"fixed_frame:={args.world_frame}"]
    if args.model:
        cmd += ["-p", f"{args.model_param}:={Path(args.model).resolve()}"]
    for p in args.param:
        cmd += ["-p", p]
    remaps = {"image": args.image_topic, "camera_info": args.camera_info_topic}
    for k, v in remaps.items():
        if v:
            cmd += ["-r", f"{k}:={v}"]
    return cmd


def _detect_topics(bag, args):
    """Fill in image/camera_info/depth topics from the bag when not given."""
    from mvgd_ros.player import bag_topics

    topics = bag_topics(bag)
    images = [t for t, (ty, n) in topics.items() if ty == "sensor_msgs/msg/Image" and n > 0]
    if not images:
        raise EvalError(f"bag {bag} has no sensor_msgs/Image topic with messages; topics: {sorted(topics)}")
    if args.image_topic is None:
        colour = [t for t in images if "depth" not in t]
        if not colour:
            raise EvalError(f"cannot tell which image topic is the colour camera among {images}; pass --image-topic")
        args.image_topic = colour[0]
    elif args.image_topic not in topics:
        raise EvalError(f"--image-topic {args.image_topic} is not in the bag; image topics: {images}")
    if args.depth_topic is None:
        depth = [t for t in images if "depth" in t]
        args.depth_topic = depth[0] if depth else ""
    elif args.depth_topic and args.depth_topic not in topics:
        raise EvalError(f"--depth-topic {args.depth_topic} is not in the bag; image topics: {images}")
    if args.camera_info_topic is None:
        ns = args.image_topic.rsplit("/", 1)[0]
        infos = [t for t, (ty, _) in topics.items() if ty == "sensor_msgs/msg/CameraInfo"]
        same = [t for t in infos if t.rsplit("/", 1)[0] == ns]
        if not (same or infos):
            raise EvalError(f"bag {bag} has no sensor_msgs/CameraInfo topic; the node needs intrinsics")
        args.camera_info_topic = (same or infos)[0]
    return topics


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


def _ground_truth(bag: Path, args, notes: list[str]) -> tuple[dict, list[Frame], set[int]]:
    """(bag topics, ground-truth frames, held-out frame indices); EvalError for unusable bags."""
    from mvgd_core.data.rosbag_io import BagError as RosbagIOError
    from mvgd_core.data.rosbag_io import read_bag
    from mvgd_ros.player import BagError

    try:
        topics = _detect_topics(bag, args)
    except BagError as exc:
        raise EvalError(str(exc)) from exc
    try:
        frames = read_bag(bag, rgb_topic=args.image_topic, depth_topic=args.depth_topic or None, info_topic=args.camera_info_topic, fixed_frame=args.world_frame)
    except RosbagIOError as exc:
        raise EvalError(str(exc)) from exc
    except ValueError as exc:  # a Frame refused the bag's data, e.g. CameraInfo K all zero
        raise EvalError(f"{bag}: cannot use the ground truth on {args.image_topic} / {args.camera_info_topic}: {exc}. "
                        "A CameraInfo whose K is all zero comes from an uncalibrated camera: calibrate it "
                        "(camera_calibration) or fix the driver's camera_info, then record again.") from exc
    if not frames:
        raise EvalError(f"no usable frames on {args.image_topic} (need image + camera_info + TF to {args.world_frame})")
    if args.max_frames:
        frames = frames[: args.max_frames]
    if not any(f.depth is not None for f in frames):
        notes.append("no depth ground truth in the bag (no depth topic): depth metrics and the reprojection baseline are skipped; RGB of held-out views is still scored")
    held = holdout_indices(len(frames), args.holdout_every, args.warmup)
    if not args.rgb_out and held:
        held = set()
        notes.append("no RGB output topic configured: no held-out novel views")
    return topics, frames, held


def _messages_to_play(bag: Path, topics: dict, frames: list[Frame], args) -> list:
    """Image, camera_info and TF messages up to the last evaluated frame (depth and the rest are not node inputs)."""
    from mvgd_ros.player import read_messages

    last_stamp = frames[-1].stamp
    play_topics = [t for t in (args.image_topic, args.camera_info_topic, "/tf", "/tf_static") if t in topics]
    msgs = [m for m in read_messages(bag, play_topics) if m.stamp is None or m.stamp <= last_stamp + 1e-6 or m.topic not in (args.image_topic, args.camera_info_topic)]
    return [m for m in msgs if m.bag_ns <= int((last_stamp + 5.0) * 1e9) or m.topic == "/tf_static"] if args.max_frames else msgs


@dataclass
class Playback:
    """What came back from the node: outputs by frame index, latency samples, process facts."""

    live: dict  # {frame index: Output} depth at the live camera
    rgb: dict  # {held-out index: Output} virtual-view RGB
    vdepth: dict  # {held-out index: Output} virtual-view depth
    lat_samples: list  # [(stamp, seconds image published -> depth received)]
    startup_s: float
    node_rc: int | None
    node_cmd: list
    node_peak_mb: float | None


def _play_through_node(bag: Path, args, out: Path, frames: list[Frame], held: set[int], msgs: list, notes: list[str]) -> Playback:
    """Start the node, wait for it to subscribe, play the bag (gated or paced), collect outputs."""
    from mvgd_ros.player import BagPlayer

    stamp_to_idx = {round(f.stamp, 3): i for i, f in enumerate(frames)}
    env = dict(os.environ)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    cmd = _node_command(args)
    node = NodeProcess(cmd, env, out / "node.log")
    col = None
    pub_time: dict[float, float] = {}
    try:
        col = Collector(args)
        player = BagPlayer(col.node, msgs, rate=args.rate or 1.0, tf_lead=args.tf_lead)
        t0 = time.monotonic()
        while True:
            if not node.alive():
                raise EvalError(f"the node exited with code {node.proc.returncode} before subscribing to {args.image_topic}:\n{node.tail()}")
            # every input topic matched (a camera_info or /tf lost to discovery would drop frames)
            if not player.wait_for_subscribers(list(player.publishers), timeout=0.0) and col.node.count_publishers(args.depth_out) > 0:
                break
            if time.monotonic() - t0 > args.startup_timeout:
                raise EvalError(f"the node did not subscribe to {args.image_topic} within {args.startup_timeout:.0f}s:\n{node.tail()}")
            time.sleep(0.1)
        # Matching is seen from our side first; give the node's side a moment too, or the first
        # image (volatile QoS) is lost and the node may think nobody wants its depth yet.
        time.sleep(args.settle)
        startup_s = time.monotonic() - t0

        misses: list[float] = []
        seen_outputs = [0]

        def skip(m):
            if m.topic not in (args.image_topic, args.camera_info_topic) or m.stamp is None:
                return False
            i = stamp_to_idx.get(round(m.stamp, 3))
            if i is None or i not in held:
                return False
            if m.topic == args.image_topic:  # withheld image: ask for its view instead
                col.publish_target(frames[i].T_wc, frames[i].stamp, args.world_frame)
                if args.rate is None:
                    store = col.vdepth if args.virtual_depth_out else col.rgb  # published last for a target
                    if not col.wait(store, m.stamp, _timeout(args, seen_outputs[0])):
                        misses.append(m.stamp)
            return m.topic == args.image_topic

        def on_publish(m, wall):
            if m.topic == args.image_topic and m.stamp is not None:
                pub_time[round(m.stamp, 3)] = wall

        def gate(m):
            if not node.alive():
                raise EvalError(f"the node died during playback (code {node.proc.returncode}):\n{node.tail()}")
            if col.wait(col.depth, m.stamp, _timeout(args, seen_outputs[0])):
                seen_outputs[0] += 1
            else:
                misses.append(m.stamp)

        print(f"[mvgd-eval] node up after {startup_s:.1f}s; playing {len(frames)} frames ({len(held)} held out) from {bag}", file=sys.stderr)
        player.play(gate=None if args.rate else gate, trigger_topics=(args.image_topic,), on_publish=on_publish, skip=skip, progress=not args.quiet)
        # drain: outputs still in flight
        end = time.monotonic() + (args.drain if args.rate else 2.0)
        while time.monotonic() < end and node.alive():
            time.sleep(0.1)
        col.attach_K()
        if not col.depth and not col.rgb:
            raise EvalError(f"the node produced no output on {args.depth_out} / {args.rgb_out} for {len(frames)} frames:\n{node.tail()}")
        if misses:
            notes.append(f"{len(misses)} of {len(frames)} inputs got no output within the gate timeout (node warming up, dropping, or lacking TF)")
        if col.errors:
            notes.append(f"{len(col.errors)} outputs could not be decoded, e.g. {col.errors[0]}")
        depth_out = {stamp_to_idx[k]: o for k, o in col.depth.items() if k in stamp_to_idx}
        rgb_out = {stamp_to_idx[k]: o for k, o in col.rgb.items() if k in stamp_to_idx and stamp_to_idx[k] in held}
        vdepth_out = {stamp_to_idx[k]: o for k, o in col.vdepth.items() if k in stamp_to_idx and stamp_to_idx[k] in held}
        live = {i: o for i, o in depth_out.items() if i not in held}
        # novel depth may also arrive on the depth topic if the node publishes virtual depth there
        vdepth_out.update({i: o for i, o in depth_out.items() if i in held and i not in vdepth_out})
        lat_samples = sorted((o.stamp, o.recv - pub_time[k]) for k, o in col.depth.items() if k in pub_time)
    finally:
        if col is not None:
            col.close()
        rc = node.stop()
    return Playback(live, rgb_out, vdepth_out, lat_samples, startup_s, rc, cmd, getattr(node, "peak_mb", None))


def run_eval(args) -> dict:
    """The whole evaluation; returns the summary dict (also written to args.out/metrics.json)."""
    t_start = time.time()
    bag = Path(args.bag)
    if not bag.exists():
        raise EvalError(f"bag not found: {bag}")
    out = Path(args.out)
    prepare_out_dir(out)  # before anything else: a folder that is not ours is never touched
    notes: list[str] = []
    node_params = _node_param_values(args)
    topics, frames, held = _ground_truth(bag, args, notes)  # 1. ground truth
    msgs = _messages_to_play(bag, topics, frames, args)  # 2. what to play
    pb = _play_through_node(bag, args, out, frames, held, msgs, notes)  # 3. node + collector
    wall_play = time.time() - t_start

    # 4. score (ground truth vs outputs, baselines on the same frames)
    if args.clean:
        clean_report(out)
    model_hw, train_median, median_src = model_facts(args.model, args.train_median)
    live = dict(list(pb.live.items())[:: max(1, args.eval_every)])
    sweep = dict(d_min=args.sweep_dmin, d_max=args.sweep_dmax, num_planes=args.sweep_planes, cost=args.sweep_cost,
                 window=args.sweep_window, cost_filter=args.sweep_filter)
    from mvgd_ros.node import keyframe_config

    cond_sets = node_conditioning(frames, held, keyframe_config(node_params), node_params.select_views)
    results, rows, labels, more = score_frames(frames, live, pb.rgb, pb.vdepth, cond_sets, sweep, out,
                                               baselines=not args.no_baselines, max_pictures=args.max_pictures, progress=not args.quiet,
                                               model_hw=model_hw, train_median=train_median)
    notes += sorted(set(more))
    overview = None
    if rows:
        r, lab = pick_overview(rows, labels, args.overview_rows)
        viz.save_png(out / "overview.png", viz.make_grid(r, lab, cell_hw=viz.legible_cell(r[0][0].shape[:2])))
        overview = "overview.png"
    lat = [x for _, x in pb.lat_samples]
    summary = {
        "bag": str(bag), "command": getattr(args, "command", None), "model": str(args.model),
        "node_cmd": " ".join(shlex.quote(c) for c in pb.node_cmd), "node_exit_code": pb.node_rc,
        "topics": {"image": args.image_topic, "camera_info": args.camera_info_topic, "depth_gt": args.depth_topic or None,
                   "world_frame": args.world_frame, "depth_out": args.depth_out, "rgb_out": args.rgb_out, "target_pose": args.target_pose_topic},
        "frames_info": {"frames": len(frames), "held_out": len(held), "live_depth_outputs": len(live),
                        "novel_outputs": len(pb.rgb), "mode": f"rate x{args.rate}" if args.rate else "gated (as fast as the node keeps up)"},
        "baselines_info": None if args.no_baselines else {"conditioning": "the node's own views (its keyframe policy replayed with its parameters)",
                                                           "plane_sweep": sweep, "mvs": "mvgd_core.mvs defaults (holes filled; mvs_confident: kept pixels only)",
                                                           "reprojection": "nearest other view by |dt| + 1 m/rad * angle, GT depth"},
        "references_info": {"const_train_median": f"{train_median:.3f} m: {median_src}" if train_median else median_src,
                            "const_gt_median": "each frame's median valid GT depth (knows the scale only)",
                            "regimes": f"observability of each target from its conditioning views at the model's resolution "
                                       f"{model_hw[0]}x{model_hw[1]} (mvgd_core.observability)"},
        "latency": latency_stats(lat),
        "latency_note": "Gated playback: one image in flight at a time, so this is the node's processing latency without queueing." if not args.rate else
                        f"Paced at x{args.rate} bag time: includes queueing; dropped frames have no latency sample.",
        "latency_samples": [[round(t, 6), round(x, 6)] for t, x in pb.lat_samples],
        "node_peak_rss_mb": pb.node_peak_mb,
        "node_startup_s": round(pb.startup_s, 2), "wall_time_s": round(time.time() - t_start, 1), "playback_s": round(wall_play, 1),
        "notes": notes,
    }
    readme = write_report(out, summary, results, overview)
    summary = json.loads((out / "metrics.json").read_text())
    summary["readme"] = str(readme)
    return summary


def _node_param_values(args):
    """The node's parameter values: declared defaults (mvgd_ros.params) with our -p overrides."""
    from mvgd_ros import params as NP

    values = {s.name: s.default for s in NP.SPECS}
    for item in args.param:
        name, sep, raw = item.partition(":=")
        if not sep or name not in values:
            raise EvalError(f"--param {item!r}: expected NAME:=VALUE with NAME one of the node's parameters")
        d = values[name]
        try:
            values[name] = type(d)(raw) if not isinstance(d, (bool, list)) else (raw.lower() == "true" if isinstance(d, bool) else json.loads(raw))
        except ValueError as exc:
            raise EvalError(f"--param {item!r}: {exc}") from exc
    return NP.Params(**values)


def _timeout(args, n_outputs: int) -> float:
    """Gate timeout: generous until the node has answered once (model warm-up), then --timeout."""
    return args.first_timeout if n_outputs == 0 else args.timeout


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
    g.add_argument("--depth-out", default="/mvgd/depth")
    g.add_argument("--rgb-out", default="/mvgd/rgb", help="virtual-view RGB topic ('' to skip novel views)")
    g.add_argument("--virtual-depth-out", default="/mvgd/rgb/depth", help="virtual-view depth topic ('' to skip); K from <rgb-out>/camera_info")
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
