"""sensor_msgs/Image and CameraInfo <-> numpy, without cv_bridge.

Why our own and not cv_bridge (even on robots where it is installed): the node needs only
a handful of encodings, always as RGB uint8 or float32 metres, and cv_bridge would still
leave the colour-order, mono->RGB, millimetre->metre and padded-row handling to us. This
module does all of it in a few numpy lines, behaves identically on a robot and on a
wheels-only CI machine, and every branch is tested (test/test_ros_image_codec.py).

Decoding honours `step` (rows may be padded) and `is_bigendian` (for multi-byte pixels).
Errors are ValueError with the reason, which the node counts as a dropped frame.
"""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import CameraInfo, Image

# encoding -> (channels, dtype, channel order to take RGB from, or None for mono/depth)
_COLOR = {
    "rgb8": (3, np.uint8, (0, 1, 2)),
    "bgr8": (3, np.uint8, (2, 1, 0)),
    "rgba8": (4, np.uint8, (0, 1, 2)),
    "bgra8": (4, np.uint8, (2, 1, 0)),
    "mono8": (1, np.uint8, (0, 0, 0)),
}
_DEPTH = {
    "32FC1": (np.dtype(np.float32), 1.0),  # metres (REP 118)
    "16UC1": (np.dtype(np.uint16), 1e-3),  # millimetres (REP 118), 0 = invalid
}
COLOR_ENCODINGS = tuple(_COLOR)
DEPTH_ENCODINGS = tuple(_DEPTH)


def _pixels(msg: Image, channels: int, dtype: np.dtype) -> np.ndarray:
    """(H, W, C) view of msg.data in native byte order, dropping any row padding."""
    dtype = np.dtype(dtype)
    h, w = int(msg.height), int(msg.width)
    if h <= 0 or w <= 0:
        raise ValueError(f"image has no pixels ({h}x{w})")
    row_bytes = w * channels * dtype.itemsize
    if msg.step < row_bytes:
        raise ValueError(f"step {msg.step} is smaller than a {msg.encoding} row of width {w} ({row_bytes} bytes)")
    data = np.frombuffer(msg.data, dtype=np.uint8)  # rclpy stores uint8[] as array.array: zero-copy
    if data.size != msg.step * h:
        raise ValueError(f"data has {data.size} bytes, expected step*height = {msg.step}*{h} = {msg.step * h}")
    rows = data.reshape(h, msg.step)[:, :row_bytes]
    wire = dtype.newbyteorder(">" if msg.is_bigendian else "<") if dtype.itemsize > 1 else dtype
    return np.ascontiguousarray(rows).view(wire).reshape(h, w, channels).astype(dtype, copy=False)


def image_to_rgb(msg: Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB from an rgb8/bgr8/rgba8/bgra8/mono8 image (alpha dropped, mono repeated)."""
    if msg.encoding not in _COLOR:
        raise ValueError(f"unsupported colour encoding '{msg.encoding}' (supported: {', '.join(COLOR_ENCODINGS)})")
    channels, dtype, order = _COLOR[msg.encoding]
    px = _pixels(msg, channels, dtype)
    return np.ascontiguousarray(px[..., list(order)])


def image_to_depth(msg: Image) -> np.ndarray:
    """(H, W) float32 metres from a 32FC1 (m) or 16UC1 (mm) image; non-finite and <= 0 become 0 (invalid)."""
    if msg.encoding not in _DEPTH:
        raise ValueError(f"unsupported depth encoding '{msg.encoding}' (supported: {', '.join(DEPTH_ENCODINGS)})")
    dtype, scale = _DEPTH[msg.encoding]
    depth = _pixels(msg, 1, dtype)[..., 0].astype(np.float32) * np.float32(scale)
    depth[~np.isfinite(depth) | (depth < 0)] = 0.0
    return depth


def depth_to_image(depth: np.ndarray, header) -> Image:
    """32FC1 Image (metres, little endian, unpadded) of an (H, W) depth map, with the given header."""
    depth = np.ascontiguousarray(depth, dtype="<f4")
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got {depth.shape}")
    h, w = depth.shape
    return Image(header=header, height=h, width=w, encoding="32FC1", is_bigendian=False, step=w * 4, data=depth.tobytes())


def rgb_to_image(rgb: np.ndarray, header) -> Image:
    """rgb8 Image of an (H, W, 3) uint8 array, with the given header."""
    rgb = np.ascontiguousarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    h, w, _ = rgb.shape
    return Image(header=header, height=h, width=w, encoding="rgb8", is_bigendian=False, step=w * 3, data=rgb.tobytes())


def camera_info_to_K(msg: CameraInfo) -> tuple[np.ndarray, tuple[int, int]]:
    """(K (3, 3) float64, (height, width)) from a CameraInfo; ValueError if it is uncalibrated or invalid.

    Uses `k`, the intrinsics of the raw (distorted) image. The node assumes rectified or
    low-distortion input; distortion coefficients are ignored (documented in the README).
    """
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    h, w = int(msg.height), int(msg.width)
    if not np.any(K):
        raise ValueError("camera_info k is all zero (uncalibrated camera)")
    if not np.isfinite(K).all():
        raise ValueError("camera_info k contains NaN or Inf")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"camera_info focal lengths must be positive, got fx={K[0, 0]} fy={K[1, 1]}")
    if h <= 0 or w <= 0:
        raise ValueError(f"camera_info size must be positive, got {h}x{w}")
    return K, (h, w)


def make_camera_info(K: np.ndarray, hw: tuple[int, int], header) -> CameraInfo:
    """CameraInfo for a distortion-free pinhole camera K (3, 3) at image size hw = (H, W)."""
    K = np.asarray(K, dtype=np.float64)
    P = np.zeros((3, 4))
    P[:, :3] = K
    return CameraInfo(
        header=header,
        height=int(hw[0]),
        width=int(hw[1]),
        distortion_model="plumb_bob",
        d=[0.0] * 5,
        k=K.reshape(-1).tolist(),
        r=np.eye(3).reshape(-1).tolist(),
        p=P.reshape(-1).tolist(),
    )
