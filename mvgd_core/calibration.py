"""Calibrated per-pixel confidence: raw score -> P(depth within 25 % of the truth).

The matching path's raw confidence (the cost volume's peak probability mass) ranks errors but
its value is not a probability. `ConfidenceCalibration` is a monotone piecewise-linear map from
the raw score to the probability that the pixel is a delta1 inlier,

    correct = max(d / gt, gt / d) < 1.25,

fitted by isotonic regression (pool-adjacent-violators, Ayer et al. 1955; the same estimator as
sklearn.isotonic.IsotonicRegression, reimplemented here in a few lines) on held-out pixels
binned by raw score, so the fit is fast and the stored table is small (<= `bins` knots).
Between knots the map interpolates linearly; outside them it is constant (np.interp).
Pixels whose matching distribution peaks at the first or last depth hypothesis (no match
inside the range) get their own monotone table: their peak mass rises when matching fails, so
a single table would give the most confidently wrong pixels the top probability. Pixels whose
depth the photometric refinement replaced (mvgd_core/refine.py: a confirmed match) get a third
table: they are right more often than their raw score says. Pixels whose depth went through a
learned stage with its own uncertainty (mvgd_core/refine_net.py, stop 37) get a fourth, on that
stage's score instead of the peak mass: the stage sees the band, the image and both stages'
depth, where the peak mass sees only the network's volume.

Evaluation helpers: `reliability` (per-bin mean predicted probability vs observed frequency,
the reliability diagram) and `expected_calibration_error` (ECE, Naeini et al. AAAI 2015:
count-weighted mean |predicted - observed| over equal-width bins).

numpy / torch only; stored in checkpoints as plain lists (checkpoint.CALIBRATION_KEY).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

KIND = "isotonic-delta1"
TARGET = "P(max(depth/gt, gt/depth) < 1.25)"
DELTA1 = 1.25


def delta1_correct(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    """(correct, valid): bool arrays of pred's shape. valid: gt finite and > 0, pred finite and > 0;
    correct: valid and max(pred/gt, gt/pred) < 1.25 (the delta1 criterion)."""
    p, g = (np.asarray(torch.as_tensor(x).detach().cpu(), dtype=np.float64) for x in (pred, gt))
    if p.shape != g.shape:
        raise ValueError(f"delta1_correct: shapes differ {p.shape}, {g.shape}")
    valid = np.isfinite(g) & (g > 0) & np.isfinite(p) & (p > 0)
    ratio = np.where(valid, np.maximum(p, 1e-12) / np.where(valid, g, 1.0), 1.0)
    return valid & (np.maximum(ratio, 1.0 / ratio) < DELTA1), valid


def pool_adjacent_violators(y, w=None) -> np.ndarray:
    """Isotonic (non-decreasing) least-squares fit of y (n,) with weights w (n,) > 0, in order.

    Returns the fitted values (n,). Merges adjacent blocks while their means decrease.
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    w = np.ones_like(y) if w is None else np.asarray(w, dtype=np.float64).ravel()
    if y.shape != w.shape or (w <= 0).any() or not np.isfinite(y).all():
        raise ValueError("pool_adjacent_violators: need finite y and positive weights of the same length")
    means, weights, sizes = [], [], []  # one entry per block
    for yi, wi in zip(y, w):
        means.append(yi), weights.append(wi), sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:  # violator: pool the last two blocks
            m2, w2, s2 = means.pop(), weights.pop(), sizes.pop()
            wt = weights[-1] + w2
            means[-1] = (means[-1] * weights[-1] + m2 * w2) / wt
            weights[-1], sizes[-1] = wt, sizes[-1] + s2
    return np.repeat(means, sizes)


def _check_table(x, y, name: str) -> None:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or y.ndim != 1 or x.size != y.size:
        raise ValueError(f"ConfidenceCalibration: {name} x and y must be 1-D of equal length, got {x.shape}, {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError(f"ConfidenceCalibration: {name} knots must be finite")
    if (np.diff(x) <= 0).any():
        raise ValueError(f"ConfidenceCalibration: {name} x (raw scores) must be strictly increasing")
    if (np.diff(y) < 0).any():
        raise ValueError(f"ConfidenceCalibration: {name} y must be non-decreasing (a calibration map is monotone)")
    if y.size and (y.min() < 0 or y.max() > 1):
        raise ValueError(f"ConfidenceCalibration: {name} y must be probabilities in [0, 1], got [{y.min()}, {y.max()}]")


def _fit_table(r: np.ndarray, c: np.ndarray, bins: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Knots (x, y) of the isotonic fit of c (n,) on scores r (n,), over <= bins quantile bins."""
    order = np.argsort(r, kind="stable")
    r, c = r[order], c[order]
    # bin ends: quantile positions moved to the end of their run of equal scores (ties never split)
    ends = np.unique(np.searchsorted(r, r[np.linspace(0, r.size - 1, bins + 1).astype(int)[1:]], side="right"))
    starts = np.concatenate([[0], ends[:-1]])
    cnt = (ends - starts).astype(np.float64)
    xs = np.add.reduceat(r, starts) / cnt  # (K,) mean score per bin
    ys = pool_adjacent_violators(np.add.reduceat(c, starts) / cnt, cnt)
    keep = np.ones(xs.size, bool)  # drop the interior knots of flat runs
    keep[1:-1] = ~((ys[1:-1] == ys[:-2]) & (ys[1:-1] == ys[2:]))
    return tuple(xs[keep].tolist()), tuple(np.clip(ys[keep], 0, 1).tolist())


def _interp(r: torch.Tensor, x, y) -> torch.Tensor:
    """np.interp (constant outside the knots) in torch, clipped to [0, 1]; r float64."""
    xk = torch.tensor(x, dtype=torch.float64, device=r.device)
    yk = torch.tensor(y, dtype=torch.float64, device=r.device)
    if xk.numel() == 1:
        return torch.full_like(r, float(yk[0]))
    i = torch.searchsorted(xk, r.clamp(xk[0], xk[-1]).contiguous()).clamp(1, xk.numel() - 1)
    t = ((r - xk[i - 1]) / (xk[i] - xk[i - 1])).clamp(0, 1)
    return (yk[i - 1] + t * (yk[i] - yk[i - 1])).clamp(0, 1)


@dataclass(frozen=True)
class ConfidenceCalibration:
    """Monotone map raw confidence -> probability of a delta1 inlier.

    x: (K,) knots, strictly increasing raw scores; y: (K,) non-decreasing probabilities in [0, 1]
    (K >= 1). edge_x / edge_y: an optional second table (same rules, may be empty) for pixels
    whose matching distribution peaks at the nearest or farthest depth hypothesis
    (`match_confidence`'s out_of_range): there a high peak mass means the match failed, so
    one monotone table over all pixels cannot rank them. refined_x / refined_y: an optional third
    table for pixels the photometric refinement replaced (it takes precedence over the other two).
    stage_x / stage_y: an optional fourth, over the learned stage's own score (`stage` in `fit` /
    `apply`), for the pixels that have one (it takes precedence over the other three).
    n_fit: pixels the fit used; source: what data it was fitted on (free text).
    """

    x: tuple[float, ...]
    y: tuple[float, ...]
    edge_x: tuple[float, ...] = ()
    edge_y: tuple[float, ...] = ()
    n_fit: int = 0
    source: str = ""
    refined_x: tuple[float, ...] = ()
    refined_y: tuple[float, ...] = ()
    stage_x: tuple[float, ...] = ()
    stage_y: tuple[float, ...] = ()

    def __post_init__(self):
        if len(self.x) == 0:
            raise ValueError("ConfidenceCalibration: x and y must not be empty")
        _check_table(self.x, self.y, "table")
        _check_table(self.edge_x, self.edge_y, "edge table")
        _check_table(self.refined_x, self.refined_y, "refined table")
        _check_table(self.stage_x, self.stage_y, "stage table")
        if int(self.n_fit) < 0:
            raise ValueError(f"ConfidenceCalibration: n_fit must be >= 0, got {self.n_fit}")

    @classmethod
    def fit(cls, raw, correct, out_of_range=None, bins: int = 64, source: str = "", refined=None, stage=None) -> "ConfidenceCalibration":
        """Fit on pixels: raw (any shape) scores, correct (same shape) bool delta1 inliers,
        out_of_range (same shape) bool or None (then one table for all pixels), refined (same
        shape) bool or None: pixels the photometric refinement replaced get their own table;
        stage (same shape) float or None: the learned stage's score, NaN where it has none; the
        pixels with one also get a table over it (the other tables are fitted on every pixel's
        peak mass as without it: they serve wherever no stage score exists, e.g. virtual views).

        Pixels with a non-finite score are ignored. Per table, scores are cut into <= `bins`
        quantile bins (equal counts; ties never split), PAV runs on the bins' inlier rates
        weighted by counts, and each bin becomes a knot at its mean score; flat runs keep only
        their two ends. The edge and refined tables are fitted only when their masks mark some
        pixels; a refined pixel belongs to the refined table only.
        """
        arr = lambda a: np.asarray(torch.as_tensor(a).detach().cpu(), dtype=np.float64).ravel()  # noqa: E731
        r, c = arr(raw), arr(correct)
        e = np.zeros(r.shape, bool) if out_of_range is None else arr(out_of_range) > 0
        f = np.zeros(r.shape, bool) if refined is None else arr(refined) > 0
        g = np.full(r.shape, np.nan) if stage is None else arr(stage)
        if not (r.shape == c.shape == e.shape == f.shape == g.shape):
            raise ValueError(f"ConfidenceCalibration.fit: raw {r.shape}, correct {c.shape}, out_of_range {e.shape}, refined {f.shape}, "
                             f"stage {g.shape} differ")
        if bins < 1:
            raise ValueError(f"ConfidenceCalibration.fit: bins must be >= 1, got {bins}")
        staged = np.isfinite(g)
        gx, gy = _fit_table(g[staged], c[staged], bins) if staged.any() else ((), ())
        ok = np.isfinite(r)
        r, c, e, f = r[ok], c[ok], e[ok], f[ok]
        main = ~e & ~f
        if not main.any():
            raise ValueError("ConfidenceCalibration.fit: no in-range, unrefined pixel with a finite score")
        x, y = _fit_table(r[main], c[main], bins)
        edge = e & ~f
        ex, ey = _fit_table(r[edge], c[edge], bins) if edge.any() else ((), ())
        fx, fy = _fit_table(r[f], c[f], bins) if f.any() else ((), ())
        return cls(x, y, ex, ey, int(r.size), source, fx, fy, gx, gy)

    def apply(self, raw, out_of_range=None, refined=None, stage=None):
        """Calibrated probability of raw scores: np.ndarray or torch.Tensor of any shape, same
        type, shape (and device) back, float; in [0, 1]; NaN stays NaN. out_of_range (same
        shape, bool) selects the edge table where it has one, refined (same shape, bool) the
        refined table where it has one (before it), stage (same shape, float: the learned
        stage's score, NaN where none) the stage table where it has one and the score is finite
        (first); None uses the main table."""
        if not isinstance(raw, torch.Tensor):  # numpy: the same float64 interpolation, via torch
            a = np.asarray(raw)
            mask = lambda m: None if m is None else torch.from_numpy(np.asarray(m, dtype=bool))  # noqa: E731
            score = None if stage is None else torch.from_numpy(np.asarray(stage, dtype=np.float64))
            out = self.apply(torch.from_numpy(a.astype(np.float64)), mask(out_of_range), mask(refined), score).numpy()
            return out.astype(a.dtype if np.issubdtype(a.dtype, np.floating) else np.float32)
        r = raw.detach().double()
        out = _interp(r, self.x, self.y)
        if out_of_range is not None and len(self.edge_x) > 0:
            out = torch.where(torch.as_tensor(out_of_range, device=r.device).bool(), _interp(r, self.edge_x, self.edge_y), out)
        if refined is not None and len(self.refined_x) > 0:
            out = torch.where(torch.as_tensor(refined, device=r.device).bool(), _interp(r, self.refined_x, self.refined_y), out)
        if stage is not None and len(self.stage_x) > 0:
            g = torch.as_tensor(stage, device=r.device).double()
            out = torch.where(torch.isfinite(g), _interp(g.nan_to_num(0.0), self.stage_x, self.stage_y), out)
        out = torch.where(torch.isnan(r), r, out)
        return out.to(raw.dtype if raw.dtype.is_floating_point else torch.float32)

    def to_dict(self) -> dict:
        """Plain types only (checkpoints load with weights_only=True)."""
        f = lambda v: [float(t) for t in v]  # noqa: E731
        return {"kind": KIND, "target": TARGET, "x": f(self.x), "y": f(self.y), "edge_x": f(self.edge_x), "edge_y": f(self.edge_y),
                "refined_x": f(self.refined_x), "refined_y": f(self.refined_y), "stage_x": f(self.stage_x), "stage_y": f(self.stage_y),
                "n_fit": int(self.n_fit), "source": str(self.source)}

    @classmethod
    def from_dict(cls, d) -> "ConfidenceCalibration":
        """Inverse of to_dict; ValueError naming the problem for a malformed table."""
        if not isinstance(d, dict):
            raise ValueError(f"confidence calibration: expected a dict, got {type(d).__name__}")
        if d.get("kind") != KIND:
            raise ValueError(f"confidence calibration: kind {d.get('kind')!r}, expected {KIND!r}")
        for k in ("x", "y", "edge_x", "edge_y", "refined_x", "refined_y", "stage_x", "stage_y"):
            v = d.get(k, [] if k.startswith(("edge", "refined", "stage")) else None)
            if not isinstance(v, (list, tuple)) or not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in v):
                raise ValueError(f"confidence calibration: {k!r} must be a list of numbers")
        t = lambda k: tuple(float(v) for v in d.get(k, []))  # noqa: E731
        return cls(t("x"), t("y"), t("edge_x"), t("edge_y"), int(d.get("n_fit", 0)), str(d.get("source", "")), t("refined_x"), t("refined_y"),
                   t("stage_x"), t("stage_y"))


def match_confidence(match, hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs of the calibration from a cost-volume MatchOutput (confidence (B, 1, h, w), prob
    (B, D, h, w)) at output size hw = (H, W): (raw (B, H, W) float32 peak mass, bilinear;
    out_of_range (B, H, W) bool: the distribution's mode is the first or last hypothesis,
    nearest), both on CPU."""
    raw = F.interpolate(match.confidence.float(), size=hw, mode="bilinear", align_corners=False)[:, 0]
    mode = match.prob.argmax(1, keepdim=True)
    edge = ((mode == 0) | (mode == match.prob.shape[1] - 1)).float()
    return raw.cpu(), F.interpolate(edge, size=hw, mode="nearest")[:, 0].bool().cpu()


def reliability(prob, correct, bins: int = 10) -> dict[str, list]:
    """Reliability diagram over `bins` equal-width bins of [0, 1].

    prob: predicted probabilities (any shape; non-finite ignored); correct: same shape, bool.
    Returns {"edges": (bins+1,), "mean_pred": (bins,), "observed": (bins,) inlier frequency,
    "count": (bins,) ints} as lists; mean_pred / observed are NaN in empty bins.
    """
    p = np.asarray(torch.as_tensor(prob).detach().cpu(), dtype=np.float64).ravel()
    c = np.asarray(torch.as_tensor(correct).detach().cpu(), dtype=np.float64).ravel()
    if p.shape != c.shape:
        raise ValueError(f"reliability: prob {p.shape} and correct {c.shape} differ")
    keep = np.isfinite(p)
    p, c = np.clip(p[keep], 0, 1), c[keep]
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)  # p = 1 goes to the last bin
    cnt = np.bincount(idx, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pred = np.bincount(idx, p, bins) / cnt
        observed = np.bincount(idx, c, bins) / cnt
    return {"edges": edges.tolist(), "mean_pred": mean_pred.tolist(), "observed": observed.tolist(), "count": cnt.astype(int).tolist()}


def expected_calibration_error(prob, correct, bins: int = 10) -> float:
    """ECE: sum over bins of count/total * |mean predicted - observed frequency| (NaN if no pixel)."""
    r = reliability(prob, correct, bins)
    cnt = np.asarray(r["count"], dtype=np.float64)
    if cnt.sum() == 0:
        return float("nan")
    gap = np.abs(np.asarray(r["mean_pred"]) - np.asarray(r["observed"]))
    return float(np.nansum(cnt * gap) / cnt.sum())
