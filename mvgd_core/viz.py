"""Pictures for reports and training logs: depth colormaps, error maps, labelled grids (numpy + cv2).

All images here are RGB uint8 (H, W, 3), like `Frame.rgb`; `save_png` converts to BGR for cv2.
Depth colormaps: near = the warm end, far = the cool end (turbo: red -> blue; viridis:
yellow -> purple), over a robust range (percentiles of valid depth, shareable between a
prediction and its ground truth); invalid pixels (0, NaN, Inf, or masked) are black.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

_CMAPS = {"turbo": cv2.COLORMAP_TURBO, "viridis": cv2.COLORMAP_VIRIDIS, "magma": cv2.COLORMAP_MAGMA, "inferno": cv2.COLORMAP_INFERNO}


def _np(x) -> np.ndarray:
    """torch tensor or array -> numpy (no copy when already numpy)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def valid_mask(depth, valid=None) -> np.ndarray:
    """(H, W) bool: finite, positive and (if given) inside `valid`."""
    d = _np(depth).astype(np.float32)
    m = np.isfinite(d) & (d > 0)
    return m if valid is None else m & _np(valid).astype(bool)


def depth_range(*depths, percentiles=(2.0, 98.0)) -> tuple[float, float]:
    """Robust (lo, hi) over the valid pixels of one or more depth maps; (0, 1) if none valid."""
    vals = [_np(d).astype(np.float32)[valid_mask(d)] for d in depths if d is not None]
    vals = np.concatenate(vals) if vals else np.zeros(0, np.float32)
    if vals.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(vals, percentiles)
    if hi - lo < 1e-6:
        hi = lo + 1e-6
    return float(lo), float(hi)


def apply_colormap(values, lo: float, hi: float, cmap: str = "turbo", valid=None) -> np.ndarray:
    """Scalar map (H, W) -> RGB uint8 (H, W, 3): lo -> colormap index 0, hi -> 255; invalid black."""
    if cmap not in _CMAPS:
        raise ValueError(f"unknown colormap {cmap!r}; choose from {sorted(_CMAPS)}")
    v = _np(values).astype(np.float32)
    m = np.isfinite(v) if valid is None else (np.isfinite(v) & _np(valid).astype(bool))
    x = np.clip((np.nan_to_num(v) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    idx = np.round(x * 255).astype(np.uint8)
    rgb = cv2.cvtColor(cv2.applyColorMap(idx, _CMAPS[cmap]), cv2.COLOR_BGR2RGB)
    rgb[~m] = 0
    return rgb


def colorize_depth(depth, lo: float | None = None, hi: float | None = None, cmap: str = "turbo", valid=None, percentiles=(2.0, 98.0)) -> np.ndarray:
    """Depth (H, W) metres -> RGB uint8 (H, W, 3); near = warm end, invalid (<= 0, non-finite, ~valid) black.

    lo/hi default to the `percentiles` of the valid depth (pass `depth_range(pred, gt)` to
    colour a prediction and its ground truth alike). Mapped in inverse depth, so near
    structure gets most of the colours.
    """
    m = valid_mask(depth, valid)
    if lo is None or hi is None:
        lo2, hi2 = depth_range(np.where(m, _np(depth), 0), percentiles=percentiles)
        lo, hi = lo if lo is not None else lo2, hi if hi is not None else hi2
    lo = max(lo, 1e-6)
    hi = max(hi, lo * (1 + 1e-6))
    d = np.where(m, _np(depth).astype(np.float32), hi)
    inv = 1.0 / np.maximum(d, 1e-6)
    return apply_colormap(inv, 1.0 / hi, 1.0 / lo, cmap, m)


def abs_rel_error(pred, gt, valid=None) -> np.ndarray:
    """|pred - gt| / gt (H, W) float32, NaN where gt or pred is invalid."""
    p, g = _np(pred).astype(np.float32), _np(gt).astype(np.float32)
    m = valid_mask(g, valid) & valid_mask(p)
    err = np.full(g.shape, np.nan, np.float32)
    err[m] = np.abs(p[m] - g[m]) / g[m]
    return err


def colorize_error(pred, gt, valid=None, max_err: float = 0.5, cmap: str = "inferno") -> np.ndarray:
    """AbsRel error map (H, W, 3) uint8: 0 -> dark, >= max_err -> bright; invalid black."""
    err = abs_rel_error(pred, gt, valid)
    return apply_colormap(err, 0.0, max_err, cmap, np.isfinite(err))


def rgb_to_uint8(img) -> np.ndarray:
    """(3, H, W) or (H, W, 3) float [0, 1] or uint8 -> (H, W, 3) uint8; (H, W) gray -> 3 channels."""
    a = _np(img)
    if a.ndim == 3 and a.shape[0] == 3 and a.shape[2] != 3:
        a = a.transpose(1, 2, 0)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.dtype != np.uint8:
        a = (np.clip(a.astype(np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(a)


def _label(img: np.ndarray, text: str, bar: int) -> np.ndarray:
    """Image with a black caption bar of height `bar` on top."""
    out = np.zeros((img.shape[0] + bar, img.shape[1], 3), np.uint8)
    out[bar:] = img
    if text:
        scale = max(0.3, min(0.5, img.shape[1] / 300))
        cv2.putText(out, text, (3, bar - 5), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def make_grid(rows, labels=None, cell_hw: tuple[int, int] | None = None, pad: int = 2, bar: int = 16) -> np.ndarray:
    """Labelled grid of images -> RGB uint8.

    rows: list of rows, each a list of images ((H, W, 3) uint8/float or (3, H, W) or None for
    an empty black cell). labels: same nesting, strings (or None). Every cell is resized to
    `cell_hw` (default: the first image's size) with nearest-neighbour interpolation, so
    depth edges and invalid pixels stay crisp.
    """
    first = next((rgb_to_uint8(im) for r in rows for im in r if im is not None), None)
    if first is None and cell_hw is None:
        raise ValueError("make_grid: no images")
    ch, cw = cell_hw or first.shape[:2]
    ncol = max(len(r) for r in rows)
    out_rows = []
    for i, r in enumerate(rows):
        cells = []
        for j in range(ncol):
            im = r[j] if j < len(r) else None
            im = np.zeros((ch, cw, 3), np.uint8) if im is None else rgb_to_uint8(im)
            if im.shape[:2] != (ch, cw):
                im = cv2.resize(im, (cw, ch), interpolation=cv2.INTER_NEAREST)
            text = labels[i][j] if labels is not None and i < len(labels) and j < len(labels[i]) else ""
            cells.append(np.pad(_label(im, text or "", bar), ((pad, pad), (pad, pad), (0, 0))))
        out_rows.append(np.concatenate(cells, axis=1))
    return np.concatenate(out_rows, axis=0)


def save_png(path, img_rgb) -> Path:
    """Write an RGB image (any layout `rgb_to_uint8` accepts) as PNG; creates parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb_to_uint8(img_rgb), cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path


def depth_panel(inputs, pred_depth, gt_depth, pred_rgb=None, gt_rgb=None, titles: dict | None = None, extra_depths: dict | None = None) -> np.ndarray:
    """The standard per-frame picture: one row of inputs, one of depth (+ one of RGB if given).

    inputs: list of RGB images (conditioning views). pred_depth/gt_depth (H, W) metres or None.
    extra_depths: {name: depth} (e.g. baselines) shown after the prediction with their own
    error maps, all in the ground truth's colour range.
    """
    titles = titles or {}
    lo, hi = depth_range(gt_depth if gt_depth is not None else pred_depth)
    rows, labels = [], []
    if inputs:
        rows.append(list(inputs))
        labels.append([f"input {i}" for i in range(len(inputs))])
    preds = {titles.get("pred", "MVGD"): pred_depth, **(extra_depths or {})}
    r, lab = [], []
    if gt_depth is not None:
        r.append(colorize_depth(gt_depth, lo, hi))
        lab.append("GT depth")
    for name, d in preds.items():
        if d is None:
            continue
        r.append(colorize_depth(d, lo, hi))
        lab.append(name)
        if gt_depth is not None:
            r.append(colorize_error(d, gt_depth))
            lab.append(f"{name} AbsRel")
    if r:
        rows.append(r)
        labels.append(lab)
    if pred_rgb is not None or gt_rgb is not None:
        rows.append([gt_rgb, pred_rgb])
        labels.append(["GT RGB", titles.get("pred_rgb", "MVGD RGB")])
    return make_grid(rows, labels, cell_hw=_cell(pred_depth, gt_depth, pred_rgb, gt_rgb))


def _cell(*imgs):
    for im in imgs:
        if im is not None:
            return tuple(_np(im).shape[:2]) if _np(im).ndim == 2 or _np(im).shape[-1] == 3 else tuple(_np(im).shape[1:])
    return None
