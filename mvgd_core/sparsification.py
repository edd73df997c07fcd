"""Calibration of a per-pixel confidence: the sparsification curve.

Keep only the most confident fraction f of valid pixels and measure AbsRel there; a useful
confidence makes the curve fall as f shrinks (the error of the kept pixels drops), a useless one
leaves it flat. The "oracle" curve ranks pixels by their true error: the best any confidence
could do. Standard in MVS / stereo confidence evaluation (e.g. Ilg et al., ECCV 2018).
"""
from __future__ import annotations

import numpy as np
import torch

FRACTIONS = (0.25, 0.5, 0.75, 1.0)
PARTIAL_FRACTIONS = FRACTIONS[:-1]  # a frame's own points below 100 % (its 100 % point is its AbsRel)


def fraction_key(fraction: float) -> str:
    """Metric name of one sparsification point in per-frame scores: 0.25 -> "abs_rel_conf25"."""
    return f"abs_rel_conf{round(100 * fraction)}"


def most_confident_indices(confidence: np.ndarray, k: int) -> np.ndarray:
    """Indices of the `k` most confident entries of a 1-D `confidence` (finite values).

    A calibrated table maps many pixels to one value, so the cut often falls inside a group of
    equal confidences. Their order says nothing about depth, and image order (a stable sort)
    would keep the top rows of the image first; so the tied group at the cut is sampled evenly
    across its members: every pixel above the cut, plus `k - #above` of the tied ones spread
    over the image. Deterministic, and close to the expectation over random tie orders.
    """
    c = np.asarray(confidence).ravel()
    k = int(k)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if k >= c.size:
        return np.arange(c.size)
    cut = np.partition(c, c.size - k)[c.size - k]  # the k-th largest value
    above = np.flatnonzero(c > cut)
    tied = np.flatnonzero(c == cut)
    need = k - above.size
    pick = tied[((np.arange(need) + 0.5) * tied.size / need).astype(np.int64)]
    return np.concatenate([above, pick])


def sparsification_curve(pred, gt, confidence, fractions=FRACTIONS) -> dict[str, list[float]]:
    """AbsRel of the most confident `fractions` of valid pixels (GT finite and > 0, pred finite).

    pred, gt, confidence: same-shape arrays or tensors (any shape; pooled over all pixels).
    Returns {"fractions": [...], "abs_rel": [...], "oracle": [...]} (NaN where no pixel is valid).
    """
    p, g, c = (np.asarray(torch.as_tensor(x).detach().cpu(), dtype=np.float64).ravel() for x in (pred, gt, confidence))
    if not (p.shape == g.shape == c.shape):
        raise ValueError(f"sparsification_curve: shapes differ {p.shape}, {g.shape}, {c.shape}")
    for f in fractions:
        if not 0 < f <= 1:
            raise ValueError(f"sparsification_curve: fractions must be in (0, 1], got {f}")
    v = np.isfinite(g) & (g > 0) & np.isfinite(p) & np.isfinite(c)
    err = np.abs(p[v] - g[v]) / g[v]
    conf = c[v]
    by_err = np.sort(err)
    out = {"fractions": [float(f) for f in fractions], "abs_rel": [], "oracle": []}
    for f in fractions:
        k = int(round(f * err.size))
        out["abs_rel"].append(float(err[most_confident_indices(conf, k)].mean()) if k else float("nan"))
        out["oracle"].append(float(by_err[:k].mean()) if k else float("nan"))
    return out
