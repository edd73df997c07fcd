"""Lens distortion and rectification (mvgd_core/distortion.py), checked against OpenCV, and the
readers that use it (TUM images, bags whose camera_info carries distortion)."""
from __future__ import annotations

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from mvgd_core.distortion import LensDistortion, rectify_map, remap  # noqa: E402

K = np.array([[100.0, 0.0, 63.2], [0.0, 98.0, 49.1], [0.0, 0.0, 1.0]])
HW = (96, 128)
K_NEW = np.array([[90.0, 0.0, 64.0], [0.0, 90.0, 48.0], [0.0, 0.0, 1.0]])
R = cv2.Rodrigues(np.array([0.02, -0.03, 0.01]))[0]


@pytest.mark.parametrize("model, coeffs", [
    ("plumb_bob", (0.2624, -0.9531, -0.0054, 0.0026, 1.1633)),  # TUM fr1
    ("plumb_bob", (-0.3, 0.1, 0.001, -0.002)),  # 4 coefficients
    ("rational_polynomial", (0.5, -0.1, 0.001, 0.002, 0.01, 0.8, 0.05, 0.01)),
])
def test_rectify_map_matches_opencv(model, coeffs):
    ours = rectify_map(K, LensDistortion(model, coeffs), HW, K_NEW, R)
    mx, my = cv2.initUndistortRectifyMap(K, np.array(coeffs), R, K_NEW, HW[::-1], cv2.CV_32FC1)
    np.testing.assert_allclose(ours[..., 0], mx, atol=2e-3)
    np.testing.assert_allclose(ours[..., 1], my, atol=2e-3)


def test_equidistant_matches_opencv_fisheye():
    coeffs = (0.05, -0.01, 0.003, -0.001)
    ours = rectify_map(K, LensDistortion("equidistant", coeffs), HW, K_NEW, R)
    mx, my = cv2.fisheye.initUndistortRectifyMap(K, np.array(coeffs), R, K_NEW, HW[::-1], cv2.CV_32FC1)
    np.testing.assert_allclose(ours[..., 0], mx, atol=2e-3)
    np.testing.assert_allclose(ours[..., 1], my, atol=2e-3)


def test_rectifying_a_distorted_image_gives_back_the_pinhole_image():
    """Render a pinhole image, distort it with a known lens (OpenCV's point model), rectify it
    back: equal to the original inside the border, and far from it without rectification."""
    rng = np.random.default_rng(0)
    pinhole = cv2.GaussianBlur(rng.integers(0, 255, (*HW, 3), dtype=np.uint8), (0, 0), 1.5)
    lens = LensDistortion("plumb_bob", (-0.35, 0.12, 0.0, 0.0, 0.0))
    # raw pixel -> where it is in the pinhole image (undistortPoints), sampled there
    v, u = np.mgrid[0 : HW[0], 0 : HW[1]].astype(np.float64)
    pts = cv2.undistortPoints(np.stack([u, v], -1).reshape(-1, 1, 2), K, np.array(lens.coeffs), P=K).reshape(*HW, 2).astype(np.float32)
    raw = remap(pinhole, pts)
    back = remap(raw, rectify_map(K, lens, HW))
    inner = (slice(12, -12), slice(16, -16))
    err_back = np.abs(back[inner].astype(float) - pinhole[inner]).mean()
    err_raw = np.abs(raw[inner].astype(float) - pinhole[inner]).mean()
    assert err_back < 3.0 and err_raw > 4 * err_back, (err_back, err_raw)


def test_remap_keeps_dtype_and_nearest_keeps_depth_values():
    depth = np.zeros(HW, np.float32)
    depth[:, 64:] = 2.0
    depth[:, :64] = 1.0
    out = remap(depth, rectify_map(K, LensDistortion("plumb_bob", (0.2, 0.0, 0.0, 0.0, 0.0)), HW), nearest=True)
    assert out.dtype == np.float32 and set(np.unique(out)) <= {0.0, 1.0, 2.0}  # no blends across the edge
    assert remap(np.zeros((*HW, 3), np.uint8), rectify_map(K, LensDistortion("plumb_bob", (0.1, 0, 0, 0, 0)), HW)).dtype == np.uint8


def test_lens_distortion_refuses_bad_input():
    with pytest.raises(ValueError, match="unsupported distortion model"):
        LensDistortion("kannala_brandt", (0.0,) * 4)
    with pytest.raises(ValueError, match="coefficients"):
        LensDistortion("rational_polynomial", (0.1,) * 5)
    with pytest.raises(ValueError, match="finite"):
        LensDistortion("plumb_bob", (float("nan"), 0, 0, 0, 0))
    assert LensDistortion("plumb_bob", (0.0,) * 5).is_identity


def test_tum_reader_undistorts_with_the_published_coefficients():
    from pathlib import Path

    from mvgd_core.data.tum import TUM_DISTORTION, read_tum

    path = Path(__file__).resolve().parents[1] / "data" / "tum_fr1_rpy_small"
    raw = read_tum(path, associations="associations_every12.txt", undistort=False)[:2]
    rect = read_tum(path, associations="associations_every12.txt")[:2]
    np.testing.assert_array_equal(raw[0].K, rect[0].K)  # undistorted into the same pinhole K
    expected = remap(raw[0].rgb, rectify_map(raw[0].K, LensDistortion("plumb_bob", TUM_DISTORTION["fr1"]), raw[0].rgb.shape[:2]))
    np.testing.assert_array_equal(rect[0].rgb, expected)
    assert not np.array_equal(rect[0].rgb, raw[0].rgb)
    assert set(np.unique(rect[0].depth)) <= set(np.unique(raw[0].depth))  # nearest: only depths the sensor measured


def test_bag_with_distortion_is_read_rectified_into_p(tmp_path):
    from mvgd_core.data.render import render_sequence
    from mvgd_core.data.rosbag_io import read_bag, write_bag

    frames = render_sequence(3, 3, 48, 64)
    lens = LensDistortion("plumb_bob", (-0.2, 0.05, 0.0, 0.0, 0.0))
    bag = write_bag(frames, tmp_path / "b", distortion=lens, stamp_offset=100.0)
    raw = read_bag(bag, undistort=False)
    rect = read_bag(bag)
    np.testing.assert_array_equal(raw[0].rgb, frames[0].rgb)
    expected = remap(frames[0].rgb, rectify_map(frames[0].K, lens, (48, 64)))
    np.testing.assert_array_equal(rect[0].rgb, expected)
    np.testing.assert_allclose(rect[0].K, frames[0].K)  # P = K in bags we write
    assert (rect[0].depth == 0).sum() >= (raw[0].depth == 0).sum()

    fisheye = write_bag(frames, tmp_path / "c", distortion=LensDistortion("equidistant", (0.1, 0, 0, 0)), stamp_offset=100.0)
    assert read_bag(fisheye)[0].rgb.shape == (48, 64, 3)  # equidistant is supported too
