"""Pinhole cameras: intrinsics, camera-to-world poses, projection, and frame conventions.

Conventions used everywhere in mvgd_core (and converted once, at the ROS boundary):
- Camera frame: OpenCV optical (x right, y down, z forward), metres.
- Pose `T_wc`: camera-to-world, (..., 4, 4); a camera point p_c maps to p_w = R p_c + t.
- Intrinsics `K`: (..., 3, 3), pixel centres at integer coordinates (OpenCV): the centre of the
  top-left pixel is (u, v) = (0, 0).
- ROS body frames (REP 103: x forward, y left, z up) differ from optical frames by the fixed
  rotation `R_BODY_OPTICAL`; `optical_pose_from_body_pose` applies it.

Torch functions are batched over leading dimensions; numpy helpers (quaternions, pose
interpolation) serve the data readers and the TF fallback, which work in float64.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# Rotation taking optical-frame vectors into the REP 103 body frame of the same sensor:
# optical z (forward) -> body x, optical x (right) -> body -y, optical y (down) -> body -z.
R_BODY_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])

_ORTHO_TOL = 1e-3


# --------------------------------------------------------------------------- validation


def validate_intrinsics(K, name: str = "K") -> None:
    """Raise ValueError unless K (..., 3, 3) is a pinhole matrix the model can use: finite even in
    float32 (the network runs in float32: 1e39 is finite in float64, infinite in float32),
    positive focal lengths, last row [0, 0, 1] (a zero row makes every projection singular)."""
    K = torch.as_tensor(K)
    if K.shape[-2:] != (3, 3):
        raise ValueError(f"{name}: expected shape (..., 3, 3), got {tuple(K.shape)}")
    if not torch.isfinite(K).all():
        raise ValueError(f"{name}: intrinsics contain NaN or Inf")
    if K.is_floating_point() and not torch.isfinite(K.to(torch.float32)).all():
        raise ValueError(f"{name}: intrinsics overflow float32 (|value| > {torch.finfo(torch.float32).max:.3g}): {K.tolist()}")
    if (K[..., 0, 0] <= 0).any() or (K[..., 1, 1] <= 0).any():
        raise ValueError(f"{name}: focal lengths must be positive, got fx={K[..., 0, 0].tolist()} fy={K[..., 1, 1].tolist()}")
    last = K[..., 2, :].double() - torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    if last.abs().amax() > 1e-6:
        raise ValueError(f"{name}: last row must be [0, 0, 1], got {K[..., 2, :].tolist()}")


def validate_pose(T, name: str = "T_wc") -> None:
    """Raise ValueError unless T (..., 4, 4) is a finite rigid transform (orthonormal, det +1)."""
    T = torch.as_tensor(T, dtype=torch.float64)
    if T.shape[-2:] != (4, 4):
        raise ValueError(f"{name}: expected shape (..., 4, 4), got {tuple(T.shape)}")
    if not torch.isfinite(T).all():
        raise ValueError(f"{name}: pose contains NaN or Inf")
    R = T[..., :3, :3]
    eye = torch.eye(3, dtype=T.dtype)
    ortho_err = (R @ R.transpose(-1, -2) - eye).abs().amax()
    if ortho_err > _ORTHO_TOL or (torch.linalg.det(R) < 0).any():
        raise ValueError(f"{name}: rotation is not orthonormal with det +1 (|RR^T - I| = {ortho_err:.2e})")
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=T.dtype)
    if (T[..., 3, :] - bottom).abs().amax() > 1e-6:
        raise ValueError(f"{name}: last row must be [0, 0, 0, 1], got {T[..., 3, :].tolist()}")


# --------------------------------------------------------------------------- intrinsics


def make_intrinsics(fx: float, fy: float, cx: float, cy: float) -> torch.Tensor:
    """(3, 3) float32 pinhole matrix."""
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float32)


def resize_intrinsics(K: torch.Tensor, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> torch.Tensor:
    """Intrinsics after resizing an image from src_hw=(H, W) to dst_hw=(h, w).

    With pixel centres at integer coordinates, u' = (u + 0.5) * w / W - 0.5, so
    fx' = fx * w / W and cx' = (cx + 0.5) * w / W - 0.5 (likewise for y).
    K: (..., 3, 3) -> (..., 3, 3).
    """
    sy, sx = dst_hw[0] / src_hw[0], dst_hw[1] / src_hw[1]
    K = K.clone()
    K[..., 0, 0] = K[..., 0, 0] * sx
    K[..., 1, 1] = K[..., 1, 1] * sy
    K[..., 0, 2] = (K[..., 0, 2] + 0.5) * sx - 0.5
    K[..., 1, 2] = (K[..., 1, 2] + 0.5) * sy - 0.5
    return K


def crop_intrinsics(K: torch.Tensor, top: int, left: int) -> torch.Tensor:
    """Intrinsics of the crop whose top-left pixel was (left, top) in the source. (..., 3, 3)."""
    K = K.clone()
    K[..., 0, 2] = K[..., 0, 2] - left
    K[..., 1, 2] = K[..., 1, 2] - top
    return K


# --------------------------------------------------------------------------- poses


def invert_pose(T: torch.Tensor) -> torch.Tensor:
    """Inverse of rigid transforms (..., 4, 4), using R^T rather than a general inverse."""
    R, t = T[..., :3, :3], T[..., :3, 3:]
    Rt = R.transpose(-1, -2)
    out = torch.zeros_like(T)
    out[..., :3, :3] = Rt
    out[..., :3, 3:] = -Rt @ t
    out[..., 3, 3] = 1.0
    return out


def make_pose(R, t) -> np.ndarray:
    """(4, 4) float64 pose from a (3, 3) rotation and a (3,) translation."""
    T = np.eye(4)
    T[:3, :3] = np.asarray(R, dtype=np.float64)
    T[:3, 3] = np.asarray(t, dtype=np.float64)
    return T


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Camera-to-world pose (4, 4) of an optical camera at `eye` looking at `target`.

    `up` is the world direction that should appear up in the image (optical -y); the default
    is REP 103's z-up world.
    """
    eye, target, up = (np.asarray(a, dtype=np.float64) for a in (eye, target, up))
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(-up, z)  # right-handed optical frame: x = y x z with y ~ -up
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("look_at: viewing direction is parallel to `up`")
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    return make_pose(np.stack([x, y, z], axis=1), eye)


def optical_pose_from_body_pose(T_w_body: np.ndarray) -> np.ndarray:
    """Pose of a sensor's optical frame from the pose of its REP 103 body frame (4, 4)."""
    return T_w_body @ make_pose(R_BODY_OPTICAL, np.zeros(3))


def body_pose_from_optical_pose(T_w_optical: np.ndarray) -> np.ndarray:
    """Inverse of `optical_pose_from_body_pose` (4, 4)."""
    return T_w_optical @ make_pose(R_BODY_OPTICAL.T, np.zeros(3))


# --------------------------------------------------------------------------- quaternions (numpy, xyzw like ROS)


def quat_to_matrix(q) -> np.ndarray:
    """Rotation (..., 3, 3) from unit quaternions (..., 4) in ROS order (x, y, z, w).

    Raises ValueError for non-finite or zero-norm quaternions; normalizes the rest.
    """
    q = np.asarray(q, dtype=np.float64)
    if not np.isfinite(q).all():
        raise ValueError(f"quaternion contains NaN or Inf: {q.tolist()}")
    n = np.linalg.norm(q, axis=-1, keepdims=True)
    if (n < 1e-9).any():
        raise ValueError("quaternion has zero norm")
    x, y, z, w = np.moveaxis(q / n, -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def matrix_to_quat(R) -> np.ndarray:
    """Unit quaternion (x, y, z, w) with w >= 0 from a rotation matrix (3, 3)."""
    R = np.asarray(R, dtype=np.float64)
    tr = np.trace(R)
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        q = [(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, 0.25 * s]
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = 2.0 * np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2])
        q = [0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s, (R[2, 1] - R[1, 2]) / s]
    elif R[1, 1] > R[2, 2]:
        s = 2.0 * np.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2])
        q = [(R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s, (R[0, 2] - R[2, 0]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1])
        q = [(R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s, (R[1, 0] - R[0, 1]) / s]
    q = np.asarray(q)
    q = q / np.linalg.norm(q)
    return q if q[3] >= 0 else -q


def quat_slerp(q0, q1, alpha: float) -> np.ndarray:
    """Spherical interpolation between unit quaternions (x, y, z, w); alpha in [0, 1]."""
    q0 = np.asarray(q0, dtype=np.float64) / np.linalg.norm(q0)
    q1 = np.asarray(q1, dtype=np.float64) / np.linalg.norm(q1)
    dot = float(np.dot(q0, q1))
    if dot < 0.0:  # take the short way round
        q1, dot = -q1, -dot
    if dot > 0.9995:  # nearly parallel: lerp is exact to float precision and avoids 0/0
        q = q0 + alpha * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    return (np.sin((1 - alpha) * theta) * q0 + np.sin(alpha * theta) * q1) / np.sin(theta)


def interpolate_pose(T0: np.ndarray, T1: np.ndarray, alpha: float) -> np.ndarray:
    """Pose between T0 (alpha=0) and T1 (alpha=1): lerp on translation, slerp on rotation."""
    q = quat_slerp(matrix_to_quat(T0[:3, :3]), matrix_to_quat(T1[:3, :3]), alpha)
    return make_pose(quat_to_matrix(q), (1 - alpha) * T0[:3, 3] + alpha * T1[:3, 3])


# --------------------------------------------------------------------------- projection (torch, batched)


def pixel_grid(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Homogeneous pixel centres (H, W, 3): [u, v, 1] with u along width."""
    v, u = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype), torch.arange(width, device=device, dtype=dtype), indexing="ij"
    )
    return torch.stack([u, v, torch.ones_like(u)], dim=-1)


def unproject_depth(depth: torch.Tensor, K: torch.Tensor, T_wc: torch.Tensor) -> torch.Tensor:
    """World points (..., H, W, 3) of z-depth maps (..., H, W) seen by cameras K, T_wc (..., 3|4, 3|4).

    Depth is z-depth along the optical axis (what RGB-D sensors and our renderer report).
    """
    H, W = depth.shape[-2:]
    pix = pixel_grid(H, W, depth.device, depth.dtype)  # (H, W, 3)
    rays = pix @ torch.linalg.inv(K).transpose(-1, -2).unsqueeze(-3)  # (..., H, W, 3), z = 1
    p_cam = rays * depth.unsqueeze(-1)
    R, t = T_wc[..., :3, :3], T_wc[..., :3, 3]
    return p_cam @ R.transpose(-1, -2).unsqueeze(-3) + t[..., None, None, :]


def project_points(points_w: torch.Tensor, K: torch.Tensor, T_wc: torch.Tensor, eps: float = 1e-6):
    """Project world points (..., N, 3) into cameras (..., 3, 3), (..., 4, 4).

    Returns (uv (..., N, 2) pixel coordinates, z (..., N) camera z-depth). Points behind the
    camera get z <= 0 and meaningless uv; callers mask them.
    """
    T_cw = invert_pose(T_wc)
    p_cam = points_w @ T_cw[..., :3, :3].transpose(-1, -2) + T_cw[..., None, :3, 3]
    z = p_cam[..., 2]
    uvw = p_cam @ K.transpose(-1, -2)
    uv = uvw[..., :2] / uvw[..., 2:].clamp_min(eps)
    return uv, z


@dataclass
class PinholeCameras:
    """A batch of pinhole cameras of one image size.

    K: (..., 3, 3) float32 intrinsics; T_wc: (..., 4, 4) float32 camera-to-world (optical);
    height, width: image size in pixels that K refers to.
    """

    K: torch.Tensor
    T_wc: torch.Tensor
    height: int
    width: int

    def __post_init__(self):
        self.K = torch.as_tensor(self.K, dtype=torch.float32)
        self.T_wc = torch.as_tensor(self.T_wc, dtype=torch.float32)
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"image size must be positive, got {self.height}x{self.width}")
        validate_intrinsics(self.K)
        validate_pose(self.T_wc)
        if self.K.shape[:-2] != self.T_wc.shape[:-2]:
            raise ValueError(f"K batch {tuple(self.K.shape[:-2])} != T_wc batch {tuple(self.T_wc.shape[:-2])}")

    def resized(self, height: int, width: int) -> "PinholeCameras":
        return PinholeCameras(resize_intrinsics(self.K, (self.height, self.width), (height, width)), self.T_wc, height, width)

    def to(self, device) -> "PinholeCameras":
        return PinholeCameras(self.K.to(device), self.T_wc.to(device), self.height, self.width)
