"""Raw camera input with lens distortion -> the pinhole camera the node works in (image_proc's rectify).

A driver's `image_raw` comes with a CameraInfo whose `d` is the lens distortion; every geometric
step of the model assumes a pinhole camera, and on real lenses distortion moves points by as much
as the parallax the model matches. With `undistort: true` (default) the node rectifies like
image_proc's RectifyNode: each raw image is remapped into the pinhole camera P[:, :3] (K when P
is empty, as from some drivers), rotated by R (identity for a monocular camera), and the node
uses that camera's intrinsics. The map is built once per distinct CameraInfo (cached on its
calibration), so the per-image cost is one OpenCV remap.

Models: plumb_bob, rational_polynomial, equidistant (mvgd_core/distortion.py). Another model,
or `undistort: false`, keeps the old behaviour: the raw image is used as a pinhole image with K,
with a one-time warning naming what is wrong.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from sensor_msgs.msg import CameraInfo

from mvgd_core.distortion import COEFFICIENTS, LensDistortion, camera_info_rectification, remap
from mvgd_ros import image_codec
from mvgd_ros.sanity import checked_intrinsics


class InputCamera(NamedTuple):
    """K (3, 3) and hw = (H, W) of the images the node builds frames from; pixel_map (H, W, 2)
    float32 raw pixel per output pixel when the node rectifies them, else None."""

    K: np.ndarray
    hw: tuple[int, int]
    pixel_map: np.ndarray | None = None


class Rectifier:
    """Turns each CameraInfo into an InputCamera; keeps the last map (calibrations rarely change)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._key: tuple | None = None
        self._value: InputCamera | None = None

    def camera(self, msg: CameraInfo) -> tuple[InputCamera, str | None]:
        """(camera, problem): problem is a sentence for a one-time warning (distortion left in
        the image), else None. ValueError for an invalid CameraInfo (uncalibrated, bad K or P)."""
        K, hw = image_codec.camera_info_to_K(msg)
        if not image_codec.has_distortion(msg):
            return InputCamera(K, hw), None
        model, d = msg.distortion_model, tuple(float(x) for x in msg.d)
        if not self.enabled:
            return InputCamera(K, hw), (f"camera_info has non-zero distortion ({model}, d={[round(x, 4) for x in d]}) and undistort is off: "
                                        "the image is used as a pinhole image with k; set undistort:=true or feed image_proc's image_rect with rectified:=true")
        try:
            lens = LensDistortion(model, d)
        except ValueError as exc:
            return InputCamera(K, hw), (f"cannot undistort: {exc}; the image is used as a pinhole image with k "
                                        f"(supported: {', '.join(sorted(COEFFICIENTS))}; or feed image_proc's image_rect with rectified:=true)")
        key = (model, d, tuple(msg.k), tuple(msg.r), tuple(msg.p), hw)
        if key != self._key:
            K_rect, pixel_map = camera_info_rectification(K, lens, hw, msg.r, msg.p)
            self._key, self._value = key, InputCamera(checked_intrinsics(K_rect, hw)[0], hw, pixel_map)  # P validated like k
        return self._value, None


def apply(rgb: np.ndarray, camera: InputCamera) -> np.ndarray:
    """The raw image (H, W, 3) uint8 in the camera's rectified pinhole geometry (bilinear; 0 outside).
    An image whose size disagrees with camera_info is returned as it is: build_frame drops it
    with the reason size_mismatch."""
    if camera.pixel_map is None or rgb.shape[:2] != tuple(camera.hw):
        return rgb
    try:
        import cv2
    except ImportError:  # OpenCV is optional on robots (python3-opencv); torch gives the same image, slower
        return remap(rgb, camera.pixel_map)
    m = camera.pixel_map
    return cv2.remap(np.ascontiguousarray(rgb), m[..., 0], m[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
