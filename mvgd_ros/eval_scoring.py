"""mvgd-eval's scoring, pure Python/numpy/torch (no ROS; tested without it).

Node outputs are matched to ground-truth frames by header stamp, the ground truth is resampled
into the output camera (its camera_info), and every target is scored against the baselines of
mvgd_core.baselines and the constant reference rows, run on the node's own conditioning views
(its keyframe policy replayed), per observability regime. Per-frame pictures and overview rows
come from mvgd_core.viz. `mvgd_ros/eval_node.py` collects the outputs; `mvgd_ros/eval.py` is
the CLI.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from mvgd_core import baselines as BL
from mvgd_core import viz
from mvgd_core.data.types import Frame
from mvgd_core.report import FrameResult


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
    return torch.from_numpy(np.require(rgb, requirements=["C", "W"])).permute(2, 0, 1).float() / 255.0  # bag frames are read-only


def baseline_predictions(cond: list[Frame], tgt_K, tgt_T_wc, hw, target_index, sweep: dict, methods=None) -> dict:
    """The baselines at one target (methods: `run_baselines`' subset, None = all that apply); cond
    frames are already in the output camera (size hw)."""
    rgb = torch.stack([_to_t_rgb(f.rgb) for f in cond])
    K = torch.stack([torch.as_tensor(f.K, dtype=torch.float32) for f in cond])
    T = torch.stack([torch.as_tensor(f.T_wc, dtype=torch.float32) for f in cond])
    depth = None if any(f.depth is None for f in cond) else torch.stack([torch.from_numpy(f.depth) for f in cond])
    out = BL.run_baselines(rgb, K, T, torch.as_tensor(tgt_K, dtype=torch.float32), torch.as_tensor(tgt_T_wc, dtype=torch.float32), hw,
                           cond_depth=depth, target_index=target_index, methods=methods, **sweep)
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
    """One node output: stamp (s), decoded image, its camera (K, hw), receive wall time, and for a
    live depth the confidence the node published beside it (None: not collected)."""

    stamp: float
    data: np.ndarray
    K: np.ndarray | None
    recv: float
    confidence: np.ndarray | None = None


def in_camera(f: Frame, K_out, hw) -> Frame:
    """A ground-truth frame resampled into the output camera K_out of size hw."""
    return Frame(
        rgb=resample_to_camera(f.rgb, f.K, K_out, hw, depth=False),
        K=np.asarray(K_out, np.float64), T_wc=f.T_wc,
        depth=None if f.depth is None else resample_to_camera(f.depth, f.K, K_out, hw, depth=True),
        stamp=f.stamp, frame_id=f.frame_id,
    )


def node_conditioning(frames: list[Frame], held: set[int], kf_cfg, select_views: int = 0, lookahead: int = 0,
                      live_depth=None) -> dict[int, list[int]]:
    """{frame index: indices of the conditioning views the node uses for it}, by replaying the
    node's own keyframe policy (mvgd_ros.keyframes, same parameters) over the frames it was sent.

    Live frames (sent): the live frame plus keyframes (`KeyframeSet.conditioning`, live last),
    chosen when the node's lookahead queue releases the frame (`lookahead` newer frames later,
    the node's `lookahead_frames`, mvgd_ros/lookahead.py; the last ones when the stream ends).
    Held-out frames (target requests, which wait in the same queue): the keyframes at their
    release nearest the target (`KeyframeSet.select`); none before the first keyframe.
    live_depth(i, views) -> depth map or None: frame i's live depth from those views, fed back to
    the keyframe set as the node's worker does (needed only with `kf_cfg.reference_depth` > 0).
    """
    from mvgd_ros.keyframes import KeyframeSet
    from mvgd_ros.lookahead import Lagged, LookaheadQueue

    ks, queue = KeyframeSet(kf_cfg), LookaheadQueue()
    index = {id(f): i for i, f in enumerate(frames)}
    out = {}

    def release(items: list[Lagged]) -> None:
        for item in items:
            if item.is_frame:
                i = index[id(item.frame)]
                out[i] = [index[id(x)] for x in ks.conditioning(item.frame, select_views)]
                depth = live_depth(i, out[i]) if live_depth is not None else None
                if depth is not None:
                    ks.observe_depth(depth)
            else:
                out[item.target] = [index[id(x)] for x in ks.select(frames[item.target].T_wc, select_views)]

    for i, f in enumerate(frames):
        if i in held:
            if ks.frames:  # as the node: a target before any posed frame is dropped
                release(queue.push(Lagged(None, None, False, 0.0, target=i, stamp=f.stamp), lookahead))
            continue
        added, reset = ks.add(f)
        if reset:
            queue.clear()  # as the node: frames and targets waiting across a reset get no output
        release(queue.push(Lagged(f, None, added is not None, 0.0, stamp=f.stamp), lookahead))
    release(queue.drain())  # the stream ended: the node's timer releases them
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


def most_confident(pred: np.ndarray, conf: np.ndarray, gt: np.ndarray, share: float) -> np.ndarray:
    """`pred` with only its most confident pixels kept (the others 0 = no depth), among those where
    ground truth and prediction both have depth: as many as `share` of the valid ground-truth
    pixels (none at share 0), ranked as `sparsification_curve` ranks them
    (`most_confident_indices`: equal confidences at the cut sampled evenly)."""
    from mvgd_core.sparsification import most_confident_indices

    g, p, c = (np.asarray(a, np.float32).ravel() for a in (gt, pred, conf))
    has_gt = np.isfinite(g) & (g > 0)
    cand = np.flatnonzero(has_gt & np.isfinite(p) & (p > 0) & np.isfinite(c))
    keep = cand[most_confident_indices(c[cand], min(int(round(share * has_gt.sum())), cand.size))]
    out = np.zeros_like(p)
    out[keep] = p[keep]
    return out.reshape(np.shape(pred))


def sparsification_scores(pred: np.ndarray, conf: np.ndarray, gt: np.ndarray) -> dict:
    """{"abs_rel_conf25": AbsRel of the most confident 25 % of the scored pixels, ...50, ...75}: one
    frame's sparsification curve (mvgd_core.sparsification; the 100 % point is its own "abs_rel")."""
    from mvgd_core.sparsification import PARTIAL_FRACTIONS, fraction_key, sparsification_curve

    p = np.where(np.asarray(pred) > 0, pred, np.nan)  # the node's invalid pixels decode as 0: no depth, not an error
    curve = sparsification_curve(p, gt, conf, PARTIAL_FRACTIONS)
    return {fraction_key(f): a for f, a in zip(curve["fractions"], curve["abs_rel"]) if np.isfinite(a)}


def frame_metrics(kind: str, gt: Frame, pred_depth, pred_rgb, base: dict, train_median: float | None,
                  pred_conf: np.ndarray | None = None) -> tuple[dict, dict]:
    """({method: {metric: value}}, {reference name: depth}) for one target: the node's output,
    the baselines and the constant reference rows (mvgd_core.metrics.constant_references).
    pred_conf: the node's confidence for pred_depth: MVGD's sparsification points
    (`sparsification_scores`) and, with `mvs`, "mvgd_confident": MVGD on its most confident
    pixels, as many as mvs kept on this frame (equal coverage)."""
    from mvgd_core.metrics import constant_references

    m: dict = {}
    refs = {}
    if gt.depth is not None:
        if pred_depth is not None:
            m["mvgd"] = depth_scores(pred_depth, gt.depth)
            if pred_conf is not None and m["mvgd"]:
                m["mvgd"].update(sparsification_scores(pred_depth, pred_conf, gt.depth))
        for name, b in base.items():
            m[name] = depth_scores(b["depth"], gt.depth) | {"coverage": b["coverage"]}
            if b.get("depth_sparse") is not None:  # coverage: share of valid GT pixels estimated before hole filling
                sparse = depth_scores(b["depth_sparse"], gt.depth)
                m[name]["coverage"] = sparse.get("coverage", b["coverage"])
                if name == "mvs":  # only the pixels it kept (confidence + consistency)
                    m["mvs_confident"] = sparse
        kept = m.get("mvs_confident", {}).get("coverage")  # the same frames, the same pixel count
        if pred_depth is not None and pred_conf is not None and kept is not None:
            m["mvgd_confident"] = depth_scores(most_confident(pred_depth, pred_conf, gt.depth, kept), gt.depth)
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
        m, refs = frame_metrics(kind, gt, pred_depth, pred_rgb, base, train_median, o.confidence if kind == "depth_live" else None)
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
