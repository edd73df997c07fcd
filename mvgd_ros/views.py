"""What the inference worker renders (`Job` of `View`s) and the cameras besides the live one:
virtual views of a live frame and the view a mvgd/target_pose request asks for. No node state.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from std_msgs.msg import Header

from mvgd_core.data.types import Frame
from mvgd_ros.frames import camera_pose, pose_to_matrix, target_optical_pose, virtual_frame_name
from mvgd_ros.tf import stamp_to_ns


@dataclass
class View:
    """One camera to render: pose T_wc (4, 4), intrinsics K (3, 3) at output size hw, header for the outputs."""

    T_wc: np.ndarray
    K: np.ndarray
    header: Header
    hw: tuple[int, int]  # output (H, W) that K is for


@dataclass
class Job:
    """What the worker does for one live frame or one target pose."""

    cond: list[Frame]
    live: Frame | None = None  # the live frame of depth_view: its depth is kept for virtual views (render.ViewDepths)
    depth_view: View | None = None  # the live camera (mvgd/depth/*, mvgd/points)
    publish_depth: bool = True  # False: depth_view's depth is only kept for fusing into virtual views
    rgb_views: list[View] = field(default_factory=list)  # virtual cameras (mvgd/rgb/*)
    rgb_depth: bool = False  # also depth at the virtual cameras (mvgd/rgb/depth/*)
    points: bool = False


def offset_views(frame: Frame, offsets: list[np.ndarray], K: np.ndarray, header: Header, hw: tuple[int, int]) -> list[View]:
    """Views at the `virtual_offsets` T_live_virtual (4, 4) of the live camera, stamped like `header`
    in their latched frames (mvgd_ros/static_frames.py)."""
    return [View(frame.T_wc @ T, K, Header(stamp=header.stamp, frame_id=virtual_frame_name(frame.frame_id, i)), hw)
            for i, T in enumerate(offsets)]


def target_pose(msg, convention: str, fixed_frame: str, lookup_ns: Callable) -> tuple[str, np.ndarray, np.ndarray]:
    """(parent frame, T_parent_cam, T_wc) (4, 4) optical for a geometry_msgs/PoseStamped.

    The pose is in msg's frame_id (empty: `fixed_frame`) at its stamp (0: latest TF), read as an
    optical pose or, with convention 'body', x forward (RViz's 2D Goal Pose). `lookup_ns(target,
    source, stamp_ns)` is the TF lookup (integer ns, exact). ValueError / TfLookupError."""
    stamp_ns = stamp_to_ns(msg.header.stamp)
    parent = msg.header.frame_id or fixed_frame
    T_parent_cam = target_optical_pose(pose_to_matrix(msg.pose), convention)
    T_fixed_parent = np.eye(4) if parent == fixed_frame else lookup_ns(fixed_frame, parent, stamp_ns or None)
    return parent, T_parent_cam, camera_pose(T_fixed_parent @ T_parent_cam, optical=True)
