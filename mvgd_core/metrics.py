"""Image and depth metrics with validity masks. Torch or numpy in, plain floats out.

Images: (H, W), (H, W, C) or (C, H, W) / batched (B, C, H, W) float in [0, data_range].
Depth: any shape, metres; valid = GT finite and > 0 (and `mask`, when given); predictions are
clamped to >= eps before logs and ratios so a zero prediction cannot produce inf.
Depth metrics follow Eigen et al. 2014 (AbsRel, SqRel, RMSE, log-RMSE, delta < 1.25^k), plus
the per-pixel median AbsRel of a sample ("abs_rel_px_median").

Aggregating over samples (issue 10: numbers that cannot mislead): `summarize` gives the mean
AND the median over samples (means are dominated by a few bad samples), and
`aggregate_by_regime` splits them by how observable each target's depth is
(mvgd_core.observability.REGIMES, plus "all"). `constant_references` gives the two
know-nothing rows every depth table carries: a constant at the training-set median depth and
a per-image constant at the true median (knows the scale, nothing else).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

_EPS = 1e-6


def _t(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().double().cpu()


def _as_bchw(x: torch.Tensor) -> torch.Tensor:
    """(H, W) | (H, W, C) | (C, H, W) | (B, C, H, W) -> (B, C, H, W).

    A 3-dim image is channels-last when its last dim is 1 or 3 and its first is not (so
    (3, H, W) tensors and (H, W, 3) arrays both work; (3, 3, 3) counts as channels-first)."""
    if x.dim() == 2:
        return x[None, None]
    if x.dim() == 3:
        return (x.permute(2, 0, 1) if x.shape[-1] in (1, 3) and x.shape[0] not in (1, 3) else x)[None]
    if x.dim() == 4:
        return x
    raise ValueError(f"expected an image of 2-4 dims, got shape {tuple(x.shape)}")


def _valid(pred: torch.Tensor, gt: torch.Tensor, mask=None) -> torch.Tensor:
    if pred.shape != gt.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and gt {tuple(gt.shape)} differ in shape")
    valid = torch.isfinite(gt) & (gt > 0) & torch.isfinite(pred)
    if mask is not None:
        m = _t(mask).bool()
        if m.shape != gt.shape:
            raise ValueError(f"mask {tuple(m.shape)} does not match gt {tuple(gt.shape)}")
        valid &= m
    return valid


def psnr(pred, gt, mask=None, data_range: float = 1.0) -> float:
    """10 log10(range^2 / MSE) over (masked) pixels; inf for identical images. mask (H, W)."""
    p, g = _as_bchw(_t(pred)), _as_bchw(_t(gt))
    if p.shape != g.shape:
        raise ValueError(f"pred {tuple(p.shape)} and gt {tuple(g.shape)} differ in shape")
    se = (p - g) ** 2  # (B, C, H, W)
    if mask is not None:
        se = se[_as_bchw(_t(mask)).bool().expand_as(se)]
    if se.numel() == 0:
        return float("nan")
    mse = se.mean().item()
    return float("inf") if mse == 0 else 10.0 * math.log10(data_range ** 2 / mse)


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] @ g[None, :]  # (size, size)


def ssim(pred, gt, mask=None, data_range: float = 1.0, win_size: int = 11, sigma: float = 1.5) -> float:
    """SSIM (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, 'valid'
    filtering (no padding, like skimage with gaussian_weights=True). Mean over channels and
    windows; with `mask` (H, W), only windows centred on masked-in pixels count. Window shrinks
    (odd) for images smaller than 11 px."""
    p, g = _as_bchw(_t(pred)), _as_bchw(_t(gt))
    if p.shape != g.shape:
        raise ValueError(f"pred {tuple(p.shape)} and gt {tuple(g.shape)} differ in shape")
    B, C, H, W = p.shape
    win_size = min(win_size, H - (1 - H % 2), W - (1 - W % 2))
    w = _gaussian_window(win_size, sigma)[None, None].repeat(C, 1, 1, 1)  # (C, 1, k, k)
    filt = lambda x: F.conv2d(x, w, groups=C)  # noqa: E731
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_p, mu_g = filt(p), filt(g)
    s_pp = filt(p * p) - mu_p ** 2
    s_gg = filt(g * g) - mu_g ** 2
    s_pg = filt(p * g) - mu_p * mu_g
    smap = ((2 * mu_p * mu_g + c1) * (2 * s_pg + c2)) / ((mu_p ** 2 + mu_g ** 2 + c1) * (s_pp + s_gg + c2))  # (B, C, h, w)
    if mask is not None:
        r = win_size // 2
        m = _as_bchw(_t(mask))[..., r:H - r, r:W - r].bool().expand_as(smap)
        return float(smap[m].mean()) if m.any() else float("nan")
    return float(smap.mean())


def depth_metrics(pred, gt, mask=None) -> dict[str, float]:
    """AbsRel (mean and per-pixel median), SqRel, RMSE, log-RMSE, delta1..3 over valid pixels
    (GT finite and > 0, & mask).

    Returns NaN for every metric when no pixel is valid, plus "valid_fraction"."""
    p, g = _t(pred), _t(gt)
    v = _valid(p, g, mask)
    keys = ("abs_rel", "abs_rel_px_median", "sq_rel", "rmse", "log_rmse", "delta1", "delta2", "delta3")
    if not v.any():
        return {**{k: float("nan") for k in keys}, "valid_fraction": 0.0}
    p, g = p[v].clamp_min(_EPS), g[v]
    ratio = torch.maximum(p / g, g / p)
    rel = (p - g).abs() / g
    out = {
        "abs_rel": rel.mean(),
        "abs_rel_px_median": rel.median(),
        "sq_rel": ((p - g) ** 2 / g).mean(),
        "rmse": ((p - g) ** 2).mean().sqrt(),
        "log_rmse": ((p.log() - g.log()) ** 2).mean().sqrt(),
        **{f"delta{k}": (ratio < 1.25 ** k).double().mean() for k in (1, 2, 3)},
    }
    return {**{k: float(x) for k, x in out.items()}, "valid_fraction": float(v.double().mean())}


SCORED_DEPTH_KEYS = ("abs_rel", "rmse", "delta1", "abs_rel_px_median")


def depth_scores(pred, gt, keys=SCORED_DEPTH_KEYS) -> dict[str, float]:
    """`keys` of depth_metrics on pixels valid in both GT and prediction (a method may leave
    pixels without depth: NaN, inf or <= 0), plus "coverage": the share of valid GT pixels
    that got a valid prediction (1 for a dense method). Statistics are only comparable
    between methods together with their coverage."""
    p, g = _t(pred), _t(gt)
    if p.shape != g.shape:
        raise ValueError(f"pred {tuple(p.shape)} and gt {tuple(g.shape)} differ in shape")
    gv = torch.isfinite(g) & (g > 0)
    pv = torch.isfinite(p) & (p > 0)
    m = depth_metrics(torch.where(pv, p, torch.ones_like(p)), g, gv & pv)
    return {**{k: m[k] for k in keys}, "coverage": float((gv & pv).sum()) / max(int(gv.sum()), 1)}


def abs_rel(pred, gt, mask=None) -> float:
    return depth_metrics(pred, gt, mask)["abs_rel"]


def sq_rel(pred, gt, mask=None) -> float:
    return depth_metrics(pred, gt, mask)["sq_rel"]


def rmse(pred, gt, mask=None) -> float:
    return depth_metrics(pred, gt, mask)["rmse"]


def log_rmse(pred, gt, mask=None) -> float:
    return depth_metrics(pred, gt, mask)["log_rmse"]


def delta(pred, gt, k: int = 1, mask=None) -> float:
    """Fraction of valid pixels with max(pred/gt, gt/pred) < 1.25^k."""
    if k not in (1, 2, 3):
        raise ValueError(f"delta: k must be 1, 2 or 3, got {k}")
    return depth_metrics(pred, gt, mask)[f"delta{k}"]


# --------------------------------------------------------------------------- over samples

ALL = "all"
# The depth numbers every table reports, each as mean and median over samples.
HEADLINE_KEYS = ("abs_rel", "rmse", "delta1")
CONST_TRAIN = "const_train_median"
CONST_GT = "const_gt_median"


MEDIAN_CI_DRAWS = 1000  # bootstrap draws of `median_ci95` (fixed seed: reports are reproducible)


def median_ci95(a: np.ndarray, draws: int = MEDIAN_CI_DRAWS, seed: int = 0) -> list[float]:
    """95 % bootstrap interval of the median of the samples a (n,): how far another draw of the
    same number of frames / targets could move the headline median. [m, m] for one sample."""
    if a.size < 2:
        return [float(np.median(a))] * 2
    idx = np.random.default_rng(seed).integers(0, a.size, size=(draws, a.size))
    lo, hi = np.percentile(np.median(a[idx], axis=1), [2.5, 97.5])
    return [float(lo), float(hi)]


def summarize(values) -> dict:
    """{"mean", "median", "median_ci95", "n"} of the finite values (NaN when there are none)."""
    a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return {"mean": float("nan"), "median": float("nan"), "median_ci95": [float("nan")] * 2, "n": 0}
    return {"mean": float(a.mean()), "median": float(np.median(a)), "median_ci95": median_ci95(a), "n": int(a.size)}


def aggregate_by_regime(rows, regimes=None, keys=None) -> dict:
    """Mean and median over samples, overall and per observability regime.

    rows: iterable of {"regime": str, "metrics": {method: {metric: float}}} (one per sample).
    regimes: the regime names always present in the output (default
    mvgd_core.observability.REGIMES), so tables and CSV columns stay stable when a regime is
    empty. keys: metrics to keep (default: every metric seen).
    Returns {ALL | regime: {method: {metric: {"mean", "median", "median_ci95", "n"}, "n": samples}}};
    a method missing from a regime's samples gets n = 0 and NaN statistics.
    """
    if regimes is None:
        from mvgd_core.observability import REGIMES as regimes
    rows = list(rows)
    methods = list(dict.fromkeys(m for r in rows for m in r["metrics"]))
    metrics = list(keys) if keys is not None else list(dict.fromkeys(k for r in rows for ms in r["metrics"].values() for k in ms))
    out = {}
    for reg in (ALL, *regimes):
        sel = [r for r in rows if reg == ALL or r["regime"] == reg]
        slot = out[reg] = {}
        for m in methods:
            per = [r["metrics"][m] for r in sel if m in r["metrics"]]
            slot[m] = {k: summarize(x.get(k) for x in per) for k in metrics}
            slot[m]["n"] = len(per)
    return out


def constant_references(gt, train_median: float | None) -> dict[str, torch.Tensor]:
    """The know-nothing depth rows for one target, same shape as gt (metres).

    CONST_GT: every pixel at the median of the target's valid GT depth (an oracle for scale
    only: it knows the true scale of this image and nothing else). CONST_TRAIN: every pixel at
    `train_median` (the training data's median depth: knows nothing about this image); left
    out when train_median is None. A target without valid depth gets neither.
    """
    g = _t(gt).float()
    valid = torch.isfinite(g) & (g > 0)
    out = {}
    if not valid.any():
        return out
    out[CONST_GT] = torch.full_like(g, float(g[valid].median()))
    if train_median is not None:
        if not (math.isfinite(train_median) and train_median > 0):
            raise ValueError(f"train_median must be a positive depth in metres, got {train_median}")
        out[CONST_TRAIN] = torch.full_like(g, float(train_median))
    return out
