"""Bag player: reading (errors for missing/empty bags and topics), header stamps, DDS playback."""
import threading

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from mvgd_ros import player as P

TS = get_typestore(Stores.ROS2_KILTED)


def _image(stamp: float, h=4, w=5, val=0):
    Image, Header, Time = TS.types["sensor_msgs/msg/Image"], TS.types["std_msgs/msg/Header"], TS.types["builtin_interfaces/msg/Time"]
    sec = int(stamp)
    hdr = Header(stamp=Time(sec=sec, nanosec=int(round((stamp - sec) * 1e9))), frame_id="cam_optical_frame")
    return Image(header=hdr, height=h, width=w, encoding="rgb8", is_bigendian=0, step=3 * w, data=np.full(h * w * 3, val, np.uint8))


def _write_bag(path, n=5, storage=StoragePlugin.SQLITE3, extra_topic=True):
    with Writer(path, version=9, storage_plugin=storage) as w:
        c = w.add_connection("/cam/image", "sensor_msgs/msg/Image", typestore=TS)
        if extra_topic:
            s = w.add_connection("/chatter", "std_msgs/msg/String", typestore=TS)
        for i in range(n):
            t = 100.0 + 0.05 * i
            w.write(c, int(t * 1e9), TS.serialize_cdr(_image(t, val=i), "sensor_msgs/msg/Image"))
            if extra_topic:
                w.write(s, int(t * 1e9) + 1, TS.serialize_cdr(TS.types["std_msgs/msg/String"](data=f"m{i}"), "std_msgs/msg/String"))
    return path


def test_header_stamp_from_raw_cdr():
    raw = TS.serialize_cdr(_image(123.456789), "sensor_msgs/msg/Image")
    assert P.header_stamp(bytes(raw)) == pytest.approx(123.456789, abs=1e-9)


@pytest.mark.parametrize("storage", [StoragePlugin.SQLITE3, StoragePlugin.MCAP])
def test_read_messages_in_order_with_stamps(tmp_path, storage):
    bag = _write_bag(tmp_path / "b", storage=storage)
    msgs = P.read_messages(bag)
    assert [m.topic for m in msgs[:2]] == ["/cam/image", "/chatter"]
    imgs = [m for m in msgs if m.topic == "/cam/image"]
    assert [round(m.stamp, 3) for m in imgs] == [100.0, 100.05, 100.1, 100.15, 100.2]
    assert all(m.stamp is None for m in msgs if m.topic == "/chatter")  # no header
    assert P.bag_topics(bag)["/cam/image"] == ("sensor_msgs/msg/Image", 5)


def test_missing_bag_empty_bag_and_missing_topic_errors(tmp_path):
    with pytest.raises(P.BagError, match="not found"):
        P.read_messages(tmp_path / "nope")
    empty = _write_bag(tmp_path / "empty", n=0)
    with pytest.raises(P.BagError, match="empty"):
        P.read_messages(empty)
    bag = _write_bag(tmp_path / "b")
    with pytest.raises(P.BagError, match=r"no topic\(s\) \['/depth'\].*/cam/image"):
        P.read_messages(bag, ["/cam/image", "/depth"])
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "metadata.yaml").write_text("not: [a bag")
    with pytest.raises(P.BagError, match="cannot read"):
        P.read_messages(tmp_path / "garbage")


def test_unknown_message_class_is_a_clear_error():
    with pytest.raises(P.BagError, match="no Python message class for nosuch_msgs/msg/Foo"):
        P.message_class("nosuch_msgs/msg/Foo")


@pytest.mark.ros
def test_playback_over_dds_with_gate_skip_and_remap(tmp_path):
    rclpy = pytest.importorskip("rclpy")
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    bag = _write_bag(tmp_path / "b", n=6)
    msgs = P.read_messages(bag, ["/cam/image"])
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("test_player", context=ctx)
    got, cv = [], threading.Condition()

    def cb(raw):
        with cv:
            got.append(P.header_stamp(raw))
            cv.notify_all()

    # a best-effort SensorDataQoS reader must match the player's reliable writer
    node.create_subscription(Image, "/remapped", cb, qos_profile_sensor_data, raw=True)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    th = threading.Thread(target=ex.spin, daemon=True)
    th.start()
    try:
        player = P.BagPlayer(node, msgs, remap={"/cam/image": "/remapped"})
        assert player.wait_for_subscribers(["/cam/image"], timeout=10.0) == []
        gated = []

        def gate(m):  # like --as-fast-as-node-keeps-up: wait until this image arrived
            with cv:
                ok = cv.wait_for(lambda: any(abs(s - m.stamp) < 1e-6 for s in got), 10.0)
            gated.append((m.stamp, ok))

        n = player.play(gate=gate, trigger_topics=["/cam/image"], skip=lambda m: round(m.stamp, 3) == 100.1, progress=False)
        assert n == 5
        assert [round(s, 3) for s, _ in gated] == [100.0, 100.05, 100.15, 100.2, 100.25]
        assert all(ok for _, ok in gated)
        assert [round(s, 3) for s in got] == [100.0, 100.05, 100.15, 100.2, 100.25]
    finally:
        ex.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)


def _msg(topic, t):
    return P.BagMessage(topic, "x", b"", int(round(t * 1e9)), t)


def test_lead_order_is_bag_order_without_lead_and_moves_tf_early_with_one():
    msgs = [_msg("/img", 1.0), _msg("/tf", 1.2), _msg("/img", 1.4), _msg("/tf", 1.6), _msg("/img", 1.8)]
    assert [m.bag_ns for m in P.lead_order(iter(msgs), 0)] == [m.bag_ns for m in msgs]
    out = [(m.topic, round(m.stamp, 1)) for m in P.lead_order(iter(msgs), int(0.5e9))]
    assert out == [("/tf", 1.2), ("/img", 1.0), ("/tf", 1.6), ("/img", 1.4), ("/img", 1.8)]


def test_iter_messages_streams_lazily_and_checks_topics_at_the_call(tmp_path):
    import types

    bag = _write_bag(tmp_path / "b", n=5)
    it = P.iter_messages(bag, ["/cam/image"])
    assert isinstance(it, types.GeneratorType)
    first = next(it)
    assert first.topic == "/cam/image" and round(first.stamp, 3) == 100.0
    assert len(list(it)) == 4
    with pytest.raises(P.BagError, match="no topic"):
        P.iter_messages(bag, ["/nope"])


def test_cli_defaults_tf_lead_zero_like_ros2_bag_play():
    import inspect

    assert inspect.signature(P.BagPlayer).parameters["tf_lead"].default == 0.0


@pytest.mark.ros
def test_from_bag_streams_while_playing(tmp_path):
    rclpy = pytest.importorskip("rclpy")

    bag = _write_bag(tmp_path / "b", n=40)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("test_stream", context=ctx)
    try:
        player = P.BagPlayer.from_bag(node, bag, rate=1000.0)
        assert player.total == 80 and set(player.publishers) == {"/cam/image", "/chatter"}
        read_at_first = []
        n = player.play(on_publish=lambda m, _t: read_at_first.append(player.read_count) if not read_at_first else None, progress=False)
        assert n == 80
        assert read_at_first == [1]  # the first message went out before the rest of the bag was read
        assert player.read_count == 80
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)


@pytest.mark.ros
def test_mvgd_play_exits_zero_after_playing_a_bag(tmp_path):
    import os
    import subprocess
    import sys

    bag = _write_bag(tmp_path / "b", n=3)
    proc = subprocess.run([sys.executable, "-m", "mvgd_ros.player", str(bag), "--rate", "100"], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "published 6 messages" in proc.stdout
