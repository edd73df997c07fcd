"""Keyframe policy: when frames join, which one leaves, selection, and resets (pure numpy)."""
import numpy as np
import pytest

from mvgd_core.cameras import make_pose
from mvgd_core.data.types import Frame
from mvgd_ros.keyframes import KeyframeConfig, KeyframeSet, pose_distance

K = np.array([[20.0, 0, 8], [0, 20.0, 8], [0, 0, 1]])
RGB = np.zeros((16, 16, 3), np.uint8)


def rot_y(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def frame(x=0.0, yaw=0.0, stamp=0.0) -> Frame:
    return Frame(rgb=RGB, K=K, T_wc=make_pose(rot_y(yaw), [x, 0, 0]), stamp=stamp)


CFG = KeyframeConfig(min_translation=0.2, min_rotation_deg=15.0, max_age_s=5.0, max_views=3, reset_jump_translation=0.5)


def test_pose_distance_units():
    dt, dr, d = pose_distance(frame(0.0).T_wc, frame(0.4, yaw=30).T_wc, CFG)
    assert dt == pytest.approx(0.4) and dr == pytest.approx(30.0) and d == pytest.approx(2.0 + 2.0)


def test_first_frame_then_translation_or_rotation_threshold():
    ks = KeyframeSet(CFG)
    assert ks.add(frame(0.0, stamp=0.0)) == ("first", None)
    assert ks.add(frame(0.1, stamp=0.1)) == (None, None)  # neither moved nor turned enough
    assert ks.add(frame(0.0, yaw=10, stamp=0.2)) == (None, None)
    assert ks.add(frame(0.25, stamp=0.3)) == ("novel", None)
    assert ks.add(frame(0.0, yaw=20, stamp=0.4)) == ("novel", None)
    assert len(ks) == 3


def test_novel_means_far_from_every_keyframe_not_just_the_newest():
    ks = KeyframeSet(CFG)
    ks.add(frame(0.0, stamp=0))
    ks.add(frame(0.5, stamp=1))
    # Back near the first keyframe: far from the newest, but not from all -> not added.
    assert ks.add(frame(0.05, stamp=2)) == (None, None)


def test_age_adds_a_frame_from_a_parked_camera():
    ks = KeyframeSet(CFG)
    ks.add(frame(0.0, stamp=10.0))
    assert ks.add(frame(0.0, stamp=14.9))[0] is None
    assert ks.add(frame(0.0, stamp=15.0))[0] == "age"


def test_age_can_be_disabled():
    ks = KeyframeSet(KeyframeConfig(max_age_s=0.0))
    ks.add(frame(0.0, stamp=0.0))
    assert ks.add(frame(0.0, stamp=1e6))[0] is None


def test_parked_camera_slides_instead_of_growing():
    ks = KeyframeSet(CFG)
    ks.add(frame(0.0, stamp=0))
    ks.add(frame(1.0, stamp=1))
    ks.add(frame(2.0, stamp=2))
    ks.add(frame(2.0, stamp=8))  # age keyframe at the same pose as the stamp-2 one
    assert [f.stamp for f in ks.frames] == [0, 1, 8]  # the older twin left, the spread stays


def test_steady_motion_is_a_sliding_window():
    ks = KeyframeSet(CFG)
    for i in range(6):
        ks.add(frame(0.3 * i, stamp=i))
    assert [f.stamp for f in ks.frames] == [3, 4, 5]


def test_most_redundant_goes_first():
    ks = KeyframeSet(CFG)
    ks.add(frame(0.0, stamp=0))
    ks.add(frame(2.0, stamp=1))
    ks.add(frame(2.25, stamp=2))
    ks.add(frame(4.0, stamp=3))  # closest pair is (2.0, 2.25): the older (stamp 1) leaves
    assert [f.stamp for f in ks.frames] == [0, 2, 3]


def test_select_prefers_nearby_views_looking_the_same_way():
    ks = KeyframeSet(KeyframeConfig(max_views=5))
    for i, (x, yaw) in enumerate([(0.0, 0), (1.0, 0), (0.1, 90), (3.0, 0)]):
        ks.add(frame(x, yaw, stamp=i))
    target = frame(0.2).T_wc
    assert [f.stamp for f in ks.select(target, 2)] == [0, 1]  # time order kept
    assert len(ks.select(target, 0)) == 4


def test_conditioning_puts_the_live_frame_last_and_caps_the_count():
    ks = KeyframeSet(CFG)
    for i in range(3):
        ks.add(frame(1.0 * i, stamp=i))
    live = frame(2.1, stamp=3)  # not a keyframe (too close to x=2)
    cond = ks.conditioning(live, k=0)
    assert cond[-1] is live and len(cond) == CFG.max_views
    assert [f.stamp for f in cond[:-1]] == [1, 2]  # the two nearest to the live camera
    ks.add(frame(5.0, stamp=4))
    live2 = ks.newest  # a live frame that is itself a keyframe appears once
    cond2 = ks.conditioning(live2, k=2)
    assert sum(f is live2 for f in cond2) == 1 and len(cond2) == 2


def test_time_going_backwards_resets():
    ks = KeyframeSet(CFG)
    ks.add(frame(0.0, stamp=5))
    ks.add(frame(1.0, stamp=6))
    assert ks.add(frame(0.0, stamp=1)) == ("first", "time_backwards")
    assert len(ks) == 1


def test_tf_jump_detection():
    ks = KeyframeSet(CFG)
    assert not ks.jumped(frame(9.0).T_wc)  # empty set: nothing to compare
    ks.add(frame(1.0, stamp=0))
    assert ks.correction(frame(1.3).T_wc) == pytest.approx(0.3)
    assert not ks.jumped(frame(1.3).T_wc)
    assert ks.jumped(frame(1.6).T_wc)
    assert not KeyframeSet(KeyframeConfig(reset_jump_translation=0.0), [frame(1.0)]).jumped(frame(9.0).T_wc)


def test_config_validation():
    with pytest.raises(ValueError, match="max_views"):
        KeyframeConfig(max_views=0)
    with pytest.raises(ValueError, match="positive"):
        KeyframeConfig(min_translation=0.0)
