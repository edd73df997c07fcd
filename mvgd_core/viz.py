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


def legible_cell(hw, min_width: int = 160) -> tuple[int, int]:
    """hw scaled by the smallest integer factor that makes it at least min_width wide, so small
    (model-resolution) maps are shown big enough for their captions and legends."""
    h, w = int(hw[0]), int(hw[1])
    k = max(1, -(-min_width // max(w, 1)))
    return h * k, w * k


def colorize_observability(observable, valid=None) -> np.ndarray:
    """Observability mask (H, W) bool -> RGB uint8: observable green, valid but unobservable
    (depth cannot come from parallax there) grey, no ground truth black."""
    obs = _np(observable).astype(bool)
    v = np.ones_like(obs) if valid is None else _np(valid).astype(bool)
    out = np.zeros(obs.shape + (3,), np.uint8)
    out[v & ~obs] = (110, 110, 110)
    out[v & obs] = (60, 200, 80)
    return out


def depth_colorbar(lo: float, hi: float, hw: tuple[int, int], cmap: str = "turbo") -> np.ndarray:
    """A legend cell (H, W, 3) for `colorize_depth(.., lo, hi)`: the colour ramp (near at the
    top, inverse-depth spacing like the maps) with the near, middle and far depths written on it."""
    h, w = hw
    inv = np.linspace(1.0 / max(lo, 1e-6), 1.0 / max(hi, lo * (1 + 1e-6)), h, dtype=np.float32)[:, None].repeat(w, 1)
    img = colorize_depth(1.0 / inv, lo, hi, cmap)
    scale = max(0.3, min(0.5, w / 256))
    for y, d in ((int(0.12 * h) + 4, lo), (h // 2 + 4, 2.0 / (1.0 / max(lo, 1e-6) + 1.0 / hi)), (h - 3, hi)):
        cv2.putText(img, f"{d:.1f}m", (2, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(img, f"{d:.1f}m", (2, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def method_depth_row(gt_depth, depths: dict, obs_mask=None, obs_label: str = "observable", max_err: float = 0.5, bar_hw=None):
    """One labelled row (cells, labels) for a target: GT depth, every method's depth on ONE
    colour scale (the GT's robust range, or the first method's when there is no GT), the
    scale legend, the observability mask, then each method's AbsRel error map (0 dark .. >=
    max_err bright). depths: {label: (H, W) metres}. bar_hw: size of the legend cell (default
    the maps' size; pass the grid's cell size when cells are upscaled, so its text stays sharp)."""
    ref = gt_depth if gt_depth is not None and valid_mask(gt_depth).any() else next(iter(depths.values()), None)
    lo, hi = depth_range(ref) if ref is not None else (0.0, 1.0)
    hw = _np(ref).shape[:2] if ref is not None else (48, 64)
    cells, labels = [], []
    if gt_depth is not None:
        cells.append(colorize_depth(gt_depth, lo, hi))
        labels.append("GT depth")
    for name, d in depths.items():
        cells.append(colorize_depth(d, lo, hi))
        labels.append(name)
    cells.append(depth_colorbar(lo, hi, tuple(bar_hw) if bar_hw is not None else hw))
    labels.append("scale")
    if obs_mask is not None:
        cells.append(colorize_observability(obs_mask, valid_mask(gt_depth) if gt_depth is not None else None))
        labels.append(obs_label)
    if gt_depth is not None:
        for name, d in depths.items():
            cells.append(colorize_error(d, gt_depth, max_err=max_err))
            labels.append(f"{name} err")
    return cells, labels


def depth_panel(inputs, pred_depth, gt_depth, pred_rgb=None, gt_rgb=None, titles: dict | None = None, extra_depths: dict | None = None,
                obs_mask=None, obs_label: str = "observable") -> np.ndarray:
    """The standard per-frame picture.

    Row 1: the inputs (conditioning views, RGB). Row 2: GT depth, then the prediction and every
    `extra_depths` entry ({name: depth}, e.g. baselines), all on ONE colour scale (the GT's
    robust range), and the scale legend. Row 3, under each depth: the observability mask
    (green observable, grey not, black no GT) under the GT, each method's AbsRel error map
    under its depth. Row 4 (if given): GT RGB and predicted RGB.
    """
    titles = titles or {}
    preds = {k: v for k, v in {titles.get("pred", "MVGD"): pred_depth, **(extra_depths or {})}.items() if v is not None}
    ref = gt_depth if gt_depth is not None else next(iter(preds.values()), None)
    lo, hi = depth_range(ref) if ref is not None else (0.0, 1.0)
    rows, labels = [], []
    if inputs:
        rows.append(list(inputs))
        labels.append([f"input {i}" for i in range(len(inputs))])
    cell = _cell(pred_depth, gt_depth, pred_rgb, gt_rgb)
    cell = legible_cell(cell) if cell is not None else None
    r, lab, e, elab = [], [], [], []
    if gt_depth is not None:
        r.append(colorize_depth(gt_depth, lo, hi))
        lab.append("GT depth")
        e.append(colorize_observability(obs_mask, valid_mask(gt_depth)) if obs_mask is not None else None)
        elab.append(obs_label if obs_mask is not None else "")
    for name, d in preds.items():
        r.append(colorize_depth(d, lo, hi))
        lab.append(name)
        e.append(colorize_error(d, gt_depth) if gt_depth is not None else None)
        elab.append(f"{name} err" if gt_depth is not None else "")
    if r:
        r.append(depth_colorbar(lo, hi, cell or _np(r[0]).shape[:2]))
        lab.append("depth scale")
        rows.append(r)
        labels.append(lab)
        if any(x is not None for x in e):
            rows.append(e)
            labels.append(elab)
    if pred_rgb is not None or gt_rgb is not None:
        rows.append([gt_rgb, pred_rgb])
        labels.append(["GT RGB", titles.get("pred_rgb", "MVGD RGB")])
    return make_grid(rows, labels, cell_hw=cell)


def _cell(*imgs):
    for im in imgs:
        if im is not None:
            return tuple(_np(im).shape[:2]) if _np(im).ndim == 2 or _np(im).shape[-1] == 3 else tuple(_np(im).shape[1:])
    return None
