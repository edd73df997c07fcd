"""The node's TF layer: message <-> matrix, the fallback buffer's lookups, errors, jumps, and DDS feeding."""
import numpy as np
import pytest

from ros_harness import Rig, rig, stamp_msg, wait_for  # noqa: F401

from mvgd_core.cameras import look_at, make_pose
from mvgd_ros.tf import (FallbackTfBuffer, TfLookupError, broadcast_message, make_tf_buffer, matrix_to_transform, ns_to_stamp, sec_to_stamp,
                         stamp_to_ns, transform_to_matrix)


def rot_z(deg):
    a = np.radians(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def test_stamps_from_nanoseconds_and_seconds_are_exact_and_carry_into_the_second():
    ns = 1_700_000_000_123_456_789
    assert stamp_to_ns(ns_to_stamp(ns)) == ns
    t = sec_to_stamp(12.9999999996)  # rounds up to the next second, never 12 s + 1e9 ns (or + 0 ns)
    assert (t.sec, t.nanosec) == (13, 0)
    t = sec_to_stamp(100.25)
    assert (t.sec, t.nanosec) == (100, 250_000_000)


def test_transform_round_trip_and_validation():
    T = look_at([1.0, 2.0, 0.5], [3.0, -1.0, 0.2])
    np.testing.assert_allclose(transform_to_matrix(matrix_to_transform(T)), T, atol=1e-12)
    t = matrix_to_transform(T)
    t.translation.x = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        transform_to_matrix(t)
    t = matrix_to_transform(T)
    t.rotation.x = t.rotation.y = t.rotation.z = t.rotation.w = 0.0
    with pytest.raises(ValueError, match="zero norm"):
        transform_to_matrix(t)


@pytest.fixture
def buf():
    """A fallback buffer on a real (unspun) node: we feed it with `add`, as its subscriptions would."""
    rig = Rig()
    b = FallbackTfBuffer(rig.node, cache_time_s=10.0)
    yield b
    rig.close()


def _add(buf, parent, child, t, T, static=False):
    return buf.add(broadcast_message(parent, child, T, stamp_msg(t)), static)


def test_interpolates_a_dynamic_edge_through_a_static_one(buf):
    _add(buf, "odom", "base_link", 10.0, make_pose(np.eye(3), [0, 0, 0]))
    _add(buf, "odom", "base_link", 11.0, make_pose(rot_z(90), [2, 0, 0]))
    _add(buf, "base_link", "cam", 0.0, make_pose(np.eye(3), [0.1, 0, 0.5]), static=True)
    T = buf.lookup("odom", "cam", 10.5)
    expect = make_pose(rot_z(45), [1, 0, 0]) @ make_pose(np.eye(3), [0.1, 0, 0.5])
    np.testing.assert_allclose(T, expect, atol=1e-9)
    assert buf.can_transform("odom", "cam", 10.5)
    np.testing.assert_allclose(buf.lookup("odom", "cam", None)[:3, 3], [2, 0.1, 0.5], atol=1e-9)  # latest


def test_lookup_failures_have_kinds_and_are_counted(buf):
    _add(buf, "odom", "base_link", 10.0, np.eye(4))
    _add(buf, "odom", "base_link", 11.0, np.eye(4))
    _add(buf, "map", "other", 0.0, np.eye(4), static=True)
    with pytest.raises(TfLookupError, match="future") as e:
        buf.lookup("odom", "base_link", 11.5)
    assert e.value.kind == "extrapolation"
    with pytest.raises(TfLookupError) as e:
        buf.lookup("odom", "ghost", 10.5)
    assert e.value.kind == "unknown_frame"
    with pytest.raises(TfLookupError) as e:
        buf.lookup("odom", "other", 10.5)
    assert e.value.kind == "not_connected"
    assert dict(buf.failures) == {"extrapolation": 1, "unknown_frame": 1, "not_connected": 1}
    assert not buf.can_transform("odom", "base_link", 9.0)


def test_malformed_transforms_are_rejected_not_raised(buf):
    bad = broadcast_message("odom", "base_link", np.eye(4), stamp_msg(1.0))
    bad.transform.rotation.w = float("nan")
    assert not buf.add(bad, False)
    assert not _add(buf, "odom", "odom", 1.0, np.eye(4))  # self-parent
    assert buf.rejected == 2


def test_time_jumping_back_restarts_that_edge_only(buf):
    _add(buf, "base_link", "cam", 0.0, make_pose(np.eye(3), [0, 0, 1]), static=True)
    for t in (50.0, 51.0):
        _add(buf, "odom", "base_link", t, np.eye(4))
        _add(buf, "odom", "other", t, np.eye(4))
    assert not _add(buf, "odom", "base_link", 1.0, make_pose(np.eye(3), [5, 0, 0]))  # held: a bag restart or a stale message?
    assert _add(buf, "odom", "base_link", 2.0, make_pose(np.eye(3), [5, 0, 0]))  # confirmed: the bag started over
    assert buf.jumps_back == 1
    np.testing.assert_allclose(buf.lookup("odom", "cam", 1.5)[:3, 3], [5, 0, 1])
    with pytest.raises(TfLookupError):
        buf.lookup("odom", "cam", 50.5)  # this edge's old history is gone
    np.testing.assert_allclose(buf.lookup("odom", "other", 50.5), np.eye(4))  # an unrelated edge keeps its own


def test_one_stale_sample_is_dropped_without_touching_history(buf):
    for t in (50.0, 51.0):
        _add(buf, "odom", "base_link", t, np.eye(4))
    assert not _add(buf, "odom", "base_link", 20.0, make_pose(np.eye(3), [9, 0, 0]))  # 31 s late
    assert _add(buf, "odom", "base_link", 52.0, np.eye(4))  # the timeline goes on: the late one was stale
    assert buf.stale_dropped == 1 and buf.jumps_back == 0
    np.testing.assert_allclose(buf.lookup("odom", "base_link", 51.5), np.eye(4))
    assert not buf.can_transform("odom", "base_link", 20.0)


def test_nanosecond_stamps_are_exact_at_epoch_scale(buf):
    sec = 1_700_000_000
    for nsec in (0, 100_000_123):  # float seconds would round 1700000000.100000123 by ~100 ns
        t = broadcast_message("odom", "base_link", make_pose(np.eye(3), [nsec * 1e-9, 0, 0]), stamp_msg(0.0))
        t.header.stamp.sec, t.header.stamp.nanosec = sec, nsec
        buf.add(t, False)
    newest = sec * 1_000_000_000 + 100_000_123
    np.testing.assert_allclose(buf.lookup_ns("odom", "base_link", newest)[:3, 3], [0.100000123, 0, 0], atol=1e-12)
    assert not buf.can_transform_ns("odom", "base_link", newest + 1)  # one ns past the newest sample: extrapolation
    with pytest.raises(TfLookupError) as e:
        buf.lookup_ns("odom", "nowhere", newest)  # unknown frames fail fast, by kind
    assert e.value.kind == "unknown_frame"


def test_tf2_ros_path_creates_the_buffer_with_the_node(monkeypatch):
    """tf2_ros is not installable here: a stand-in module records how the backend uses it."""
    import types

    import mvgd_ros.tf as tfmod

    seen = {}

    class TransformException(Exception):
        pass

    class Buffer:
        def __init__(self, cache_time=None, node=None):
            seen["cache_ns"], seen["node"] = cache_time.nanoseconds, node

        def set_transform(self, transform, authority):  # what TransformListener's callback calls per transform
            seen.setdefault("stored", []).append(transform.child_frame_id)

        def lookup_transform(self, target, source, time):
            seen["lookup"] = (target, source, time.nanoseconds)
            return broadcast_message(target, source, make_pose(np.eye(3), [1, 2, 3]), stamp_msg(0.0))

        def can_transform(self, target, source, time):
            return True

    fake = types.SimpleNamespace(
        Buffer=Buffer, TransformListener=lambda buffer, node, spin_thread: seen.setdefault("listener", (buffer, node, spin_thread)),
        TransformException=TransformException, LookupException=type("L", (TransformException,), {}),
        ConnectivityException=type("C", (TransformException,), {}), ExtrapolationException=type("E", (TransformException,), {}),
    )
    monkeypatch.setattr(tfmod, "tf2_ros", fake)
    guards = []

    class Guard:
        def __init__(self, callback):
            self.callback, self.triggered = callback, 0

        def trigger(self):
            self.triggered += 1

    node = types.SimpleNamespace(create_guard_condition=lambda cb: guards.append(Guard(cb)) or guards[-1])
    b = tfmod.make_tf_buffer(node, cache_time_s=7.0)
    assert b.backend == "tf2_ros" and seen["node"] is node and seen["cache_ns"] == 7_000_000_000
    assert seen["listener"][1] is node and seen["listener"][2] is False
    # new-data hook: the listener's inserts go through our Buffer subclass and wake the executor
    listener_buffer = seen["listener"][0]
    assert isinstance(listener_buffer, Buffer)
    listener_buffer.set_transform(broadcast_message("odom", "base_link", np.eye(4), stamp_msg(1.0)), "test")
    assert seen["stored"] == ["base_link"] and guards[0].triggered == 0  # no hook set: nothing to wake
    calls = []
    b.on_new_data = lambda: calls.append(1)
    for child in ("a", "b"):  # two transforms of one message: two triggers, the executor runs the callback once
        listener_buffer.set_transform(broadcast_message("odom", child, np.eye(4), stamp_msg(1.0)), "test")
    assert guards[0].triggered == 2 and not calls  # not called from inside the Buffer
    guards[0].callback()  # what the executor does when the guard condition is ready
    assert calls == [1]
    np.testing.assert_allclose(b.lookup_ns("odom", "cam", 1_700_000_000_100_000_123)[:3, 3], [1, 2, 3])
    assert seen["lookup"] == ("odom", "cam", 1_700_000_000_100_000_123)


def test_backend_choice():
    rig = Rig()
    try:
        with pytest.raises(ValueError, match="backend"):
            make_tf_buffer(rig.node, backend="magic")
        try:
            import tf2_ros  # noqa: F401
        except ImportError:
            assert make_tf_buffer(rig.node).backend == "fallback"
            with pytest.raises(ImportError, match="tf2_ros"):
                make_tf_buffer(rig.node, backend="tf2_ros")
        else:
            assert make_tf_buffer(rig.node).backend == "tf2_ros"
    finally:
        rig.close()


@pytest.mark.ros
def test_fed_over_dds_with_latched_statics_for_late_joiners():
    """/tf_static published before the buffer exists still arrives (transient local); /tf streams in."""
    rig = Rig()
    try:
        rig.tf_static_pub.publish(rig.TFMessage(transforms=[broadcast_message("base_link", "cam_optical_frame", make_pose(np.eye(3), [0, 0, 1]), stamp_msg(0.0))]))
        listener = rig.node  # same process, but the subscription is created after the publish
        buf = FallbackTfBuffer(listener)
        wait_for(lambda: buf.can_transform("base_link", "cam_optical_frame", None), "latched static")
        wait_for(lambda: rig.tf_pub.get_subscription_count() > 0, "tf subscriber")
        rig.send_tf(make_pose(np.eye(3), [1, 0, 0]), 5.0, child="base_link")
        rig.send_tf(make_pose(np.eye(3), [3, 0, 0]), 6.0, child="base_link")
        wait_for(lambda: buf.can_transform("odom", "cam_optical_frame", 5.5), "dynamic transforms")
        np.testing.assert_allclose(buf.lookup("odom", "cam_optical_frame", 5.5)[:3, 3], [2, 0, 1], atol=1e-9)
    finally:
        rig.close()


def test_fallback_keeps_a_bounded_number_of_frames(buf):
    """Issue 12: bounded memory for every per-name structure. 10k invented child frames leave at most
    MAX_TF_FRAMES edges; the least recently updated go first, the recently updated still resolve."""
    from mvgd_ros.tf import MAX_TF_FRAMES

    _add(buf, "odom", "base_link", 0.0, np.eye(4), static=True)
    t = broadcast_message("odom", "junk", np.eye(4), stamp_msg(10.0))  # one message, renamed: a fast flood
    for i in range(10_000):
        t.child_frame_id, t.transform.translation.x = f"junk_{i}", float(i)
        assert buf.add(t, False)
    _add(buf, "odom", "base_link", 0.0, np.eye(4), static=True)  # refreshed: survives what comes next
    for i in range(10_000, 10_010):
        _add(buf, "odom", f"junk_{i}", 10.0, np.eye(4))
    assert len(buf._tree.frames) <= MAX_TF_FRAMES + 1  # + the root "odom"
    assert buf.frames_evicted == 10_012 - MAX_TF_FRAMES  # base_link was forgotten once and came back
    assert buf.counters()["tf_frames_evicted"] == buf.frames_evicted
    assert buf.lookup("odom", "junk_9999", 10.0)[0, 3] == 9999.0  # recent: kept
    np.testing.assert_array_equal(buf.lookup("odom", "base_link", None), np.eye(4))
    with pytest.raises(TfLookupError) as e:
        buf.lookup("odom", "junk_0", 10.0)  # least recently updated: forgotten
    assert e.value.kind == "unknown_frame"


def test_fallback_calls_on_new_data_once_per_message_after_its_inserts(buf):
    """The hook runs after the whole message went in, with the lock released (it looks transforms up)."""
    from tf2_msgs.msg import TFMessage

    seen = []
    buf.on_new_data = lambda: seen.append(buf.can_transform("odom", "cam", 2.0))
    msg = TFMessage(transforms=[broadcast_message("odom", "base_link", make_pose(np.eye(3), [x, 0, 0]), stamp_msg(t))
                                for t, x in ((1.0, 0.0), (2.0, 1.0))]
                    + [broadcast_message("base_link", "cam", np.eye(4), stamp_msg(2.0))])
    assert buf.on_tf_message(msg, False) == 3
    assert seen == [True]  # once, and it saw every transform of the message
    bad = broadcast_message("odom", "base_link", np.eye(4), stamp_msg(3.0))
    bad.transform.rotation.w = float("nan")
    assert buf.on_tf_message(TFMessage(transforms=[bad]), False) == 0
    assert seen == [True]  # nothing went in: no re-check
    assert buf.on_tf_message(TFMessage(transforms=[broadcast_message("base_link", "imu", np.eye(4), stamp_msg(0.0))]), True) == 1
    assert len(seen) == 2  # /tf_static too


def test_a_waiting_image_resolves_in_the_tf_message_that_completes_it(rig):
    """Node level, unspun (its 50 ms timer never fires): the /tf message that completes a waiting
    image resolves it in that very call; the newer images, still without TF, keep waiting, and the
    next message resolves the next one (one per message: nothing is superseded)."""
    from rclpy.parameter import Parameter
    from std_msgs.msg import Header
    from tf2_msgs.msg import TFMessage

    from fake_model_node import PosePredictor, encode_position
    from mvgd_ros import image_codec
    from mvgd_ros.node import MVGDNode

    def header(ns):
        h = stamp_msg(0.0)
        h.sec, h.nanosec = divmod(ns, 10**9)
        return Header(stamp=h, frame_id="cam_optical_frame")

    def tf_at(ns, x):
        return TFMessage(transforms=[broadcast_message("odom", "cam_optical_frame", make_pose(np.eye(3), [x, 0, 0]), header(ns).stamp)])

    node = MVGDNode(predictor=PosePredictor(), context=rig.ctx, parameter_overrides=[Parameter("warm_up", value=False)])
    try:
        base, step = 1_700_000_000 * 10**9, 10**8
        stamps = [base + k * step for k in range(3)]
        K = np.array([[16.0, 0.0, 7.5], [0.0, 16.0, 7.5], [0.0, 0.0, 1.0]])
        for k, ns in enumerate(stamps):
            node._on_camera_info(image_codec.make_camera_info(K, (16, 16), header(ns)))
            node._on_image(image_codec.rgb_to_image(encode_position(np.full((16, 16, 3), 90, np.uint8), [k, 0, 0]), header(ns)))
        assert len(node.pending) == 3 and len(node.keyframes) == 0  # no TF yet: all wait

        node.tf.on_tf_message(tf_at(stamps[0] - step, 0.0), False)
        assert len(node.keyframes) == 0 and len(node.pending) == 3  # a sample before every image: nothing yet
        node.tf.on_tf_message(tf_at(stamps[0], 0.0), False)
        assert len(node.keyframes) == 1 and node.keyframes.newest.stamp_ns == stamps[0]  # in this call
        assert len(node.pending) == 2
        node.tf.on_tf_message(tf_at(stamps[1], 1.0), False)  # 1 m on: a new keyframe
        assert node.keyframes.newest.stamp_ns == stamps[1] and len(node.pending) == 1
        assert node.stats.totals["superseded"] == 0
    finally:
        node.destroy_node()
