"""Pure helpers between ROS inputs and `Frame`s: frame conventions, poses, intrinsics.

The one place where REP 103 body frames become OpenCV optical frames (ARCHITECTURE.md).
No subscriptions or node state here, so every rule is unit-tested without DDS.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mvgd_core.cameras import R_BODY_OPTICAL, make_pose, matrix_to_quat, optical_pose_from_body_pose, quat_to_matrix, resize_intrinsics, validate_pose
from mvgd_core.data.types import Frame

OPTICAL_SUFFIXES = ("_optical_frame", "_optical")
OPTICAL_CHILD_SUFFIX = "_mvgd_optical"  # the optical child the node latches for a body camera frame


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


@dataclass
class StampedFrame(Frame):
    """A Frame that also keeps its exact header stamp (integer ns) for TF lookups: float seconds
    near 1.7e9 are only good to ~0.2 us."""

    stamp_ns: int = 0


def build_frame(rgb: np.ndarray, K: np.ndarray, info_hw: tuple[int, int], T_wc: np.ndarray, stamp: float, frame_id: str,
                stamp_ns: int | None = None) -> Frame:
    """A `Frame` (a StampedFrame with `stamp_ns`) from a decoded image and its camera_info;
    FrameError('size_mismatch') if they disagree."""
    if rgb.shape[:2] != tuple(info_hw):
        raise FrameError("size_mismatch", f"image is {rgb.shape[1]}x{rgb.shape[0]} but camera_info says {info_hw[1]}x{info_hw[0]}")
    try:
        if stamp_ns is not None:
            return StampedFrame(rgb=rgb, K=K, T_wc=T_wc, stamp=stamp, frame_id=frame_id, stamp_ns=int(stamp_ns))
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


def fill_pose(pose, T: np.ndarray):
    """Write T (4, 4) into a geometry_msgs/Pose (the inverse of `pose_to_matrix`); returns `pose`."""
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in T[:3, 3])
    q = matrix_to_quat(np.asarray(T)[:3, :3])
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (float(v) for v in q)
    return pose


def optical_output_frame(frame_id: str, convention: str) -> tuple[str, np.ndarray | None]:
    """(frame to stamp outputs with, T_frame_optical (4, 4) to latch on /tf_static or None).

    Outputs are optical data, so REP 103 wants them in an optical frame: an optical input frame is
    used as it is; for a body frame (x forward, z up) the node adds the child
    `<frame_id>_mvgd_optical` with the fixed body -> optical rotation (what camera drivers publish
    as `*_optical_frame`).
    """
    if is_optical(frame_id, convention):
        return frame_id, None
    return frame_id + OPTICAL_CHILD_SUFFIX, make_pose(R_BODY_OPTICAL, [0.0, 0.0, 0.0])


def virtual_frame_name(frame_id: str, i: int) -> str:
    """TF name of the i-th `virtual_offsets` camera of camera `frame_id` (child of its optical frame)."""
    return f"{frame_id}_mvgd_virtual_{i}"


def target_optical_pose(T_parent_pose: np.ndarray, convention: str) -> np.ndarray:
    """The optical camera pose (4, 4) for a target PoseStamped read as `convention` ('optical' or 'body':
    x forward as RViz's 2D Goal Pose gives it)."""
    if convention not in ("optical", "body"):
        raise ValueError(f"target pose convention must be optical or body, got {convention!r}")
    return T_parent_pose if convention == "optical" else optical_pose_from_body_pose(T_parent_pose)


def output_size(resolution, model_hw: tuple[int, int], input_hw: tuple[int, int]) -> tuple[int, int]:
    """Output (H, W): `resolution` when set, else the model's height at the input's aspect ratio."""
    if resolution[0] > 0:
        return int(resolution[0]), int(resolution[1])
    h = int(model_hw[0])
    return h, max(1, int(round(h * input_hw[1] / input_hw[0])))
