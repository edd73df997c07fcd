"""Classical depth baselines on real translating sequences: the old plane sweep vs the new MVS.

    python benchmarks/bench_baselines.py [--hw 96 128] [--sets hololens tabletop] [--max-targets 0]
                                         [--speed] [--out benchmarks/results/bench_baselines.json]

Sets (../shared/data, see their PROVENANCE.md):
- hololens: the held-out last quarter of hololens_office (mvgd_core.data.splits.hololens_split),
  every target frame of it; conditioning views from the held-out part only.
- tabletop: every frame of tabletop_box (evaluation only).
Conditioning views, like the node (mvgd_ros/keyframes.py, KeyframeConfig defaults): walking
back in time from the target, a frame becomes a keyframe when it is >= 0.2 m or >= 15 deg
from every keyframe so far and within 2 m of the target; at most `--views` of them (default 6),
plus the target itself (the node's depth-of-the-live-camera setting). Both methods see
exactly these views: RGB and poses only; ground-truth depth is used for scoring only.
Everything is resized to --hw (intrinsics rescaled, GT depth nearest-resized); one torch thread;
"ms/frame" is process CPU time (robust to other jobs on a shared machine).

Methods: "plane_sweep" (mvgd_core.baselines.plane_sweep_at_view, its defaults: 0.3-10 m,
64 planes, 4 nearest sources) and "mvs" (mvgd_core.mvs.mvs_at_view, MVSConfig defaults).
Scores (mvgd_core.metrics.depth_metrics, per frame, then mean and median over frames):
- dense: holes filled (baselines.fill_holes), every pixel with GT counts (as the reports use it);
- sparse: only the pixels each method returns as valid, with its coverage;
- common: both methods on the pixels MVS keeps (its confident, consistent pixels).
Regimes: mvgd_core.observability (the target's GT depth vs the other conditioning views, at
--hw): observable / weak / none by the share of pixels that move >= 1 px for a 25 % depth change.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mvgd_core import baselines as B  # noqa: E402
from mvgd_core.cameras import resize_intrinsics  # noqa: E402
from mvgd_core.metrics import depth_metrics  # noqa: E402
from mvgd_core.mvs import MVSConfig, mvs_at_view  # noqa: E402
from mvgd_core.observability import REGIMES, observability  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
KF_TRANSLATION, KF_ROTATION_DEG, KF_MAX_DIST = 0.2, 15.0, 2.0  # KeyframeConfig defaults; "within a couple of metres"
METRICS = ("abs_rel", "rmse", "delta1")


def load_set(name: str):
    """-> list[Frame] of the evaluation frames of a set."""
    if name == "hololens":
        from mvgd_core.data.deepvideomvs import read_deepvideomvs
        from mvgd_core.data.splits import hololens_split

        path = DATA / "hololens_office"
        n = len(list((path / "images").glob("*.png")))
        return read_deepvideomvs(path, indices=hololens_split(n)[1])
    if name == "tabletop":
        from mvgd_core.data.seven_scenes import read_seven_scenes

        return read_seven_scenes(DATA / "tabletop_box")
    raise ValueError(f"unknown set {name!r}")


def to_tensors(frames, hw):
    """Frames -> rgb (N, 3, h, w) [0, 1], depth (N, h, w), K (N, 3, 3), T (N, 4, 4) at hw."""
    rgb = torch.stack([torch.from_numpy(f.rgb).permute(2, 0, 1).float() / 255 for f in frames])
    src_hw = tuple(rgb.shape[-2:])
    rgb = F.interpolate(rgb, size=hw, mode="bilinear", align_corners=False, antialias=True)
    depth = torch.stack([torch.from_numpy(f.depth) for f in frames])[:, None]
    depth = F.interpolate(depth, size=hw, mode="nearest")[:, 0]
    K = resize_intrinsics(torch.from_numpy(np.stack([f.K for f in frames])).float(), src_hw, hw)
    T = torch.from_numpy(np.stack([f.T_wc for f in frames])).float()
    return rgb, depth, K, T


def _rot_deg(Ta, Tb):
    c = (np.trace(Ta[:3, :3].T @ Tb[:3, :3]) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(c, -1, 1))))


def conditioning(T: np.ndarray, t: int, max_views: int) -> list[int]:
    """Keyframes for target t (indices < t, newest first), node-style; see the module doc."""
    picked = []
    for i in range(t - 1, -1, -1):
        if np.linalg.norm(T[i, :3, 3] - T[t, :3, 3]) > KF_MAX_DIST:
            continue
        far = all(np.linalg.norm(T[i, :3, 3] - T[j, :3, 3]) >= KF_TRANSLATION or _rot_deg(T[i], T[j]) >= KF_ROTATION_DEG for j in picked + [t])
        if far:
            picked.append(i)
        if len(picked) == max_views:
            break
    return picked


def score(pred, valid, gt):
    """dense (filled), sparse (valid only) metrics of one prediction (h, w)."""
    filled, _, _ = B.fill_holes(pred, valid)
    return depth_metrics(filled, gt), depth_metrics(pred, gt, mask=valid)


def evaluate_set(name, hw, max_views, max_targets, cfg: MVSConfig, log=print):
    frames = load_set(name)
    rgb, depth, K, T = to_tensors(frames, hw)
    Tn = T.double().numpy()
    rows = []
    targets = [t for t in range(len(frames)) if len(conditioning(Tn, t, max_views)) >= 2]
    if max_targets:
        targets = targets[:: max(1, len(targets) // max_targets)][:max_targets]
    for t in targets:
        others = conditioning(Tn, t, max_views)
        idx = others + [t]  # the target is the last conditioning view
        ref = len(idx) - 1
        gt = depth[t]
        obs = observability(gt, K[t], T[t], K[others], T[others], model_hw=None)
        row = {"frame": frames[t].frame_id, "cond": [frames[i].frame_id for i in others], "obs_frac": obs.frac, "regime": obs.regime}
        w0 = time.process_time()
        d_ps, v_ps, _ = B.plane_sweep_at_view(rgb[idx], K[idx], T[idx], ref)
        w1 = time.process_time()
        r = mvs_at_view(rgb[idx], K[idx], T[idx], ref, cfg)
        w2 = time.process_time()
        for m, (d, v, ms) in {"plane_sweep": (d_ps, v_ps, w1 - w0), "mvs": (r.depth, r.valid, w2 - w1)}.items():
            dense, sparse = score(d, v, gt)
            common = depth_metrics(d, gt, mask=r.valid)
            row[m] = {"dense": dense, "sparse": sparse, "common": common, "coverage": float(v.float().mean()), "ms": 1000 * ms}
        rows.append(row)
        log(f"{name} {row['frame']} {obs.regime:10s} obs {obs.frac:.2f}  ps AbsRel {row['plane_sweep']['dense']['abs_rel']:.3f} d1 {row['plane_sweep']['dense']['delta1']:.3f}"
            f" | mvs {row['mvs']['dense']['abs_rel']:.3f} d1 {row['mvs']['dense']['delta1']:.3f} sparse {row['mvs']['sparse']['abs_rel']:.3f}/{row['mvs']['sparse']['delta1']:.3f}"
            f" cov {row['mvs']['coverage']:.2f} {row['mvs']['ms']:.0f} ms")
    return rows


def summarize(rows):
    """{regime: {method: {kind: {metric: {mean, median}}, coverage, ms}}} over frames (+ "all")."""
    out = {}
    for reg in REGIMES + ("all",):
        sel = [r for r in rows if reg == "all" or r["regime"] == reg]
        if not sel:
            continue
        out[reg] = {"frames": len(sel)}
        for m in ("plane_sweep", "mvs"):
            e = {}
            for kind in ("dense", "sparse", "common"):
                e[kind] = {}
                for k in METRICS:
                    x = np.array([r[m][kind][k] for r in sel], dtype=float)
                    x = x[np.isfinite(x)]
                    e[kind][k] = {"mean": float(x.mean()) if x.size else float("nan"), "median": float(np.median(x)) if x.size else float("nan")}
            for k in ("coverage", "ms"):
                x = np.array([r[m][k] for r in sel])
                e[k] = {"mean": float(x.mean()), "median": float(np.median(x))}
            out[reg][m] = e
    return out


def table(name, summ) -> str:
    """Markdown rows: per regime, each method dense and sparse, and the old sweep on MVS's pixels."""
    lines = [f"\n{name}: per-frame mean / median", "| regime | frames | method | pixels | AbsRel | RMSE (m) | delta1 | coverage | CPU ms/frame |",
             "|---|---|---|---|---|---|---|---|---|"]
    for reg, s in summ.items():
        for m, kind in (("plane_sweep", "dense"), ("plane_sweep", "sparse"), ("plane_sweep", "common"), ("mvs", "dense"), ("mvs", "sparse")):
            e = s[m][kind]
            f = lambda k: f"{e[k]['mean']:.3f} / {e[k]['median']:.3f}"  # noqa: E731
            cov = {"dense": 1.0, "sparse": s[m]["coverage"]["mean"], "common": s["mvs"]["coverage"]["mean"]}[kind]
            label = {"dense": "dense (filled)", "sparse": "own valid", "common": "MVS-valid"}[kind]
            lines.append(f"| {reg} | {s['frames']} | {m} | {label} | {f('abs_rel')} | {f('rmse')} | {f('delta1')} | {cov:.2f} | {s[m]['ms']['mean']:.0f} |")
    return "\n".join(lines)


def speed(n_frames: int = 10, views: int = 6) -> list[dict]:
    """CPU ms per frame of both methods at 48x64 and 96x128 on HoloLens frames with >= 4 keyframes."""
    frames = load_set("hololens")
    out = []
    for hw in ((48, 64), (96, 128)):
        rgb, _, K, T = to_tensors(frames, hw)
        Tn = T.double().numpy()
        ts = [t for t in range(0, len(frames), 6) if len(conditioning(Tn, t, views)) >= 4][:n_frames]
        runs = {"mvs": lambda i: mvs_at_view(rgb[i], K[i], T[i], len(i) - 1), "plane_sweep": lambda i: B.plane_sweep_at_view(rgb[i], K[i], T[i], len(i) - 1)}
        for name, fn in runs.items():
            c0, w0 = time.process_time(), time.perf_counter()
            for t in ts:
                fn(conditioning(Tn, t, views) + [t])
            row = {"hw": hw, "method": name, "frames": len(ts), "cpu_ms": 1000 * (time.process_time() - c0) / len(ts),
                   "wall_ms": 1000 * (time.perf_counter() - w0) / len(ts), "loadavg_1min": os.getloadavg()[0]}
            print(f"speed {hw[0]}x{hw[1]} {name:12s} CPU {row['cpu_ms']:.0f} ms/frame, wall {row['wall_ms']:.0f} ms (load {row['loadavg_1min']:.1f})")
            out.append(row)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hw", type=int, nargs=2, default=(96, 128))
    ap.add_argument("--sets", nargs="+", default=["hololens", "tabletop"], choices=["hololens", "tabletop"])
    ap.add_argument("--views", type=int, default=6, help="keyframes besides the target")
    ap.add_argument("--max-targets", type=int, default=0, help="0 = every frame with >= 2 keyframes")
    ap.add_argument("--set-cfg", nargs="*", default=[], help="MVSConfig overrides, e.g. p2=0.5 num_planes=48")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--speed", action="store_true", help="also time both methods at 48x64 and 96x128 (4 sources)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_baselines.json"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    over = {}
    for kv in a.set_cfg:
        k, v = kv.split("=", 1)
        over[k] = type(getattr(MVSConfig(), k) if getattr(MVSConfig(), k) is not None else 0.0)(v)
    cfg = MVSConfig(**over)
    hw = tuple(a.hw)
    result = {"hw": hw, "views": a.views, "mvs_config": cfg.__dict__, "threads": 1, "machine": platform.processor() or platform.machine(),
              "loadavg_1min": os.getloadavg()[0], "sets": {}}
    for name in a.sets:
        rows = evaluate_set(name, hw, a.views, a.max_targets, cfg, log=(lambda *x: None) if a.quiet else print)
        summ = summarize(rows)
        result["sets"][name] = {"summary": summ, "frames": rows}
        print(table(name, summ))
    if a.speed:
        result["speed"] = speed(views=a.views)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1))
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
