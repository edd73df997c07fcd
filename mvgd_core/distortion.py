"""Lens distortion and rectification maps, for the distortion models of ROS sensor_msgs/CameraInfo.

Why: every geometric step here (cost volume, refinement, view synthesis, baselines) assumes a
pinhole camera. A raw image with lens distortion puts points ~1-4 px (at 96x128) from where the
pinhole model says they are near the border (TUM fr1's Kinect: ~6 % radial at the corners),
which is as large as the parallax the matching measures. image_proc's rectify node removes it
on a robot; this module does the same for readers and for the node's raw input.

Models (names as in sensor_msgs/distortion_models.h; coefficient order as OpenCV's):
- "plumb_bob": k1 k2 p1 p2 [k3] (Brown-Conrady, 4 or 5 coefficients);
- "rational_polynomial": k1 k2 p1 p2 k3 k4 k5 k6 (radial numerator / denominator);
- "equidistant": k1 k2 k3 k4 (OpenCV fisheye: theta_d = theta (1 + k1 theta^2 + ...)).

A rectification map is, per pixel of the rectified image (camera K_rect, rotation R from the
raw to the rectified camera, as CameraInfo R / OpenCV's initUndistortRectifyMap), the raw
pixel to sample: map (H, W, 2) float32 raw (x, y), pixel centres at integers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

COEFFICIENTS = {"plumb_bob": (4, 5, 8), "rational_polynomial": (8,), "equidistant": (4,)}


@dataclass(frozen=True)
class LensDistortion:
    """model: one of COEFFICIENTS; coeffs: in that model's order (see module docstring)."""

    model: str
    coeffs: tuple[float, ...]

    def __post_init__(self):
        if self.model not in COEFFICIENTS:
            raise ValueError(f"unsupported distortion model {self.model!r}; supported: {sorted(COEFFICIENTS)}")
        if len(self.coeffs) not in COEFFICIENTS[self.model]:
            raise ValueError(f"distortion model {self.model!r} takes {COEFFICIENTS[self.model]} coefficients, got {len(self.coeffs)}")
        if not all(np.isfinite(self.coeffs)):
            raise ValueError(f"distortion coefficients must be finite, got {self.coeffs}")

    @property
    def is_identity(self) -> bool:
        return not any(self.coeffs)


def distort(x: np.ndarray, y: np.ndarray, lens: LensDistortion) -> tuple[np.ndarray, np.ndarray]:
    """Undistorted normalised image coordinates (x, y) (z = 1) -> distorted ones, same shapes."""
    if lens.model == "equidistant":
        k1, k2, k3, k4 = lens.coeffs
        r = np.sqrt(x * x + y * y)
        th = np.arctan(r)
        th2 = th * th
        th_d = th * (1 + th2 * (k1 + th2 * (k2 + th2 * (k3 + th2 * k4))))
        scale = np.where(r > 1e-12, th_d / np.maximum(r, 1e-12), 1.0)
        return x * scale, y * scale
    k1, k2, p1, p2, k3, k4, k5, k6 = (tuple(lens.coeffs) + (0.0,) * 8)[:8]
    r2 = x * x + y * y
    radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return xd, yd


def rectify_map(K: np.ndarray, lens: LensDistortion, hw: tuple[int, int], K_rect: np.ndarray | None = None,
                R: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 2) float32: the raw pixel (x, y) each pixel of the rectified image samples.

    K (3, 3): the raw camera; K_rect (3, 3): the rectified camera (default K); R (3, 3): raw ->
    rectified rotation (default identity). hw = (H, W) of both images."""
    H, W = hw
    K_rect = K if K_rect is None else K_rect
    R = np.eye(3) if R is None else np.asarray(R, dtype=np.float64)
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K_rect).T @ R  # R^-1 = R^T: rows times R
    z = rays[..., 2]
    behind = z <= 1e-9
    z = np.where(behind, 1.0, z)
    xd, yd = distort(rays[..., 0] / z, rays[..., 1] / z, lens)
    out = np.stack([K[0, 0] * xd + K[0, 1] * yd + K[0, 2], K[1, 1] * yd + K[1, 2]], -1)
    out[behind] = -1e6  # outside any image: sampled as empty
    return out.astype(np.float32)


def remap(image: np.ndarray, pixel_map: np.ndarray, nearest: bool = False) -> np.ndarray:
    """Sample image (H_raw, W_raw[, C]) at pixel_map (H, W, 2) -> (H, W[, C]), same dtype; 0 where
    the map leaves the raw image. Bilinear, or nearest (depth: never mix depths across edges)."""
    img = torch.from_numpy(np.array(image))  # a copy: bag buffers are read-only
    chw = (img[None, None] if img.ndim == 2 else img.permute(2, 0, 1)[None]).to(torch.float32)
    Hr, Wr = image.shape[:2]
    grid = torch.from_numpy(pixel_map).clone()
    grid[..., 0] = grid[..., 0] * (2.0 / max(Wr - 1, 1)) - 1
    grid[..., 1] = grid[..., 1] * (2.0 / max(Hr - 1, 1)) - 1
    out = F.grid_sample(chw, grid[None], mode="nearest" if nearest else "bilinear", padding_mode="zeros", align_corners=True)[0]
    out = out[0] if img.ndim == 2 else out.permute(1, 2, 0)
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        out = out.round().clamp(info.min, info.max)
    return out.numpy().astype(image.dtype)


def remap_rgbd(rgb: np.ndarray, depth: np.ndarray | None, pixel_map: np.ndarray):
    """(rgb, depth) of one raw frame remapped by pixel_map: colour bilinear, depth nearest (never
    a blend of depths across an edge); depth None stays None."""
    return remap(rgb, pixel_map), None if depth is None else remap(depth, pixel_map, nearest=True)


def camera_info_rectification(K: np.ndarray, lens: LensDistortion, hw: tuple[int, int], R=None, P=None):
    """(K_rect (3, 3), pixel_map (H, W, 2)) for the rectified image as ROS CameraInfo defines it
    (image_proc's rectify): the camera P[:, :3] (K when that is all zero, as some drivers send)
    and the rotation R (identity when all zero or None). R: 9 numbers or (3, 3); P: 12 or (3, 4)."""
    P3 = None if P is None else np.asarray(P, dtype=np.float64).reshape(3, 4)[:, :3]
    K_rect = P3.copy() if P3 is not None and np.any(P3) else np.asarray(K, dtype=np.float64)
    R = None if R is None else np.asarray(R, dtype=np.float64).reshape(3, 3)
    return K_rect, rectify_map(K, lens, hw, K_rect, R if R is not None and np.any(R) else None)
