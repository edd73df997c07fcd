"""sensor_msgs/Image and CameraInfo <-> numpy, without cv_bridge.

Why our own and not cv_bridge (even on robots where it is installed): the node needs only
a handful of encodings, always as RGB uint8 or float32 metres, and cv_bridge would still
leave the colour-order, mono->RGB, millimetre->metre and padded-row handling to us. This
module does all of it in a few numpy lines, behaves identically on a robot and on a
wheels-only CI machine, and every branch is tested (test/test_ros_image_codec.py).

Decoding honours `step` (rows may be padded) and `is_bigendian` (for multi-byte pixels).
Errors are ValueError with the reason, which the node counts as a dropped frame.

`decode(msg)` is the one entry point for camera input: a sensor_msgs/Image in any encoding
below, or a sensor_msgs/CompressedImage (jpeg/png, what image_transport's `compressed` plugin
publishes on `<image>/compressed`). Bayer and YUV 4:2:2 go through OpenCV (demosaicing and
colour conversion, the same calls cv_bridge makes); 16-bit inputs keep their top 8 bits.
"""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from mvgd_ros.sanity import checked_intrinsics

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
_COLOR16 = {  # 16-bit colour/mono: scaled to 8 bits (x / 257 maps 65535 to 255 exactly)
    "mono16": (1, (0, 0, 0)),
    "rgb16": (3, (0, 1, 2)),
    "bgr16": (3, (2, 1, 0)),
    "rgba16": (4, (0, 1, 2)),
    "bgra16": (4, (2, 1, 0)),
}
# ROS names the 2x2 pattern from the top-left pixel; OpenCV from the second row's second and
# third pixel, so ROS rggb is OpenCV's BG (cv_bridge's getConversionCode makes the same mapping).
_BAYER = {"rggb": "BG", "bggr": "RG", "gbrg": "GR", "grbg": "GB"}
_YUV422 = {"yuv422": "UYVY", "uyvy": "UYVY", "yuv422_yuy2": "YUY2", "yuyv": "YUY2"}  # ROS: yuv422 = UYVY byte order
COLOR_ENCODINGS = tuple(_COLOR) + tuple(_COLOR16) + tuple(f"bayer_{b}{n}" for b in _BAYER for n in (8, 16)) + tuple(_YUV422)
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


def decode(msg) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a sensor_msgs/Image or CompressedImage; ValueError with the reason."""
    if isinstance(msg, CompressedImage):
        return compressed_to_rgb(msg)
    return image_to_rgb(msg)


def image_to_rgb(msg) -> np.ndarray:
    """(H, W, 3) uint8 RGB from an Image in any of COLOR_ENCODINGS (alpha dropped, mono repeated).

    A CompressedImage is accepted too (same as `decode`)."""
    if isinstance(msg, CompressedImage):
        return compressed_to_rgb(msg)
    enc = msg.encoding
    if enc in _COLOR:
        channels, dtype, order = _COLOR[enc]
        return np.ascontiguousarray(_pixels(msg, channels, dtype)[..., list(order)])
    if enc in _COLOR16:
        channels, order = _COLOR16[enc]
        px = _pixels(msg, channels, np.uint16)[..., list(order)]
        return _to_uint8(px)
    if enc.startswith("bayer_") and enc[6:10] in _BAYER and enc[10:] in ("8", "16"):
        cv2 = _cv2()
        px = _pixels(msg, 1, np.uint8 if enc.endswith("8") else np.uint16)[..., 0]
        rgb = cv2.cvtColor(np.ascontiguousarray(px), getattr(cv2, f"COLOR_Bayer{_BAYER[enc[6:10]]}2RGB"))
        return _to_uint8(rgb)
    if enc in _YUV422:
        cv2 = _cv2()
        if msg.width % 2:
            raise ValueError(f"{enc} needs an even width, got {msg.width}")
        px = _pixels(msg, 2, np.uint8)
        return cv2.cvtColor(np.ascontiguousarray(px), getattr(cv2, f"COLOR_YUV2RGB_{_YUV422[enc]}"))
    raise ValueError(f"unsupported colour encoding '{enc}' (supported: {', '.join(COLOR_ENCODINGS)})")


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a jpeg/png CompressedImage (image_transport `compressed` format strings
    such as "bgr8; jpeg compressed bgr8", or plain "jpeg"/"png"). OpenCV decodes colour to BGR."""
    fmt = msg.format.lower()
    if "compresseddepth" in fmt.replace(" ", ""):
        raise ValueError(f"'{msg.format}' is a depth transport, not a colour image")
    if fmt and not any(k in fmt for k in ("jpeg", "jpg", "png")):
        raise ValueError(f"unsupported compressed format '{msg.format}' (supported: jpeg, png)")
    cv2 = _cv2()
    buf = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    if img is None:
        raise ValueError(f"cannot decode compressed image ({msg.format or 'no format'}, {buf.size} bytes)")
    if img.ndim == 2:
        img = img[..., None].repeat(3, axis=2)
    elif img.shape[2] == 4:
        img = img[..., [2, 1, 0]]
    else:
        img = img[..., ::-1]
    return _to_uint8(np.ascontiguousarray(img))


def _to_uint8(px: np.ndarray) -> np.ndarray:
    if px.dtype == np.uint16:
        px = (px.astype(np.uint32) + 128) // 257
    return np.ascontiguousarray(px, dtype=np.uint8)


def _cv2():
    try:
        import cv2
    except ImportError as exc:  # opencv is an extra on robots (python3-opencv); see README
        raise ValueError("decoding this encoding needs OpenCV: install python3-opencv or opencv-python-headless") from exc
    return cv2


def image_to_depth(msg: Image) -> np.ndarray:
    """(H, W) float32 metres from a 32FC1 (m) or 16UC1 (mm) image; non-finite and <= 0 become 0 (invalid)."""
    if msg.encoding not in _DEPTH:
        raise ValueError(f"unsupported depth encoding '{msg.encoding}' (supported: {', '.join(DEPTH_ENCODINGS)})")
    dtype, scale = _DEPTH[msg.encoding]
    depth = _pixels(msg, 1, dtype)[..., 0].astype(np.float32) * np.float32(scale)
    depth[~np.isfinite(depth) | (depth < 0)] = 0.0
    return depth


def depth_to_image(depth: np.ndarray, header, encoding: str = "32FC1") -> Image:
    """Depth Image (little endian, unpadded) of an (H, W) map in metres, with the given header (REP 118).

    32FC1: metres, every invalid pixel (NaN, Inf, <= 0) is NaN, so depth_image_proc and RViz skip
    it (a 0 would be a point at the camera). 16UC1: millimetres, invalid or beyond 65.535 m is 0.
    """
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got {depth.shape}")
    h, w = depth.shape
    valid = np.isfinite(depth) & (depth > 0)
    if encoding == "32FC1":
        out = np.where(valid, depth, np.float32(np.nan)).astype("<f4")
        return Image(header=header, height=h, width=w, encoding="32FC1", is_bigendian=False, step=w * 4, data=out.tobytes())
    if encoding == "16UC1":
        mm = np.round(np.where(valid, depth, 0.0).astype(np.float64) * 1000.0)
        mm[(mm > 65535) | (mm < 0)] = 0
        out = mm.astype("<u2")
        return Image(header=header, height=h, width=w, encoding="16UC1", is_bigendian=False, step=w * 2, data=out.tobytes())
    raise ValueError(f"depth encoding must be 32FC1 or 16UC1, got {encoding!r}")


def float_to_image(values: np.ndarray, header) -> Image:
    """32FC1 Image of any (H, W) float map (e.g. confidence 0..1), values as they are."""
    values = np.ascontiguousarray(values, dtype="<f4")
    if values.ndim != 2:
        raise ValueError(f"map must be (H, W), got {values.shape}")
    h, w = values.shape
    return Image(header=header, height=h, width=w, encoding="32FC1", is_bigendian=False, step=w * 4, data=values.tobytes())


def rgb_to_image(rgb: np.ndarray, header) -> Image:
    """rgb8 Image of an (H, W, 3) uint8 array, with the given header."""
    rgb = np.ascontiguousarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    h, w, _ = rgb.shape
    return Image(header=header, height=h, width=w, encoding="rgb8", is_bigendian=False, step=w * 3, data=rgb.tobytes())


def rgb_to_compressed(rgb: np.ndarray, header, fmt: str = "jpeg", quality: int = 90) -> CompressedImage:
    """CompressedImage of an (H, W, 3) uint8 RGB array as image_transport's `compressed` plugin sends it
    (format "rgb8; jpeg compressed bgr8": OpenCV encodes BGR); fmt "jpeg" (quality 1-100) or "png"."""
    rgb = np.ascontiguousarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    if fmt not in ("jpeg", "png") or not 1 <= int(quality) <= 100:
        raise ValueError(f"fmt must be 'jpeg' or 'png' and quality 1-100, got {fmt!r}, {quality}")
    cv2 = _cv2()
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpeg" else []
    ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", np.ascontiguousarray(rgb[..., ::-1]), params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {rgb.shape} image as {fmt}")
    return CompressedImage(header=header, format=f"rgb8; {fmt} compressed bgr8", data=buf.tobytes())


def camera_info_to_K(msg: CameraInfo) -> tuple[np.ndarray, tuple[int, int]]:
    """(K (3, 3) float64, (height, width)) from a CameraInfo; ValueError if it is uncalibrated or invalid.

    Validated fully (`sanity.checked_intrinsics`). Uses `k`, the intrinsics of the raw image;
    distortion coefficients are not applied. For rectified input the node passes
    `rectified_info(msg)` (k from P); for raw input with distortion it warns once (docs/ROS_NODE.md).
    """
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if not np.any(K):
        raise ValueError("camera_info k is all zero (uncalibrated camera)")
    # The full check (finite in float32, fx, fy > 0, last row 0 0 1, size > 0) lives in one place
    # so that every caller (node, eval, player) gets it.
    return checked_intrinsics(K, (int(msg.height), int(msg.width)))


def has_distortion(msg: CameraInfo) -> bool:
    """Whether a CameraInfo has any non-zero distortion coefficient."""
    return any(abs(float(x)) > 1e-12 for x in msg.d)


def rectified_info(msg: CameraInfo) -> CameraInfo:
    """The CameraInfo of the rectified image: k = P[:, :3], no distortion (image_proc's image_rect
    is in P's pinhole camera). ValueError if P is all zero (uncalibrated)."""
    P = np.asarray(msg.p, dtype=np.float64).reshape(3, 4)
    if not np.any(P[:, :3]):
        raise ValueError("camera_info p is all zero: cannot use rectified intrinsics")
    return CameraInfo(header=msg.header, height=msg.height, width=msg.width, distortion_model=msg.distortion_model,
                      d=[0.0] * len(msg.d), k=P[:, :3].reshape(-1).tolist(), r=np.eye(3).reshape(-1).tolist(), p=list(msg.p),
                      binning_x=msg.binning_x, binning_y=msg.binning_y, roi=msg.roi)


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
