"""Image and depth metrics with validity masks. Torch or numpy in, plain floats out.

Images: (H, W), (H, W, C) or (C, H, W) / batched (B, C, H, W) float in [0, data_range].
Depth: any shape, metres; valid = GT finite and > 0 (and `mask`, when given); predictions are
clamped to >= eps before logs and ratios so a zero prediction cannot produce inf.
Depth metrics follow Eigen et al. 2014 (AbsRel, SqRel, RMSE, log-RMSE, delta < 1.25^k).
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
    """AbsRel, SqRel, RMSE, log-RMSE, delta1..3 over valid pixels (GT finite and > 0, & mask).

    Returns NaN for every metric when no pixel is valid, plus "valid_fraction"."""
    p, g = _t(pred), _t(gt)
    v = _valid(p, g, mask)
    keys = ("abs_rel", "sq_rel", "rmse", "log_rmse", "delta1", "delta2", "delta3")
    if not v.any():
        return {**{k: float("nan") for k in keys}, "valid_fraction": 0.0}
    p, g = p[v].clamp_min(_EPS), g[v]
    ratio = torch.maximum(p / g, g / p)
    out = {
        "abs_rel": ((p - g).abs() / g).mean(),
        "sq_rel": ((p - g) ** 2 / g).mean(),
        "rmse": ((p - g) ** 2).mean().sqrt(),
        "log_rmse": ((p.log() - g.log()) ** 2).mean().sqrt(),
        **{f"delta{k}": (ratio < 1.25 ** k).double().mean() for k in (1, 2, 3)},
    }
    return {**{k: float(x) for k, x in out.items()}, "valid_fraction": float(v.double().mean())}


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
