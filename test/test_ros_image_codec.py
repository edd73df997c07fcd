"""Image / CameraInfo conversion: every encoding, padded rows, endianness, and each error."""
import numpy as np
import pytest

pytest.importorskip("rclpy")
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from mvgd_ros.image_codec import (  # noqa: E402
    camera_info_to_K,
    depth_to_image,
    image_to_depth,
    image_to_rgb,
    make_camera_info,
    rgb_to_image,
)


def _msg(pixels: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Image:
    """Image of (H, W[, C]) pixels with `pad` junk bytes after every row."""
    h, w = pixels.shape[:2]
    arr = pixels.astype(pixels.dtype.newbyteorder(">" if bigendian else "<"))
    rows = arr.reshape(h, -1).view(np.uint8).reshape(h, -1)
    rows = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    return Image(height=h, width=w, encoding=encoding, is_bigendian=bigendian, step=rows.shape[1], data=rows.tobytes())


@pytest.fixture
def rgb(rng):
    return rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize("pad", [0, 3])
def test_colour_encodings_decode_to_rgb(rgb, pad):
    alpha = np.full((5, 7, 1), 9, np.uint8)
    cases = {
        "rgb8": rgb,
        "bgr8": rgb[..., ::-1],
        "rgba8": np.concatenate([rgb, alpha], -1),
        "bgra8": np.concatenate([rgb[..., ::-1], alpha], -1),
    }
    for enc, px in cases.items():
        np.testing.assert_array_equal(image_to_rgb(_msg(np.ascontiguousarray(px), enc, pad)), rgb, err_msg=enc)


def test_mono8_is_repeated_into_three_channels(rgb):
    gray = rgb[..., 0].copy()
    out = image_to_rgb(_msg(gray, "mono8", pad=1))
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("pad", [0, 2])
def test_depth_16uc1_millimetres_to_metres(rng, bigendian, pad):
    mm = rng.integers(0, 10000, (4, 6), dtype=np.uint16)
    out = image_to_depth(_msg(mm, "16UC1", pad, bigendian))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, mm.astype(np.float32) / 1000.0, rtol=1e-6)


@pytest.mark.parametrize("bigendian", [False, True])
def test_depth_32fc1_passthrough_and_invalids_zeroed(rng, bigendian):
    m = rng.uniform(0.5, 9.0, (4, 6)).astype(np.float32)
    m[0, 0], m[1, 1], m[2, 2] = np.nan, np.inf, -1.0
    out = image_to_depth(_msg(m, "32FC1", pad=4, bigendian=bigendian))
    assert out[0, 0] == 0 and out[1, 1] == 0 and out[2, 2] == 0
    keep = np.isfinite(m) & (m > 0)
    np.testing.assert_array_equal(out[keep], m[keep])


def test_encoders_round_trip(rng, rgb):
    header = Header(frame_id="cam_optical_frame")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    d = rng.uniform(0.1, 5.0, (5, 7)).astype(np.float32)
    dm = depth_to_image(d, header)
    assert (dm.encoding, dm.step, dm.header.frame_id, dm.header.stamp.nanosec) == ("32FC1", 28, "cam_optical_frame", 345)
    np.testing.assert_array_equal(image_to_depth(dm), d)
    rm = rgb_to_image(rgb, header)
    assert rm.encoding == "rgb8"
    np.testing.assert_array_equal(image_to_rgb(rm), rgb)


def test_unknown_encodings_are_value_errors(rgb):
    with pytest.raises(ValueError, match="unsupported colour encoding 'yuv422'"):
        image_to_rgb(Image(height=1, width=2, encoding="yuv422", step=4, data=bytes(4)))
    with pytest.raises(ValueError, match="unsupported depth encoding 'rgb8'"):
        image_to_depth(_msg(rgb, "rgb8"))


def test_size_mismatches_are_value_errors(rgb):
    good = _msg(rgb, "rgb8")
    short = Image(height=5, width=7, encoding="rgb8", step=21, data=bytes(good.data)[:-1])
    with pytest.raises(ValueError, match="expected step\\*height"):
        image_to_rgb(short)
    with pytest.raises(ValueError, match="step 20 is smaller"):
        image_to_rgb(Image(height=5, width=7, encoding="rgb8", step=20, data=bytes(100)))
    with pytest.raises(ValueError, match="no pixels"):
        image_to_rgb(Image(height=0, width=7, encoding="rgb8", step=21, data=b""))
    with pytest.raises(ValueError, match="must be"):
        rgb_to_image(rgb[..., 0], Header())
    with pytest.raises(ValueError, match="must be"):
        depth_to_image(np.zeros((2, 2, 1)), Header())


def test_camera_info_round_trip_and_validation():
    K = np.array([[50.0, 0, 15.5], [0, 52.0, 11.5], [0, 0, 1]])
    info = make_camera_info(K, (24, 32), Header(frame_id="cam"))
    K2, hw = camera_info_to_K(info)
    np.testing.assert_array_equal(K2, K)
    assert hw == (24, 32) and info.p[0] == 50.0 and info.p[3] == 0.0

    with pytest.raises(ValueError, match="all zero"):
        camera_info_to_K(CameraInfo(height=24, width=32))
    bad = make_camera_info(K, (24, 32), Header())
    bad.k[0] = -1.0
    with pytest.raises(ValueError, match="focal lengths"):
        camera_info_to_K(bad)
    bad.k[0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        camera_info_to_K(bad)
    with pytest.raises(ValueError, match="size"):
        camera_info_to_K(make_camera_info(K, (0, 32), Header()))
