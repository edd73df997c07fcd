"""Keyframe buffer: DVMVS pose distance, admission, penalty-based view selection, outliers, resets (pure numpy)."""
import numpy as np
import pytest

from mvgd_core.cameras import make_pose
from mvgd_core.data.types import Frame
from mvgd_ros.keyframes import KeyframeConfig, KeyframeSet, pose_distance, view_penalty

K = np.array([[20.0, 0, 8], [0, 20.0, 8], [0, 0, 1]])
RGB = np.zeros((16, 16, 3), np.uint8)


def rot_y(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def frame(x=0.0, yaw=0.0, stamp=0.0, y=0.0) -> Frame:
    return Frame(rgb=RGB, K=K, T_wc=make_pose(rot_y(yaw), [x, y, 0]), stamp=stamp)


CFG = KeyframeConfig(pose_distance=0.1, optimal_baseline=0.15, buffer_size=30, max_age_s=5.0, max_views=3, reset_jump_translation=0.5)


def r_measure(deg):
    return np.sqrt(2 * (1 - (1 + 2 * np.cos(np.radians(deg))) / 3))


def test_pose_distance_is_dvmvs_measure():
    d, r, t = pose_distance(frame(0.0).T_wc, frame(0.3, yaw=30).T_wc)
    assert t == pytest.approx(0.3) and r == pytest.approx(r_measure(30)) and d == pytest.approx(np.hypot(0.3, r_measure(30)))
    # translation is measured in the reference camera: a turned reference does not change |t|
    d2, _, t2 = pose_distance(frame(0.0, yaw=90).T_wc, frame(0.3, yaw=90).T_wc)
    assert t2 == pytest.approx(0.3) and d2 == pytest.approx(0.3)
    # 5e6 m from the origin: the same numbers (float64 differences)
    far_a, far_b = frame(5e6, y=5e6).T_wc, frame(5e6 + 0.3, y=5e6, yaw=30).T_wc
    assert pose_distance(far_a, far_b)[0] == pytest.approx(d, rel=1e-6)


def test_penalty_prefers_the_optimal_baseline_and_penalises_short_ones_five_times():
    ref = frame(0.0).T_wc
    assert view_penalty(ref, frame(0.15).T_wc, 0.15) == pytest.approx(0.0)
    assert view_penalty(ref, frame(0.10).T_wc, 0.15) == pytest.approx(5 * 0.05 ** 2)
    assert view_penalty(ref, frame(0.20).T_wc, 0.15) == pytest.approx(0.05 ** 2)
    assert view_penalty(ref, frame(0.15, yaw=10).T_wc, 0.15) == pytest.approx(r_measure(10) ** 2)


def test_admission_by_combined_distance_to_the_newest_keyframe():
    ks = KeyframeSet(CFG)
    assert ks.add(frame(0.0, stamp=0.0)) == ("first", None)
    assert ks.add(frame(0.05, stamp=0.1)) == (None, None)  # d = 0.05
    assert ks.add(frame(0.0, yaw=3, stamp=0.2)) == (None, None)  # r ~ 0.043
    assert ks.add(frame(0.12, stamp=0.3)) == ("novel", None)
    assert ks.add(frame(0.12, yaw=8, stamp=0.4)) == ("novel", None)  # rotation alone: r ~ 0.114
    assert ks.add(frame(0.0, stamp=0.5)) == ("novel", None)  # far from the newest (not from all): DVMVS compares the newest
    assert len(ks) == 4


def test_age_adds_a_frame_from_a_parked_camera_and_can_be_disabled():
    ks = KeyframeSet(CFG)
    ks.add(frame(0.0, stamp=10.0))
    assert ks.add(frame(0.0, stamp=14.9))[0] is None
    assert ks.add(frame(0.0, stamp=15.0))[0] == "age"
    ks = KeyframeSet(KeyframeConfig(max_age_s=0.0))
    ks.add(frame(0.0, stamp=0.0))
    assert ks.add(frame(0.0, stamp=1e6))[0] is None


def test_buffer_is_a_sliding_window():
    ks = KeyframeSet(KeyframeConfig(buffer_size=3))
    for i in range(6):
        ks.add(frame(0.2 * i, stamp=i))
    assert [f.stamp for f in ks.frames] == [3, 4, 5]


def test_rotation_only_views_do_not_crowd_out_parallax():
    ks = KeyframeSet(KeyframeConfig(max_views=3))
    for i, (x, yaw) in enumerate([(0.15, 0), (0.0, 20), (0.0, -20), (0.3, 0), (3.0, 0)]):
        ks.add(frame(x, yaw, stamp=i))
    target = frame(0.0).T_wc
    assert [f.stamp for f in ks.select(target, 2)] == [0, 3]  # baselines 0.15 and 0.3, not the turned copies at 0
    live = frame(0.0, stamp=9)
    cond = ks.conditioning(live, k=0)
    assert cond[-1] is live and [f.stamp for f in cond[:-1]] == [0, 3]  # max_views 3 = 2 keyframes + live
    assert len(ks.conditioning(live, k=2)) == 2
    ks.add(live)
    assert sum(f is live for f in ks.conditioning(live, k=0)) == 1  # a live keyframe appears once


def _track(n, glitch=(), step=0.12, jump_from=None, jump=5.0, off=5.0):
    """Frames along x; `glitch` indices are `off` m off sideways; from `jump_from` on everything is shifted."""
    out = []
    for i in range(n):
        y = off if i in glitch else 0.0
        y += jump if jump_from is not None and i >= jump_from else 0.0
        out.append(frame(step * i, y=y, stamp=0.1 * i))
    return out


def _ys(ks):
    return [float(f.T_wc[1, 3]) for f in ks.frames]


@pytest.mark.parametrize("buffer_size", [3, 30])
@pytest.mark.parametrize("glitch", [(5,), (5, 6)])
def test_a_glitch_is_evicted_as_soon_as_the_track_comes_back(glitch, buffer_size):
    ks = KeyframeSet(KeyframeConfig(buffer_size=buffer_size, max_views=4))
    frames = _track(12, glitch)
    for i, f in enumerate(frames):
        ks.add(f)
        if i == max(glitch) + 1:
            assert 5.0 not in _ys(ks), "still holding the glitch one keyframe after it"
    assert ks.evicted["outlier"] == len(glitch) and 5.0 not in _ys(ks)
    assert len(ks) == min(buffer_size, 12 - len(glitch))


def test_far_scales_with_the_keyframe_spacing():
    ks = KeyframeSet(CFG)
    for f in _track(10, (4,), step=1.5, off=20.0):  # keyframes 1.5 m apart: "far" is 4 x 1.5 = 6 m
        ks.add(f)
    assert ks.evicted["outlier"] == 1 and 20.0 not in _ys(ks)
    ks = KeyframeSet(CFG)
    for f in _track(10, (4,), step=1.5, off=5.0):  # 5 m off is within what 1.5 m steps can do: kept
        ks.add(f)
    assert ks.evicted["outlier"] == 0


def test_a_persistent_jump_is_not_an_outlier():
    ks = KeyframeSet(CFG)
    for f in _track(10, jump_from=5):
        ks.add(f)
    assert ks.evicted["outlier"] == 0 and len(ks) == 10


def test_recheck_against_tf_resets_on_the_newest_and_evicts_revised_older_ones():
    ks = KeyframeSet(CFG)
    for f in _track(4):
        ks.add(f)
    second = ks.frames[1]

    def revised(kf):
        T = kf.T_wc.copy()
        if kf is second:
            T[0, 3] += 1.0
        return T

    assert ks.recheck(revised) is False and all(f is not second for f in ks.frames) and ks.evicted["tf_revised"] == 1
    assert ks.recheck(lambda kf: None) is False and len(ks) == 3  # TF has nothing to say: keep all
    moved = lambda kf: kf.T_wc + np.pad(np.ones((3, 1)), ((0, 1), (3, 0))) if kf is ks.newest else kf.T_wc  # noqa: E731
    assert ks.recheck(moved) is True


def test_time_going_backwards_resets():
    ks = KeyframeSet(CFG)
    ks.add(frame(0.0, stamp=5))
    ks.add(frame(1.0, stamp=6))
    assert ks.add(frame(0.0, stamp=1)) == ("first", "time_backwards")
    assert len(ks) == 1


def test_config_validation():
    with pytest.raises(ValueError, match="max_views"):
        KeyframeConfig(max_views=0)
    with pytest.raises(ValueError, match="buffer_size"):
        KeyframeConfig(buffer_size=0)
    with pytest.raises(ValueError, match="optimal_baseline"):
        KeyframeConfig(optimal_baseline=0.0)
    with pytest.raises(ValueError, match="reference_depth"):
        KeyframeConfig(reference_depth=-1.0)


def test_thresholds_shrink_with_the_scene_depth_only_when_asked():
    near = np.full((8, 8), 0.5)
    near[0, 0] = 0.0  # invalid pixels do not count
    off = KeyframeSet(CFG)
    off.observe_depth(near)
    assert off.scale() == 1.0  # reference_depth 0: fixed metres, whatever the depth
    ks = KeyframeSet(KeyframeConfig(pose_distance=0.1, optimal_baseline=0.15, max_views=3, reference_depth=2.5))
    assert ks.scale() == 1.0  # no depth yet
    ks.add(frame(0.0))
    assert ks.reason_to_add(frame(0.05)) is None  # 5 cm: below 0.1 m
    ks.observe_depth(near)  # a table 0.5 m away: thresholds x 0.2
    assert ks.scene_depth == pytest.approx(0.5) and ks.scale() == pytest.approx(0.2)
    assert ks.reason_to_add(frame(0.05)) == "novel"  # 5 cm >= 0.02 m
    for x in (0.02, 0.04, 0.15):
        ks.add(frame(x))
    assert [kf.T_wc[0, 3] for kf in ks.select(frame(0.0).T_wc, 1)] == [0.04]  # b = 0.03 m, not 0.15
    ks.observe_depth(np.full((4, 4), 10.0))  # far: never above the metre thresholds
    assert ks.scale() == 1.0
    ks.observe_depth(np.full((4, 4), np.nan))  # no valid depth: the last scene depth stays
    assert ks.scene_depth == pytest.approx(10.0)


def test_the_replay_feeds_the_live_depth_back_as_the_node_does():
    from mvgd_ros.eval_scoring import node_conditioning

    track = [frame(0.03 * i, stamp=0.1 * i) for i in range(12)]  # 3 cm a frame
    cfg = KeyframeConfig(pose_distance=0.1, optimal_baseline=0.15, max_views=3, reference_depth=2.5)
    seen = []

    def live_depth(i, views):
        seen.append((i, list(views)))
        return np.full((4, 4), 0.5)

    fixed = node_conditioning(track, set(), cfg)  # no depth: metre thresholds, keyframes 12 cm apart
    scaled = node_conditioning(track, set(), cfg, live_depth=live_depth)
    assert [i for i, _ in seen] == sorted(scaled) and all(scaled[i] == v for i, v in seen)
    gap = lambda views: max(11 - j for j in views)  # noqa: E731  (frames back from the live frame 11)
    assert gap(fixed[11]) == 7 and gap(scaled[11]) < 7  # keyframes every 2 cm, views near b = 3 cm
