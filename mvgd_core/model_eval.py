"""Scoring a trained MVGD on multi-view samples (training validation and the model card).

    sets = {"cond": held_out_samples(data_cfg, 16, seed=2_000_000, num_views=3, mode="cond"),
            "novel": held_out_samples(data_cfg, 16, seed=2_000_001, num_views=3, mode="novel")}
    res = evaluate_samples(predictor, sets, steps=10, baselines=True)
    res["summary"]   # flat {"cond/mvgd/abs_rel": ..., "novel/plane_sweep/psnr": ..., ...}
    save_grid("grid.png", res, rows=3)

Set "cond": the target camera is one of the conditioning views (depth of the live camera);
only depth is scored. Set "novel": the target is held out; depth and RGB are scored.
Metrics are per-sample means (mvgd_core.metrics) over valid ground-truth pixels. Baselines
(mvgd_core.baselines) run on the very same samples: nearest-view reprojection (warps the
nearest *other* view's GT depth and RGB: oracle geometry, see its docstring) and plane-sweep
stereo (RGB + poses, like the model).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from mvgd_core.data.sampler import DataConfig, ProceduralDataset, ViewSamplingConfig
from mvgd_core.data.types import MultiViewSample, collate_samples
from mvgd_core.metrics import depth_metrics, psnr, ssim

DEPTH_KEYS = ("abs_rel", "delta1", "rmse")
RGB_KEYS = ("psnr", "ssim")
# Plane-sweep settings: the baseline's own defaults (0.3-10 m, 64 planes, ZNCC 5x5), never taken
# from the sample's ground truth. On 48x64 procedural scenes they scored better than 0.3-20 m /
# 96 planes (AbsRel 0.87 vs 1.38 on 12 held-out targets) and cover TUM (0.4-6 m).
SWEEP = {"d_min": 0.3, "d_max": 10.0, "num_planes": 64}


def held_out_samples(data: DataConfig, num: int, seed: int, num_views: int, mode: str) -> list[MultiViewSample]:
    """`num` procedural samples at data.image_hw, deterministic from `seed` (use seeds no training run uses).

    mode "cond": target is a conditioning view; "novel": target is a held-out view.
    """
    if mode not in ("cond", "novel"):
        raise ValueError(f"mode must be 'cond' or 'novel', got {mode!r}")
    sampling = dataclasses.replace(data.sampling, min_views=num_views, max_views=num_views,
                                   p_target_in_cond=1.0 if mode == "cond" else 0.0)
    ds = ProceduralDataset(data.image_hw, sampling, data.procedural, length=num, seed=seed,
                           frames_per_scene=max(data.frames_per_scene, num_views + 3))
    return [ds[(i, num_views)] for i in range(num)]


def sequence_samples(frames, image_hw, num: int, seed: int, num_views: int, mode: str, sampling: ViewSamplingConfig | None = None) -> list[MultiViewSample]:
    """Like held_out_samples, from real frame sequences (list[list[Frame]]), e.g. TUM."""
    from mvgd_core.data.sampler import SequenceDataset

    sampling = dataclasses.replace(sampling or ViewSamplingConfig(), min_views=num_views, max_views=num_views,
                                   p_target_in_cond=1.0 if mode == "cond" else 0.0)
    ds = SequenceDataset(frames, image_hw, sampling, length=num, seed=seed)
    return [ds[(i, num_views)] for i in range(num)]


def _depth_scores(pred, gt) -> dict:
    m = depth_metrics(pred, gt)
    return {k: m[k] for k in DEPTH_KEYS}


def _rgb_scores(pred, gt) -> dict:
    return {"psnr": psnr(pred.clamp(0, 1), gt), "ssim": ssim(pred.clamp(0, 1), gt)}


def evaluate_samples(predictor, sets: dict[str, list[MultiViewSample]], steps: int = 10, baselines: bool = True,
                     seed: int = 0, batch_size: int = 8) -> dict:
    """Predict and score every set. Returns {"summary": flat means, "per_sample": {set: [..]},
    "records": {set: [dict(sample, depth, rgb, baselines)]}, "time_s": {set: seconds of sampling}}."""
    from mvgd_core.baselines import run_baselines_on_sample

    per, records, times = {}, {}, {}
    for name, samples in sets.items():
        depths, rgbs = [], []
        t0 = time.perf_counter()
        for i in range(0, len(samples), batch_size):
            batch = collate_samples(samples[i : i + batch_size])
            depths.append(predictor.predict_batch(batch, "depth", steps=steps, seed=seed + i))
            if name != "cond":
                rgbs.append(predictor.predict_batch(batch, "rgb", steps=steps, seed=seed + i))
        times[name] = time.perf_counter() - t0
        depths = torch.cat(depths)
        rgbs = torch.cat(rgbs) if rgbs else None
        per[name], records[name] = [], []
        for j, s in enumerate(samples):
            row = {f"mvgd/{k}": v for k, v in _depth_scores(depths[j], s.tgt_depth).items()}
            if rgbs is not None:
                row.update({f"mvgd/{k}": v for k, v in _rgb_scores(rgbs[j], s.tgt_rgb).items()})
            rec = {"sample": s, "depth": depths[j], "rgb": None if rgbs is None else rgbs[j], "baselines": {}}
            if baselines:
                b = run_baselines_on_sample(s, **SWEEP)
                for bname, out in b.items():
                    row.update({f"{bname}/{k}": v for k, v in _depth_scores(out["depth"], s.tgt_depth).items()})
                    if name != "cond" and out.get("rgb") is not None:
                        row.update({f"{bname}/{k}": v for k, v in _rgb_scores(out["rgb"], s.tgt_rgb).items()})
                    row[f"{bname}/coverage"] = out["coverage"]
                    rec["baselines"][bname] = out
            per[name].append(row)
            records[name].append(rec)
    summary = {}
    for name, rows in per.items():
        for k in rows[0]:
            vals = np.array([r[k] for r in rows if k in r], dtype=np.float64)
            vals = vals[np.isfinite(vals)]
            summary[f"{name}/{k}"] = float(vals.mean()) if vals.size else float("nan")
    return {"summary": summary, "per_sample": per, "records": records, "time_s": times}


def save_grid(path, res: dict, rows: int = 3) -> Path:
    """PNG: per sample a row of input views, GT depth, MVGD depth, its AbsRel map, and (novel
    targets) GT RGB, MVGD RGB, its error map."""
    from mvgd_core.viz import apply_colormap, colorize_depth, colorize_error, depth_range, make_grid, save_png

    grid, labels = [], []
    for name, recs in res["records"].items():
        for rec in recs[:rows]:
            s = rec["sample"]
            lo, hi = depth_range(s.tgt_depth)
            r = [s.cond_rgb[i] for i in range(s.cond_rgb.shape[0])]
            lab = [f"{name} in{i}" for i in range(len(r))]
            r += [colorize_depth(s.tgt_depth, lo, hi), colorize_depth(rec["depth"], lo, hi), colorize_error(rec["depth"], s.tgt_depth)]
            lab += ["GT depth", "MVGD depth", "AbsRel err"]
            if rec["rgb"] is not None:
                err = (rec["rgb"] - s.tgt_rgb).abs().mean(0).numpy()
                r += [s.tgt_rgb, rec["rgb"], apply_colormap(err, 0.0, 0.5, "inferno")]
                lab += ["GT RGB", "MVGD RGB", "RGB err"]
            grid.append(r)
            labels.append(lab)
    return save_png(path, make_grid(grid, labels))
