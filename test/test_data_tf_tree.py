"""TFTree: hand-computed interpolation, chains, inverses and the error cases."""
import numpy as np
import pytest

from mvgd_core.cameras import make_pose
from mvgd_core.data.tf_tree import ExtrapolationError, NotConnectedError, TFError, TFTree, UnknownFrameError, transform_from_tq


def rz(deg):
    a = np.radians(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])


@pytest.fixture
def tree():
    tf = TFTree()
    tf.set_transform("map", "odom", 1.0, make_pose(rz(0), [0, 0, 0]))
    tf.set_transform("map", "odom", 2.0, make_pose(rz(90), [2, 0, 0]))
    tf.set_transform("odom", "base_link", 0.0, make_pose(np.eye(3), [1, 0, 0]), static=True)
    tf.set_transform("base_link", "camera", 0.0, make_pose(rz(-90), [0, 0, 0.5]), static=True)
    return tf


def test_interpolates_translation_linearly_and_rotation_by_slerp(tree):
    T = tree.lookup("map", "odom", 1.5)
    np.testing.assert_allclose(T, make_pose(rz(45), [1, 0, 0]), atol=1e-12)
    T = tree.lookup("map", "odom", 1.25)
    np.testing.assert_allclose(T, make_pose(rz(22.5), [0.5, 0, 0]), atol=1e-12)


def test_chain_through_static_edges_and_inverse(tree):
    T = tree.lookup("map", "camera", 1.5)
    # map<-odom (rz45, [1,0,0]) then odom<-base ([1,0,0]) then base<-camera (rz-90, [0,0,.5])
    expected = make_pose(rz(45), [1, 0, 0]) @ make_pose(np.eye(3), [1, 0, 0]) @ make_pose(rz(-90), [0, 0, 0.5])
    np.testing.assert_allclose(T, expected, atol=1e-12)
    np.testing.assert_allclose(tree.lookup("camera", "map", 1.5), np.linalg.inv(expected), atol=1e-12)
    # the camera origin in map coordinates
    np.testing.assert_allclose(T[:3, 3], [1 + np.sqrt(0.5), np.sqrt(0.5), 0.5], atol=1e-12)
    np.testing.assert_allclose(tree.lookup("camera", "camera", 7.0), np.eye(4))


def test_siblings_and_static_only_chains_hold_at_any_time(tree):
    tree.set_transform("base_link", "lidar", 0.0, make_pose(np.eye(3), [0, 0, 1.0]), static=True)
    T = tree.lookup("camera", "lidar", 123.0)  # no dynamic edge on the path: any time works
    np.testing.assert_allclose(T, np.linalg.inv(make_pose(rz(-90), [0, 0, 0.5])) @ make_pose(np.eye(3), [0, 0, 1.0]), atol=1e-12)


def test_exact_samples_out_of_order_inserts_and_latest(tree):
    tree.set_transform("map", "odom", 1.5, make_pose(rz(10), [5, 5, 5]))  # inserted between
    np.testing.assert_allclose(tree.lookup("map", "odom", 1.5), make_pose(rz(10), [5, 5, 5]), atol=1e-12)
    np.testing.assert_allclose(tree.lookup("map", "odom", 2.0), make_pose(rz(90), [2, 0, 0]), atol=1e-12)
    np.testing.assert_allclose(tree.lookup("map", "odom"), make_pose(rz(90), [2, 0, 0]), atol=1e-12)  # latest
    assert tree.time_range("map", "odom") == (1.0, 2.0)


def test_errors_name_frames_and_direction(tree):
    with pytest.raises(UnknownFrameError, match="'nope' does not exist"):
        tree.lookup("map", "nope", 1.5)
    tree.set_transform("world", "gps", 0.0, np.eye(4), static=True)
    with pytest.raises(NotConnectedError, match="not connected.*root 'map'"):
        tree.lookup("gps", "camera", 1.5)
    with pytest.raises(ExtrapolationError, match="into the past.*'map' -> 'odom'"):
        tree.lookup("map", "camera", 0.5)
    with pytest.raises(ExtrapolationError, match="into the future"):
        tree.lookup("map", "camera", 2.5)
    assert issubclass(ExtrapolationError, LookupError) and issubclass(UnknownFrameError, TFError)
    assert tree.can_transform("map", "camera", 1.9) and not tree.can_transform("map", "camera", 3.0)


def test_tolerance_cache_and_bad_input():
    tf = TFTree(cache_time=1.0, extrapolation_tolerance=0.05)
    for k in range(5):
        tf.set_transform("odom", "base", float(k), make_pose(np.eye(3), [k, 0, 0]))
    assert tf.time_range("odom", "base") == (3.0, 4.0)  # older samples pruned
    np.testing.assert_allclose(tf.lookup("odom", "base", 4.04)[:3, 3], [4, 0, 0])  # clamped within tolerance
    with pytest.raises(ValueError, match="cycle"):
        tf.set_transform("base", "odom", 0.0, np.eye(4))
    with pytest.raises(ValueError, match="NaN"):
        tf.set_transform("odom", "x", 0.0, np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="zero norm"):
        tf.set_transform_tq("odom", "x", 0.0, [0, 0, 0], [0, 0, 0, 0])
    np.testing.assert_allclose(transform_from_tq([1, 2, 3], [0, 0, np.sin(np.pi / 4), np.cos(np.pi / 4)]), make_pose(rz(90), [1, 2, 3]), atol=1e-12)


def test_drop_edge_forgets_static_and_dynamic_edges_clear_edge_keeps_statics(tree):
    tree.clear_edge("base_link")  # static: kept (clear_edge only forgets dynamic history)
    assert tree.can_transform("map", "camera", 1.5)
    tree.drop_edge("base_link")  # static or not: gone, and the parent count follows
    assert tree.parent_of("base_link") is None and tree.has_frame("base_link")  # still camera's parent
    with pytest.raises(TFError):
        tree.lookup("map", "camera", 1.5)
    tree.drop_edge("odom")
    assert not tree.has_frame("map")  # its only child went with the edge
    tree.drop_edge("never_seen")  # unknown: no-op
    assert tree.has_frame("camera") and tree.parent_of("camera") == "base_link"
