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
    with pytest.raises(ValueError, match="unsupported colour encoding 'xyz16'"):
        image_to_rgb(Image(height=1, width=2, encoding="xyz16", step=4, data=bytes(4)))
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
    # issue 12: the full validation lives in camera_info_to_K itself, so every caller gets it
    bad = make_camera_info(K, (24, 32), Header())
    bad.k[2] = 1e39  # finite in float64, infinite in float32
    with pytest.raises(ValueError, match="float32"):
        camera_info_to_K(bad)
    bad = make_camera_info(K, (24, 32), Header())
    bad.k[8] = 0.0  # zero last row: every projection singular
    with pytest.raises(ValueError, match="last row"):
        camera_info_to_K(bad)


# --- more inputs robots have: 16-bit, Bayer, YUV 4:2:2, CompressedImage (jpeg/png) ------------

cv2 = pytest.importorskip("cv2")


def test_mono16_and_rgb16_keep_the_top_eight_bits(rng):
    v = rng.integers(0, 65536, (4, 6), dtype=np.uint16)
    out = image_to_rgb(_msg(v, "mono16", pad=2, bigendian=True))
    np.testing.assert_array_equal(out[..., 1], np.round(v / 257).astype(np.uint8))
    c = rng.integers(0, 65536, (4, 6, 3), dtype=np.uint16)
    np.testing.assert_array_equal(image_to_rgb(_msg(c[..., ::-1].copy(), "bgr16")), np.round(c / 257).astype(np.uint8))


def _mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """Sample an RGB image through a Bayer pattern named the ROS way (top-left 2x2, row major)."""
    idx = {"r": 0, "g": 1, "b": 2}
    out = np.zeros(rgb.shape[:2], rgb.dtype)
    for k, ch in enumerate(pattern):
        dy, dx = divmod(k, 2)
        out[dy::2, dx::2] = rgb[dy::2, dx::2, idx[ch]]
    return out


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_patterns_demosaic_to_the_right_colour(pattern):
    colour = np.array([200, 90, 30], np.uint8)  # distinct R, G, B: a swapped pattern shows
    rgb = np.broadcast_to(colour, (8, 10, 3)).copy()
    out = image_to_rgb(_msg(_mosaic(rgb, pattern), f"bayer_{pattern}8"))
    assert out.shape == (8, 10, 3)
    np.testing.assert_allclose(out[2:-2, 2:-2].reshape(-1, 3).mean(0), colour, atol=2)
    out16 = image_to_rgb(_msg(_mosaic(rgb.astype(np.uint16) * 257, pattern), f"bayer_{pattern}16"))
    np.testing.assert_allclose(out16[2:-2, 2:-2].reshape(-1, 3).mean(0), colour, atol=2)


@pytest.mark.parametrize("encoding, order", [("yuv422", "UYVY"), ("yuv422_yuy2", "YUY2")])
def test_yuv422_byte_orders(encoding, order):
    colour = np.array([60, 160, 220], np.uint8)
    rgb = np.broadcast_to(colour, (4, 6, 3)).copy()
    r, g, b = colour.astype(float)  # BT.601 video range, what camera drivers' YUV 4:2:2 carries
    y, u, v = (round(16 + 0.257 * r + 0.504 * g + 0.098 * b), round(128 - 0.148 * r - 0.291 * g + 0.439 * b),
               round(128 + 0.439 * r - 0.368 * g - 0.071 * b))
    pair = [u, y, v, y] if order == "UYVY" else [y, u, y, v]  # two pixels share U and V
    packed = np.tile(np.array(pair, np.uint8), (4, 3)).reshape(4, 6, 2)
    out = image_to_rgb(_msg(packed, encoding, pad=4))
    np.testing.assert_allclose(out.reshape(-1, 3).mean(0), colour, atol=6)
    with pytest.raises(ValueError, match="even width"):
        image_to_rgb(_msg(packed[:, :5], encoding))


def _compressed(img_bgr: np.ndarray, ext: str, fmt: str):
    from sensor_msgs.msg import CompressedImage

    ok, buf = cv2.imencode(ext, img_bgr)
    assert ok
    return CompressedImage(format=fmt, data=buf.tobytes())


def test_rgb_to_compressed_round_trips_through_decode(rgb):
    from mvgd_ros.image_codec import decode, rgb_to_compressed

    header = Header(frame_id="cam")
    png = rgb_to_compressed(rgb, header, "png")
    assert png.format == "rgb8; png compressed bgr8" and png.header.frame_id == "cam"
    np.testing.assert_array_equal(decode(png), rgb)  # lossless: colour order kept
    flat = np.broadcast_to(np.array([30, 120, 210], np.uint8), (16, 16, 3)).copy()
    np.testing.assert_allclose(decode(rgb_to_compressed(flat, header, "jpeg", 95)).reshape(-1, 3).mean(0), [30, 120, 210], atol=4)
    with pytest.raises(ValueError, match="quality"):
        rgb_to_compressed(rgb, header, "jpeg", 0)
    with pytest.raises(ValueError, match="uint8"):
        rgb_to_compressed(rgb.astype(np.float32), header)


def test_compressed_png_is_exact_and_jpeg_close(rgb):
    from mvgd_ros.image_codec import decode

    bgr = np.ascontiguousarray(rgb[..., ::-1])
    np.testing.assert_array_equal(decode(_compressed(bgr, ".png", "bgr8; png compressed bgr8")), rgb)
    flat = np.broadcast_to(np.array([30, 120, 210], np.uint8), (16, 16, 3)).copy()
    out = decode(_compressed(np.ascontiguousarray(flat[..., ::-1]), ".jpg", "rgb8; jpeg compressed bgr8"))
    np.testing.assert_allclose(out.reshape(-1, 3).mean(0), [30, 120, 210], atol=4)  # colour order right, not swapped
    gray16 = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000)
    out = decode(_compressed(gray16, ".png", "mono16; png compressed mono16"))
    np.testing.assert_array_equal(out[..., 0], np.round(gray16 / 257).astype(np.uint8))
    assert image_to_rgb(_compressed(bgr, ".png", "png")).shape == rgb.shape  # the same entry point


def test_compressed_errors_are_value_errors():
    from sensor_msgs.msg import CompressedImage

    from mvgd_ros.image_codec import decode

    with pytest.raises(ValueError, match="cannot decode"):
        decode(CompressedImage(format="jpeg", data=b"not a jpeg"))
    with pytest.raises(ValueError, match="unsupported compressed format"):
        decode(CompressedImage(format="theora", data=b"x"))
    with pytest.raises(ValueError, match="depth transport"):
        decode(CompressedImage(format="16UC1; compressedDepth png", data=b"x"))


def test_depth_out_nan_invalid_and_16uc1_millimetres():
    d = np.array([[1.0, np.nan], [0.0, 70.0]], np.float32)
    m = depth_to_image(d, Header())
    raw = np.frombuffer(bytes(m.data), "<f4").reshape(2, 2)
    assert raw[0, 0] == 1.0 and np.isnan(raw[0, 1]) and np.isnan(raw[1, 0]) and raw[1, 1] == 70.0  # REP 118: NaN, never 0
    m16 = depth_to_image(np.array([[1.2344, np.nan], [0.0, 70.0]], np.float32), Header(), encoding="16UC1")
    assert (m16.encoding, m16.step) == ("16UC1", 4)
    np.testing.assert_array_equal(np.frombuffer(bytes(m16.data), "<u2").reshape(2, 2), [[1234, 0], [0, 0]])  # 70 m > 65.535 m: invalid
    with pytest.raises(ValueError, match="32FC1 or 16UC1"):
        depth_to_image(d, Header(), encoding="mono8")


def test_rectified_info_uses_p_and_distortion_is_detected():
    from mvgd_ros.image_codec import has_distortion, rectified_info

    K = np.array([[50.0, 0, 15.5], [0, 52.0, 11.5], [0, 0, 1]])
    info = make_camera_info(K, (24, 32), Header())
    assert not has_distortion(info)
    info.d = [0.1, -0.02, 0.0, 0.0, 0.0]
    info.p = [40.0, 0.0, 16.0, 0.0, 0.0, 41.0, 12.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert has_distortion(info)
    K2, hw = camera_info_to_K(rectified_info(info))
    np.testing.assert_array_equal(K2, [[40, 0, 16], [0, 41, 12], [0, 0, 1]])
    assert hw == (24, 32) and not has_distortion(rectified_info(info))
    info.p = [0.0] * 12
    with pytest.raises(ValueError, match="p is all zero"):
        rectified_info(info)
