"""rosbag2 writer/reader: round trips (sqlite3, mcap, both depth encodings), TF, encodings, errors, shipped bags."""
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Writer

from mvgd_core.data.render import render_sequence
from mvgd_core.data.rosbag_io import BagError, BagLayout, _image_msg, decode_image, read_bag, typestore, write_bag

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def frames():
    return render_sequence(4, 4, 12, 16, trajectory="handheld")


@pytest.mark.parametrize("storage, enc", [("sqlite3", "32FC1"), ("mcap", "16UC1")])
def test_round_trip_gives_the_same_frames(tmp_path, frames, storage, enc):
    write_bag(frames, tmp_path / "bag", storage=storage, depth_encoding=enc, stamp_offset=1000.0)
    report = {}
    back = read_bag(tmp_path / "bag", report=report)
    assert report == {"images": 4, "read": 4, "no_tf": 0, "no_depth": 0}
    for a, b in zip(frames, back):
        assert np.array_equal(a.rgb, b.rgb)
        np.testing.assert_allclose(b.K, a.K)
        np.testing.assert_allclose(b.T_wc, a.T_wc, atol=1e-9)
        assert abs(b.stamp - (a.stamp + 1000.0)) < 1e-6 and b.frame_id == "camera_color_optical_frame"
        assert np.abs(b.depth - a.depth).max() <= (0 if enc == "32FC1" else 0.0005 + 1e-6)


def test_custom_layout_and_fixed_frames(tmp_path, frames):
    L = BagLayout(rgb_topic="/cam/rgb", depth_topic="/cam/depth", info_topic="/cam/info", optical_frame="cam_optical", mount_xyz=(0.0, 0.2, 1.0))
    write_bag(frames, tmp_path / "bag", layout=L, stamp_offset=5.0)
    back = read_bag(tmp_path / "bag", rgb_topic="/cam/rgb", depth_topic=None, info_topic="/cam/info", fixed_frame="odom")
    np.testing.assert_allclose(back[2].T_wc, frames[2].T_wc, atol=1e-9)  # map == odom in written bags
    assert back[0].depth is None and back[0].frame_id == "cam_optical"
    base = read_bag(tmp_path / "bag", rgb_topic="/cam/rgb", depth_topic="", info_topic="/cam/info", fixed_frame="base_link")
    # in base_link the camera sits at the fixed mount, whatever the trajectory
    for f in base:
        np.testing.assert_allclose(f.T_wc[:3, 3], [0.0, 0.2, 1.0], atol=1e-9)


@pytest.mark.parametrize("enc", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_decode_colour_encodings_with_row_padding(enc):
    ts = typestore()
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (3, 5, 3), dtype=np.uint8)
    arr = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "rgba8": np.dstack([rgb, np.full((3, 5), 7, np.uint8)]),
           "bgra8": np.dstack([rgb[..., ::-1], np.full((3, 5), 7, np.uint8)]), "mono8": rgb[..., 0]}[enc]  # fmt: skip
    msg = _image_msg(ts, 1.0, "f", arr, enc)
    padded = np.concatenate([msg.data.reshape(3, -1), np.zeros((3, 3), np.uint8)], 1).reshape(-1)  # 3 bytes of padding per row
    msg = ts.types["sensor_msgs/msg/Image"](header=msg.header, height=3, width=5, encoding=enc, is_bigendian=0, step=msg.step + 3, data=padded)
    out, kind = decode_image(msg)
    assert kind == "rgb" and out.shape == (3, 5, 3)
    expected = np.repeat(rgb[..., :1], 3, axis=2) if enc == "mono8" else rgb
    assert np.array_equal(out, expected)


def _raw_image(enc, h, w, step, data, bigendian=0):
    ts = typestore()
    header = _image_msg(ts, 1.0, "f", np.zeros((1, 1, 3), np.uint8), "rgb8").header
    return ts.types["sensor_msgs/msg/Image"](header=header, height=h, width=w, encoding=enc, is_bigendian=bigendian, step=step, data=data)


def test_decode_depth_encodings_and_unknown():
    d = np.array([[1.5, np.nan], [0.0, 2.25]], np.float32)
    big = np.ascontiguousarray(d.astype(">f4")).view(np.uint8).reshape(-1)
    out, kind = decode_image(_raw_image("32FC1", 2, 2, 8, big, bigendian=1))
    assert kind == "depth" and np.array_equal(out, [[1.5, 0.0], [0.0, 2.25]])  # NaN -> 0 (invalid)
    out, _ = decode_image(_image_msg(typestore(), 1.0, "f", np.array([[1500, 0]], "<u2"), "16UC1"))
    np.testing.assert_allclose(out, [[1.5, 0.0]])  # millimetres
    with pytest.raises(BagError, match="where: unsupported image encoding 'yuv422'"):
        decode_image(_raw_image("yuv422", 1, 1, 2, np.zeros(2, np.uint8)), "where")
    with pytest.raises(BagError, match="too short"):
        decode_image(_raw_image("rgb8", 4, 4, 12, np.zeros(5, np.uint8)))


def test_non_finite_transform_is_reported_with_topic_and_stamp(tmp_path, frames):
    from mvgd_core.data.rosbag_io import TF, _transform_msg

    write_bag(frames, tmp_path / "ok", stamp_offset=10.0)
    ts = typestore()
    bad = np.eye(4)
    bad[0, 3] = np.nan
    with Writer(tmp_path / "bag", version=9) as w:
        conn = w.add_connection("/tf", TF, typestore=ts)
        msg = ts.types[TF](transforms=[_transform_msg(ts, 12.0, "map", "odom", bad)])
        w.write(conn, 12_000_000_000, ts.serialize_cdr(msg, TF))
        for c in ("/camera/color/image_raw", "/camera/color/camera_info"):
            w.add_connection(c, "sensor_msgs/msg/Image" if "image" in c else "sensor_msgs/msg/CameraInfo", typestore=ts)
    with pytest.raises(BagError, match=r"/tf @ 12.000000: bad transform map -> odom: .*NaN"):
        read_bag(tmp_path / "bag", depth_topic=None)


def test_bad_bags_and_missing_tf(tmp_path, frames):
    with pytest.raises(BagError, match="bag not found"):
        read_bag(tmp_path / "nope")
    with Writer(tmp_path / "empty", version=9) as w:
        w.add_connection("/camera/color/image_raw", "sensor_msgs/msg/Image", typestore=typestore())
    with pytest.raises(BagError, match="empty"):
        read_bag(tmp_path / "empty")
    write_bag(frames, tmp_path / "bag", stamp_offset=10.0)
    with pytest.raises(BagError, match=r"topic /other not in the bag; it has: .*/camera/color/image_raw \[sensor_msgs/msg/Image\]"):
        read_bag(tmp_path / "bag", rgb_topic="/other")
    with pytest.raises(BagError, match="could be posed in 'world'.*does not exist"):
        read_bag(tmp_path / "bag", fixed_frame="world")
    with pytest.raises(BagError, match="exists"):
        write_bag(frames, tmp_path / "bag", stamp_offset=10.0)
    with pytest.raises(BagError, match="strictly increasing"):
        write_bag(frames[::-1], tmp_path / "bag2", stamp_offset=10.0)
    with pytest.raises(BagError, match="storage"):
        write_bag(frames, tmp_path / "bag3", storage="db")


@pytest.mark.parametrize("name, n, hw", [("procedural_demo", 48, (96, 128)), ("tum_fr1_rpy", 58, (192, 256))])
def test_shipped_bags_read_back(name, n, hw):
    bag = ROOT / "data" / "bags" / name
    assert sum(f.stat().st_size for f in bag.iterdir()) < 20e6
    frames = read_bag(bag)
    assert len(frames) == n and frames[0].rgb.shape[:2] == hw and frames[0].depth is not None
    assert all(b.stamp > a.stamp for a, b in zip(frames, frames[1:]))
