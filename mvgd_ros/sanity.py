"""Numeric guards at the node's edges (no ROS here): intrinsics in, predictions out.

In: camera_info intrinsics must be usable by a float32 network (mvgd_core.cameras.
validate_intrinsics: finite in float32, positive focal lengths, last row [0, 0, 1]) and the
image size positive (image_codec.camera_info_to_K calls it, so every reader of camera_info
gets the full check); a camera_info that fails is dropped and counted, never matched.
Out: a prediction whose depth is non-finite, not positive, or beyond what the model can
express (D_MAX SSN units times the SSN scale it used) is a numerical failure: `check_prediction`
raises, the worker counts an inference failure and nothing is published.
"""
from __future__ import annotations

import numpy as np

from mvgd_core.cameras import validate_intrinsics
from mvgd_core.ssn import D_MAX

RANGE_SLACK = 1.01  # the log parameterisation maps x0 in [-1, 1] to [d_min, d_max] * s; rounding only beyond


def checked_intrinsics(K: np.ndarray, hw: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """(K (3, 3) float64, (H, W)) unchanged, or ValueError naming the problem."""
    K = np.asarray(K, dtype=np.float64)
    validate_intrinsics(K, "camera_info k")
    if len(hw) != 2 or int(hw[0]) <= 0 or int(hw[1]) <= 0:
        raise ValueError(f"camera_info size must be positive, got {hw}")
    return K, (int(hw[0]), int(hw[1]))


def check_prediction(pred, task: str) -> None:
    """ValueError unless the prediction is numerically sound (module docstring)."""
    if task == "depth":
        d = pred.depth
        if d is None or not np.isfinite(d).all():
            raise ValueError("model output is not finite (NaN/Inf depth)")
        if (d <= 0).any():
            raise ValueError(f"model output has non-positive depth (min {float(d.min()):.3g})")
        top = D_MAX * float(pred.scale) * RANGE_SLACK
        if not np.isfinite(top) or float(d.max()) > top:
            raise ValueError(f"model depth {float(d.max()):.3g} beyond the representable {top:.3g} (SSN scale {pred.scale:.3g})")
    elif pred.rgb is None:
        raise ValueError("model returned no rgb")
    conf = getattr(pred, "confidence", None)
    if conf is not None and not np.isfinite(conf).all():
        raise ValueError("model confidence is not finite")
