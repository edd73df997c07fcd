"""Pure helpers between ROS inputs and `Frame`s: frame conventions, poses, intrinsics.

The one place where REP 103 body frames become OpenCV optical frames (ARCHITECTURE.md).
No subscriptions or node state here, so every rule is unit-tested without DDS.
"""
from __future__ import annotations

import numpy as np
import torch

from mvgd_core.cameras import make_pose, optical_pose_from_body_pose, quat_to_matrix, resize_intrinsics, validate_pose
from mvgd_core.data.types import Frame

OPTICAL_SUFFIXES = ("_optical_frame", "_optical")


class FrameError(ValueError):
    """A frame cannot be used; `reason` is the drop counter it goes to."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def is_optical(frame_id: str, convention: str) -> bool:
    """Whether `frame_id` is an optical frame (z forward, x right, y down).

    'optical' / 'body' force the answer; 'auto' trusts the REP 103 naming rule: camera drivers
    publish images in `*_optical_frame` (or `*_optical`) frames, anything else is taken as a
    body-convention frame (x forward, y left, z up) of the same sensor.
    """
    if convention == "optical":
        return True
    if convention == "body":
        return False
    return frame_id.endswith(OPTICAL_SUFFIXES)


def camera_pose(T_fixed_frame: np.ndarray, optical: bool) -> np.ndarray:
    """Camera-to-world optical pose (4, 4) from TF's T_fixed_<frame_id>; FrameError('bad_pose') if not rigid/finite."""
    T = np.asarray(T_fixed_frame, dtype=np.float64)
    T = T if optical else optical_pose_from_body_pose(T)
    try:
        validate_pose(T)
    except ValueError as exc:
        raise FrameError("bad_pose", f"camera pose: {exc}") from exc
    return T


def build_frame(rgb: np.ndarray, K: np.ndarray, info_hw: tuple[int, int], T_wc: np.ndarray, stamp: float, frame_id: str) -> Frame:
    """A `Frame` from a decoded image and its camera_info; FrameError('size_mismatch') if they disagree."""
    if rgb.shape[:2] != tuple(info_hw):
        raise FrameError("size_mismatch", f"image is {rgb.shape[1]}x{rgb.shape[0]} but camera_info says {info_hw[1]}x{info_hw[0]}")
    try:
        return Frame(rgb=rgb, K=K, T_wc=T_wc, stamp=stamp, frame_id=frame_id)
    except ValueError as exc:
        raise FrameError("bad_frame", str(exc)) from exc


def scale_intrinsics(K: np.ndarray, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> np.ndarray:
    """K (3, 3) float64 after resizing an image from src_hw to dst_hw (pixel centres at integers)."""
    return resize_intrinsics(torch.as_tensor(K, dtype=torch.float64), tuple(src_hw), tuple(dst_hw)).numpy()


def rpy_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """R = Rz(yaw) Ry(pitch) Rx(roll), the fixed-axis convention of tf2's Quaternion.setRPY."""
    cr, sr, cp, sp, cy, sy = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    Rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    Ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    Rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


def offset_transforms(flat: list[float]) -> list[np.ndarray]:
    """[x y z roll pitch yaw]*N -> N transforms T_live_virtual (4, 4)."""
    if len(flat) % 6:
        raise ValueError(f"virtual_offsets needs 6 numbers per view, got {len(flat)}")
    v = np.asarray(flat, dtype=np.float64).reshape(-1, 6)
    return [make_pose(rpy_matrix(*row[3:]), row[:3]) for row in v]


def pose_to_matrix(pose) -> np.ndarray:
    """(4, 4) from a geometry_msgs/Pose; ValueError for non-finite values or a zero quaternion."""
    p = (pose.position.x, pose.position.y, pose.position.z)
    if not np.isfinite(p).all():
        raise ValueError(f"position contains NaN or Inf: {p}")
    q = (pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w)
    return make_pose(quat_to_matrix(q), p)
