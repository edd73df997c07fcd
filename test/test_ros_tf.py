"""The node's TF layer: message <-> matrix, the fallback buffer's lookups, errors, jumps, and DDS feeding."""
import numpy as np
import pytest

from ros_harness import Rig, stamp_msg, wait_for

from mvgd_core.cameras import look_at, make_pose
from mvgd_ros.tf import FallbackTfBuffer, TfLookupError, broadcast_message, make_tf_buffer, matrix_to_transform, transform_to_matrix


def rot_z(deg):
    a = np.radians(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


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
    b = FallbackTfBuffer(rig.io, cache_time_s=10.0)
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


def test_time_jumping_back_clears_dynamic_history_but_keeps_statics(buf):
    _add(buf, "base_link", "cam", 0.0, make_pose(np.eye(3), [0, 0, 1]), static=True)
    for t in (50.0, 51.0):
        _add(buf, "odom", "base_link", t, np.eye(4))
    _add(buf, "odom", "base_link", 1.0, make_pose(np.eye(3), [5, 0, 0]))  # the bag started over
    _add(buf, "odom", "base_link", 2.0, make_pose(np.eye(3), [5, 0, 0]))
    assert buf.jumps_back == 1
    np.testing.assert_allclose(buf.lookup("odom", "cam", 1.5)[:3, 3], [5, 0, 1])
    with pytest.raises(TfLookupError):
        buf.lookup("odom", "cam", 50.5)  # old history gone


def test_backend_choice():
    rig = Rig()
    try:
        with pytest.raises(ValueError, match="backend"):
            make_tf_buffer(rig.io, backend="magic")
        try:
            import tf2_ros  # noqa: F401
        except ImportError:
            assert make_tf_buffer(rig.io).backend == "fallback"
            with pytest.raises(ImportError, match="tf2_ros"):
                make_tf_buffer(rig.io, backend="tf2_ros")
        else:
            assert make_tf_buffer(rig.io).backend == "tf2_ros"
    finally:
        rig.close()


@pytest.mark.ros
def test_fed_over_dds_with_latched_statics_for_late_joiners():
    """/tf_static published before the buffer exists still arrives (transient local); /tf streams in."""
    rig = Rig()
    try:
        rig.tf_static_pub.publish(rig.TFMessage(transforms=[broadcast_message("base_link", "cam_optical_frame", make_pose(np.eye(3), [0, 0, 1]), stamp_msg(0.0))]))
        listener = rig.io  # same process, but the subscription is created after the publish
        buf = FallbackTfBuffer(listener)
        wait_for(lambda: buf.can_transform("base_link", "cam_optical_frame", None), "latched static")
        wait_for(lambda: rig.tf_pub.get_subscription_count() > 0, "tf subscriber")
        rig.send_tf(make_pose(np.eye(3), [1, 0, 0]), 5.0, child="base_link")
        rig.send_tf(make_pose(np.eye(3), [3, 0, 0]), 6.0, child="base_link")
        wait_for(lambda: buf.can_transform("odom", "cam_optical_frame", 5.5), "dynamic transforms")
        np.testing.assert_allclose(buf.lookup("odom", "cam_optical_frame", 5.5)[:3, 3], [2, 0, 1], atol=1e-9)
    finally:
        rig.close()
