"""Scoring a trained MVGD on multi-view samples (training validation, evaluate_model, the model card).

    sets = {"cond": held_out_samples(data_cfg, 16, seed=2_000_000, num_views=3, mode="cond"),
            "novel": held_out_samples(data_cfg, 16, seed=2_000_001, num_views=3, mode="novel")}
    res = evaluate_samples(predictor, sets, steps=10, baselines=True, train_median=2.9)
    res["summary"]   # flat {"cond/mvgd/abs_rel": mean, "cond/mvgd/abs_rel_median": median, ...}
    res["regimes"]   # {"cond": {"all" | "observable" | "weak" | "none": {method: {metric: {mean, median, n}}}}}
    save_grid("grid.png", res, rows=3)

Set "cond": the target camera is one of the conditioning views (depth of the live camera);
only depth is scored. Set "novel": the target is held out; depth and RGB are scored.

Every sample is scored per method (mvgd_core.metrics.depth_metrics on the pixels where both
ground truth and the method's depth are valid; "coverage" = the share of valid ground-truth
pixels the method gave a depth for). Over samples we report the mean AND the median, overall
and per observability regime (mvgd_core.observability: how much the target's depth moves its
projection in the conditioning views at model resolution). The headline is the "observable"
regime: elsewhere depth cannot come from geometry, only from priors.

Methods on the very same samples:
- "mvgd": the model as the node runs it (with the photometric refinement of depth,
  mvgd_core/refine.py, and RGB from the warped views, mvgd_core/view_synthesis.py, when the
  predictor has them on); "mvgd_net": the network alone (both off), only then.
- "mvs": the classical multi-view stereo baseline (mvgd_core.baselines / mvs.py), holes filled
  so it is dense like the model; "mvs_confident": the same on the pixels it kept (its
  confidence and consistency checks leave the rest invalid), with that share as "coverage".
- "plane_sweep": the older naive plane sweep (kept reachable by name).
- "reprojection": warps the nearest *other* view's GT depth and RGB: an oracle for geometry.
- "const_gt_median": a constant at the target's true median depth (knows the scale only).
- "const_train_median": a constant at the training data's median depth (knows nothing).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from mvgd_core.data.sampler import DataConfig, ProceduralDataset, ViewSamplingConfig
from mvgd_core.data.types import MultiViewSample, collate_samples
from mvgd_core.metrics import HEADLINE_KEYS, SCORED_DEPTH_KEYS, aggregate_by_regime, constant_references, depth_scores, psnr, ssim
from mvgd_core.observability import REGIMES, observability_with_mask

DEPTH_KEYS = SCORED_DEPTH_KEYS
RGB_KEYS = ("psnr", "ssim")
# Table order: the model, the classical baselines (new first), know-nothing rows, the oracle.
METHODS = ("mvgd", "mvgd_net", "mvs", "mvs_confident", "plane_sweep", "const_gt_median", "const_train_median", "reprojection")
METHOD_LABELS = {
    "mvgd": "MVGD",
    "mvgd_net": "MVGD network alone (refinement and view synthesis off)",
    "mvs": "multi-view stereo (RGB + poses, like MVGD)",
    "mvs_confident": "multi-view stereo, confident pixels only (see coverage)",
    "plane_sweep": "naive plane sweep (RGB + poses)",
    "const_gt_median": "constant at the true median (knows the scale only)",
    "const_train_median": "constant at the training median (knows nothing)",
    "reprojection": "nearest-view reprojection (oracle: GT depth of another view)",
}
# Plane-sweep settings: the baseline's own defaults (0.3-10 m, 64 planes, ZNCC 5x5), never taken
# from the sample's ground truth. On 48x64 procedural scenes they scored better than 0.3-20 m /
# 96 planes (AbsRel 0.87 vs 1.38 on 12 held-out targets) and cover TUM (0.4-6 m).
SWEEP = {"d_min": 0.3, "d_max": 10.0, "num_planes": 64}


# --------------------------------------------------------------------------- sets


def held_out_samples(data: DataConfig, num: int, seed: int, num_views: int, mode: str) -> list[MultiViewSample]:
    """`num` procedural samples at data.image_hw, deterministic from `seed` (use seeds no training run uses).

    mode "cond": target is a conditioning view; "novel": target is a held-out view.
    """
    if mode not in ("cond", "novel"):
        raise ValueError(f"mode must be 'cond' or 'novel', got {mode!r}")
    sampling = dataclasses.replace(data.sampling, min_views=num_views, max_views=num_views,
                                   p_target_in_cond=1.0 if mode == "cond" else 0.0,
                                   p_past_only=0.0)  # views around each target, whatever the model trained on: same targets for every model
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


def dataset_depth_median(ds, num: int) -> float:
    """Median valid depth (m) over items 0..num-1 of a training dataset (target and conditioning
    depth pooled). Raises ValueError when they hold no valid depth."""
    vals = []
    for i in range(num):
        s = ds[i]
        for d in (s.tgt_depth.flatten(), s.cond_depth.flatten() if s.cond_depth is not None else s.tgt_depth[:0].flatten()):
            vals.append(d[torch.isfinite(d) & (d > 0)].double().numpy())
    v = np.concatenate(vals) if vals else np.zeros(0)
    if v.size == 0:
        raise ValueError("the training data has no valid depth")
    return float(np.median(v))


def train_depth_median(data: DataConfig, num: int = 48) -> float:
    """Median valid depth (m) over `num` samples of the training data `data` describes (its own
    seeds, so the very data the model saw). Raises ValueError / OSError when it has no depth or
    a source cannot be read."""
    from mvgd_core.data.sampler import build_dataset

    return dataset_depth_median(build_dataset(dataclasses.replace(data, length=max(num, 1))), num)


def checkpoint_depth_median(ckpt: dict, num: int = 48) -> tuple[float | None, str]:
    """(median, where it comes from) for the const_train_median row of a model.

    Stored in the checkpoint by the trainer ("train_depth_median") when present; else measured
    on `num` samples of the checkpoint's training data config; (None, why) when neither works
    (e.g. its rosbag sources are not on this machine)."""
    if ckpt.get("train_depth_median"):
        return float(ckpt["train_depth_median"]), "stored in the checkpoint by the trainer"
    from mvgd_core.config import from_dict

    train = ckpt.get("config", {}).get("train") or {}
    hw = ckpt.get("config", {}).get("model", {}).get("image_size")
    if not train.get("data"):  # no record of what it was trained on: do not guess
        return None, "unknown (the checkpoint records no training data config; pass the median explicitly)"
    try:
        data = from_dict(DataConfig, {**(train.get("data") or {}), **({"image_hw": list(hw)} if hw else {})}, where="checkpoint.config.train.data")
        return train_depth_median(data, num), f"median valid depth of {num} samples of the checkpoint's training data (config.train.data)"
    except Exception as exc:  # e.g. its rosbag / sequence sources are not on this machine: say so, do not fail the evaluation
        return None, f"unknown ({type(exc).__name__}: {exc})"


# --------------------------------------------------------------------------- scoring


def _rgb_scores(pred, gt) -> dict:
    return {"psnr": psnr(pred.clamp(0, 1), gt), "ssim": ssim(pred.clamp(0, 1), gt)}


def _predict(predictor, samples, with_rgb: bool, steps: int, seed: int, batch_size: int, fuse_views: bool = False):
    """(depth (S, H, W), rgb (S, 3, H, W) or None, the network's own (depth, rgb or None) or None when
    the predictor neither refines depth nor synthesizes RGB, seconds). Samples are at the model's resolution.
    fuse_views (novel targets): each conditioning view's own live depth is predicted first and fused in
    (`MVGDPredictor.fused`), as the node does with its keyframes' depth; the network row stays without it."""
    from mvgd_core.inference import views_from_tensor
    from mvgd_core.view_synthesis import synthesize_batch

    refining = getattr(getattr(predictor, "refine", None), "enabled", False)
    synthesizing = with_rgb and getattr(getattr(predictor, "synthesis", None), "enabled", False)
    fusing = fuse_views and getattr(getattr(predictor, "fusion", None), "enabled", False)
    depths, rgbs, net_d, net_rgb = [], [], [], []
    t0 = time.perf_counter()
    for i in range(0, len(samples), batch_size):
        batch = collate_samples(samples[i : i + batch_size])
        views = views_from_tensor(predictor.view_depths(batch, steps, seed + i), batch.cond_K) if fusing else None
        if refining or synthesizing or fusing:  # one network pass for both rows
            # samples are at the model's resolution: predict_batch(refine=False) without its resizing, keeping the match
            x0, scale, match = predictor.sample(batch.cond_rgb, batch.cond_K, batch.cond_T_wc, batch.tgt_K, batch.tgt_T_wc, "depth",
                                                steps, seed + i, return_match=True)
            net = predictor.to_depth(x0, scale)
            net_d.append(net)
            d = predictor.refined(net, batch.cond_rgb, batch.cond_K, batch.cond_T_wc, batch.tgt_K, batch.tgt_T_wc, match=match)[0]
            depths.append(predictor.fused(d, batch.cond_K, batch.cond_T_wc, batch.tgt_K, batch.tgt_T_wc, views)[0])
        else:
            depths.append(predictor.predict_batch(batch, "depth", steps=steps, seed=seed + i))
        if with_rgb:
            rgb = predictor.predict_batch(batch, "rgb", steps=steps, seed=seed + i, **({"synthesize": False} if synthesizing else {}))
            if synthesizing:  # what predict_batch(..., "rgb") gives, from the depth above
                net_rgb.append(rgb)
                rgb = synthesize_batch(batch.cond_rgb, batch.cond_K, batch.cond_T_wc, batch.tgt_K, batch.tgt_T_wc, depths[-1], rgb,
                                       predictor.synthesis)
            rgbs.append(rgb)
    cat = lambda xs: torch.cat(xs) if xs else None  # noqa: E731
    net = (cat(net_d), cat(net_rgb)) if net_d else None
    return cat(depths), cat(rgbs), net, time.perf_counter() - t0


def score_sample(s: MultiViewSample, depth, rgb, baselines: bool, train_median: float | None, sweep: dict | None = None,
                 net=None) -> dict:
    """One sample (net: the network's own (depth, rgb or None) when `depth` / `rgb` went through the
    refinement / view synthesis, scored as "mvgd_net"): {"metrics": {method: {metric: value}}, "regime", "observability", "obs_mask",
    "references": {name: depth}, "baselines": {name: run_baselines output}}."""
    from mvgd_core.baselines import run_baselines_on_sample

    hw = tuple(s.tgt_depth.shape[-2:])  # samples are at model resolution
    obs, obs_mask = observability_with_mask(s.tgt_depth, s.tgt_K, s.tgt_T_wc, s.cond_K, s.cond_T_wc, hw, hw)
    metrics = {"mvgd": depth_scores(depth, s.tgt_depth)}
    if net is not None:
        metrics["mvgd_net"] = depth_scores(net[0], s.tgt_depth)
        if net[1] is not None:
            metrics["mvgd_net"].update(_rgb_scores(net[1], s.tgt_rgb))
    if rgb is not None:
        metrics["mvgd"].update(_rgb_scores(rgb, s.tgt_rgb))
    refs = constant_references(s.tgt_depth, train_median)
    for name, d in refs.items():
        metrics[name] = depth_scores(d, s.tgt_depth)
    base = run_baselines_on_sample(s, **(SWEEP if sweep is None else sweep)) if baselines else {}
    for name, out in base.items():
        metrics[name] = depth_scores(out["depth"], s.tgt_depth)
        if rgb is not None and out.get("rgb") is not None:
            metrics[name].update(_rgb_scores(out["rgb"], s.tgt_rgb))
        if out.get("depth_sparse") is not None:  # coverage: share of valid GT pixels the method estimated (before hole filling)
            sparse = depth_scores(out["depth_sparse"], s.tgt_depth)
            metrics[name]["coverage"] = sparse["coverage"]
            if name == "mvs":
                metrics["mvs_confident"] = sparse
        else:
            metrics[name]["coverage"] = float(out.get("coverage", metrics[name]["coverage"]))
    return {"metrics": metrics, "regime": obs.regime, "observability": obs, "obs_mask": obs_mask, "references": refs, "baselines": base}


def evaluate_samples(predictor, sets: dict[str, list[MultiViewSample]], steps: int = 10, baselines: bool = True,
                     seed: int = 0, batch_size: int = 8, train_median: float | None = None, sweep: dict | None = None) -> dict:
    """Predict and score every set (see the module docstring for methods and statistics).

    Returns {"summary": flat {"set/method/metric": mean over all samples, ".../metric_median": median,
    "set/regime/method/metric_mean|_median", "set/regime/n"}, "regimes": {set: aggregate_by_regime},
    "per_sample": {set: [{"regime", "observable_frac", "method/metric": ...}]},
    "records": {set: [dict(sample, depth, rgb, baselines, references, obs_mask, regime)]}, "time_s": {set: seconds}}.
    """
    per, records, times, regimes = {}, {}, {}, {}
    for name, samples in sets.items():
        depths, rgbs, nets, times[name] = _predict(predictor, samples, name != "cond", steps, seed, batch_size, fuse_views=name != "cond")
        per[name], records[name] = [], []
        for j, s in enumerate(samples):
            sc = score_sample(s, depths[j], None if rgbs is None else rgbs[j], baselines, train_median, sweep,
                              net=None if nets is None else (nets[0][j], None if nets[1] is None else nets[1][j]))
            row = {"regime": sc["regime"], "observable_frac": sc["observability"].frac,
                   "median_disparity_px": sc["observability"].median_disparity_px}
            row.update({f"{m}/{k}": v for m, ms in sc["metrics"].items() for k, v in ms.items()})
            per[name].append(row)
            records[name].append({"sample": s, "depth": depths[j], "rgb": None if rgbs is None else rgbs[j], **sc})
        regimes[name] = aggregate_by_regime([{"regime": r["regime"], "metrics": r["metrics"]} for r in records[name]])
    return {"summary": flat_summary(regimes), "regimes": regimes, "per_sample": per, "records": records, "time_s": times}


def flat_summary(regimes: dict) -> dict:
    """Flat floats for CSV / TensorBoard / old callers: "set/method/metric" (mean over all
    samples), "set/method/metric_median", and per regime "set/regime/method/metric_mean|_median"
    for the headline metrics, plus "set/regime/n" samples."""
    out = {}
    for name, agg in regimes.items():
        for method, ms in agg["all"].items():
            for k, st in ms.items():
                if k != "n":
                    out[f"{name}/{method}/{k}"] = st["mean"]
                    out[f"{name}/{method}/{k}_median"] = st["median"]
        for reg in REGIMES:
            out[f"{name}/{reg}/n"] = float(max((ms["n"] for ms in agg[reg].values()), default=0))
            for method, ms in agg[reg].items():
                for k in HEADLINE_KEYS:
                    if k in ms:
                        out[f"{name}/{reg}/{method}/{k}_mean"] = ms[k]["mean"]
                        out[f"{name}/{reg}/{method}/{k}_median"] = ms[k]["median"]
    return out


# --------------------------------------------------------------------------- pictures


def grid_records(recs: list[dict], rows: int, worst: bool = False) -> list[dict]:
    """The records a grid shows: observable first (stable order), or with `worst` only observable
    ones, highest MVGD depth AbsRel first."""
    if worst:
        return sorted((r for r in recs if r.get("regime") == "observable"), key=lambda r: -r["metrics"]["mvgd"]["abs_rel"])[:rows]
    return sorted(recs, key=lambda r: REGIMES.index(r.get("regime", "none")))[:rows]


def save_grid(path, res: dict, rows: int = 3, worst: bool = False) -> Path | None:
    """PNG: per sample a row of input views, GT depth, every method's depth on ONE colour scale
    (the GT's), the AbsRel error maps, and the observability mask; novel targets also get GT
    RGB, MVGD RGB and its error. Observable samples first, so the picture shows where depth
    can come from geometry; with `worst`, the observable samples where MVGD's depth AbsRel is
    highest (what the model still gets wrong where geometry could have told it)."""
    from mvgd_core.viz import apply_colormap, legible_cell, make_grid, method_depth_row, save_png

    grid, labels = [], []
    h, w = next(iter(res["records"].values()))[0]["sample"].tgt_depth.shape[-2:] if any(res["records"].values()) else (48, 64)
    cell = legible_cell((h, w))  # model-resolution maps are tiny: upscale so captions and the scale read
    for name, recs in res["records"].items():
        for rec in grid_records(recs, rows, worst):
            s = rec["sample"]
            r = [s.cond_rgb[i] for i in range(s.cond_rgb.shape[0])]
            lab = [f"{name} in{i}" for i in range(len(r))]
            depths = {"MVGD": rec["depth"]}
            for key, short in (("mvs", "MVS"), ("plane_sweep", "sweep"), ("const_gt_median", "GT median")):
                src = rec.get("baselines", {}).get(key) or ({"depth": rec["references"][key]} if key in rec.get("references", {}) else None)
                if src is not None:
                    depths[short] = src["depth"]
            cells, clabs = method_depth_row(s.tgt_depth, depths, obs_mask=rec.get("obs_mask"),
                                            obs_label=f"{rec['regime']} {rec['observability'].frac:.0%}" if "observability" in rec else "observable",
                                            bar_hw=cell)
            r += cells
            lab += clabs
            if rec["rgb"] is not None:
                err = (rec["rgb"] - s.tgt_rgb).abs().mean(0).numpy()
                r += [s.tgt_rgb, rec["rgb"], apply_colormap(err, 0.0, 0.5, "inferno")]
                lab += ["GT RGB", "MVGD RGB", "RGB err"]
            grid.append(r)
            labels.append(lab)
    return save_png(path, make_grid(grid, labels, cell_hw=cell)) if grid else None  # None: no record to show (e.g. none observable)
