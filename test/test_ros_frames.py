"""Pure node helpers: frame conventions, pose checks, intrinsics scaling, offsets, point clouds, diagnostics."""
import json

import numpy as np
import pytest

pytest.importorskip("rclpy")
from geometry_msgs.msg import Pose  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from mvgd_core.cameras import R_BODY_OPTICAL, make_pose  # noqa: E402
from mvgd_ros import diagnostics  # noqa: E402
from mvgd_ros.frames import (  # noqa: E402
    FrameError,
    build_frame,
    camera_pose,
    fill_pose,
    is_optical,
    offset_transforms,
    pose_to_matrix,
    rpy_matrix,
    scale_intrinsics,
)
from mvgd_ros.pointcloud import cloud_to_points, depth_to_points, points_to_cloud  # noqa: E402

K = np.array([[20.0, 0, 7.5], [0, 20.0, 5.5], [0, 0, 1]])


@pytest.mark.parametrize(
    "frame_id, convention, optical",
    [
        ("camera_color_optical_frame", "auto", True),
        ("zed_left_optical", "auto", True),
        ("camera_link", "auto", False),
        ("camera_link", "optical", True),
        ("camera_color_optical_frame", "body", False),
    ],
)
def test_optical_frame_rule(frame_id, convention, optical):
    assert is_optical(frame_id, convention) is optical


def test_body_frames_are_rotated_to_optical():
    T_body = make_pose(np.eye(3), [1.0, 2.0, 0.3])  # REP 103 camera_link looking along world +x
    T = camera_pose(T_body, optical=False)
    np.testing.assert_allclose(T[:3, 2], [1, 0, 0])  # optical z (forward) = body x
    np.testing.assert_allclose(T[:3, 0], [0, -1, 0])  # optical x (right) = body -y
    np.testing.assert_allclose(T[:3, :3], R_BODY_OPTICAL)
    np.testing.assert_allclose(camera_pose(T_body, optical=True), T_body)


def test_non_finite_or_non_rigid_poses_are_bad_pose():
    T = np.eye(4)
    T[0, 3] = np.nan
    with pytest.raises(FrameError) as e:
        camera_pose(T, optical=True)
    assert e.value.reason == "bad_pose"
    S = np.diag([2.0, 1.0, 1.0, 1.0])
    with pytest.raises(FrameError, match="orthonormal"):
        camera_pose(S, optical=True)


def test_build_frame_checks_size_against_camera_info():
    rgb = np.zeros((12, 16, 3), np.uint8)
    f = build_frame(rgb, K, (12, 16), np.eye(4), 3.5, "cam")
    assert (f.stamp, f.frame_id, f.height, f.width) == (3.5, "cam", 12, 16)
    with pytest.raises(FrameError) as e:
        build_frame(rgb, K, (24, 32), np.eye(4), 0.0, "cam")
    assert e.value.reason == "size_mismatch" and "16x12" in str(e.value)
    with pytest.raises(FrameError) as e:
        build_frame(rgb, np.zeros((3, 3)), (12, 16), np.eye(4), 0.0, "cam")
    assert e.value.reason == "bad_frame"


def test_scale_intrinsics_keeps_pixel_centres():
    K2 = scale_intrinsics(K, (12, 16), (24, 32))
    np.testing.assert_allclose(K2, [[40, 0, 15.5], [0, 40, 11.5], [0, 0, 1]])


def test_offsets_and_rpy_follow_tf2():
    np.testing.assert_allclose(rpy_matrix(0, 0, np.pi / 2) @ [1, 0, 0], [0, 1, 0], atol=1e-12)  # yaw about z
    np.testing.assert_allclose(rpy_matrix(np.pi / 2, 0, 0) @ [0, 1, 0], [0, 0, 1], atol=1e-12)  # roll about x
    R = rpy_matrix(0.1, 0.2, 0.3)
    np.testing.assert_allclose(R, rpy_matrix(0, 0, 0.3) @ rpy_matrix(0, 0.2, 0) @ rpy_matrix(0.1, 0, 0))
    Ts = offset_transforms([0.5, 0, 0, 0, 0, 0, 0, 0, -1.0, 0, 0.3, 0])
    assert len(Ts) == 2
    np.testing.assert_allclose(Ts[0][:3, 3], [0.5, 0, 0])
    np.testing.assert_allclose(Ts[1][:3, :3], rpy_matrix(0, 0.3, 0))
    with pytest.raises(ValueError, match="6 numbers"):
        offset_transforms([1.0])


def test_pose_message_to_matrix():
    p = Pose()
    p.position.x, p.orientation.z, p.orientation.w = 2.0, np.sin(np.pi / 4), np.cos(np.pi / 4)
    T = pose_to_matrix(p)
    np.testing.assert_allclose(T[:3, 3], [2, 0, 0])
    np.testing.assert_allclose(T[:3, :3] @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    p.orientation.w = p.orientation.z = 0.0
    with pytest.raises(ValueError):
        pose_to_matrix(p)


def test_fill_pose_is_the_inverse_of_pose_to_matrix():
    T = make_pose(rpy_matrix(0.3, -0.2, 1.1), [1.0, -2.0, 0.5])
    p = fill_pose(Pose(), T)
    np.testing.assert_allclose(pose_to_matrix(p), T, atol=1e-12)
    assert [p.position.x, p.position.y, p.position.z] == [1.0, -2.0, 0.5]


def test_depth_to_cloud_round_trip():
    depth = np.full((12, 16), 2.0, np.float32)
    depth[0, 0] = 0.0  # invalid pixels are left out
    pts = depth_to_points(depth, K)
    assert pts.shape == (12 * 16 - 1, 3) and np.allclose(pts[:, 2], 2.0)
    # pixel (u=7.5, v=5.5) is the principal point: x = y = 0 there; pixel (15, 11) -> ((15-7.5)/20*2, (11-5.5)/20*2)
    np.testing.assert_allclose(pts[-1], [0.75, 0.55, 2.0], atol=1e-6)
    msg = points_to_cloud(pts, Header(frame_id="cam_optical_frame"))
    assert msg.width == len(pts) and msg.point_step == 12 and msg.header.frame_id == "cam_optical_frame"
    assert [f.name for f in msg.fields] == ["x", "y", "z"]
    np.testing.assert_array_equal(cloud_to_points(msg), pts)


def test_stats_snapshot_levels_and_message():
    s = diagnostics.NodeStats()
    s.count("images", 3)
    s.published("depth_published", latency_s=0.2, infer_s=0.1)
    kv = s.snapshot({"pending": "0"})
    assert kv["_level"] == "ok" and kv["total_images"] == "3" and kv["latency_mean_s"] == "0.200" and kv["pending"] == "0"
    s.drop("tf_timeout")
    kv = s.snapshot()
    assert kv["_level"] == "warn" and kv["drop_tf_timeout"] == "1" and kv["dropped_this_period"] == "1"
    assert s.snapshot()["_level"] == "ok"  # per period
    s.count("inference_failed")
    assert s.snapshot()["_level"] == "warn"  # one failure: WARN; repeated: ERROR
    s.count("inference_failed", 2)
    kv = s.snapshot()
    assert kv["_level"] == "error" and "3 inference failures in a row" in kv["_message"]
    s.published("depth_published", 0.1, 0.1)
    assert s.snapshot()["_level"] == "ok" and s.failure_streak == 0  # a success ends the streak
    msg = diagnostics.to_message(kv, "mvgd_node: depth", "cpu x86_64", Header().stamp)
    if diagnostics.DiagnosticArray is None:
        assert json.loads(msg.data)["level"] == "error"
    else:
        st = msg.status[0]
        assert st.level == st.ERROR and {v.key for v in st.values} >= {"total_inference_failed", "latency_mean_s"}
        assert st.hardware_id == "cpu x86_64"


def _health(**kw):
    facts = dict(depth_rate_hz=10.0, depth_wanted=True, since_image_s=0.1, uptime_s=100.0, worker_busy_s=None, failure_streak=0, dropped=0)
    facts.update(kw.pop("facts", {}))
    return diagnostics.summarize(diagnostics.health_checks(diagnostics.HealthConfig(**kw), **facts))


def test_health_checks_follow_diagnostic_updater():
    assert _health() == ("ok", "running")
    # FrequencyStatus: [min, max] * (1 -/+ tolerance); only while someone wants depth
    assert _health(expected_rate_hz=(10.0, 10.0), rate_tolerance=0.1)[0] == "ok"
    assert _health(expected_rate_hz=(12.0, 15.0), rate_tolerance=0.1) == ("warn", "depth rate too low (10.00 Hz < 12 Hz)")
    assert _health(expected_rate_hz=(5.0, 8.0), rate_tolerance=0.1)[1].startswith("depth rate too high")
    assert _health(expected_rate_hz=(5.0, 8.0), facts={"depth_rate_hz": 0.0})[0] == "error"
    assert _health(expected_rate_hz=(5.0, 8.0), facts={"depth_rate_hz": 0.0, "depth_wanted": False})[0] == "ok"
    # stale input, stuck worker, repeated failures, malformed /tf
    assert _health(input_timeout_s=3.0, facts={"since_image_s": 4.0}) == ("warn", "no image for 4.0 s")
    assert _health(input_timeout_s=3.0, facts={"since_image_s": None, "uptime_s": 5.0})[1] == "no image received yet (5.0 s)"
    assert _health(input_timeout_s=0.0, facts={"since_image_s": 400.0})[0] == "ok"
    assert _health(worker_stuck_s=30.0, facts={"worker_busy_s": 31.0})[1].startswith("inference running for 31.0 s")
    assert _health(facts={"failure_streak": 1})[0] == "warn"
    assert _health(facts={"failure_streak": 3, "dropped": 2}) == ("error", "3 inference failures in a row")  # worst level wins
    assert _health(facts={"tf_rejected": 2}) == ("warn", "2 malformed transforms rejected")
    # live depth without parallax: a monocular guess, said so
    level, msg = _health(facts={"observable_share": 0.02})
    assert level == "warn" and "not observable" in msg and "parallax" in msg
    assert _health(facts={"observable_share": 0.6})[0] == "ok" and _health(facts={"observable_share": None})[0] == "ok"
    # fixed-lag depth whose frames mostly expire: lookahead_max_wait_s is too short for the camera's rate
    level, msg = _health(facts={"images": 10, "lookahead_expired": 6})
    assert level == "warn" and "lookahead_max_wait_s" in msg
    assert _health(facts={"images": 10, "lookahead_expired": 2})[0] == "ok" and _health(facts={"images": 2, "lookahead_expired": 2})[0] == "ok"
    # stamps from another clock: a bag replayed on wall time (years behind), a camera clock ahead
    level, msg = _health(facts={"latency_s": 5.6e7})
    assert level == "warn" and "behind this node's clock" in msg and "use_sim_time" in msg
    assert "ahead of" in _health(facts={"latency_s": -3.0})[1]
    assert _health(facts={"latency_s": 0.12})[0] == "ok" and _health(facts={"latency_s": 2.5})[0] == "ok"
    assert _health(clock_skew_warn_s=0.0, facts={"latency_s": 5.6e7})[0] == "ok"  # disabled (mvgd-eval: bags on wall time)
    assert _health(clock_skew_warn_s=3.0, facts={"latency_s": 5.0})[0] == "warn"


def test_observable_share_is_a_period_mean_and_warns_when_low():
    s = diagnostics.NodeStats()
    assert s.snapshot()["depth_observable_share"] == "n/a"
    for v in (0.0, 0.05, None):
        s.observed(v)
    kv = s.snapshot(health=(diagnostics.HealthConfig(input_timeout_s=0.0, worker_stuck_s=0.0), {}))
    assert kv["depth_observable_share"] == "0.025" and kv["_level"] == "warn" and "not observable" in kv["_message"]
    s.observed(0.9)
    kv = s.snapshot()
    assert kv["depth_observable_share"] == "0.900" and kv["_level"] == "ok"  # a new period


def test_refine_rescale_is_a_median_over_recent_live_maps():
    """depth_refine_rescale is the |log| median over the last RESCALE_WINDOW maps, needs
    RESCALE_MIN values, and ignores maps without one (too few replaced pixels)."""
    s = diagnostics.NodeStats()
    for _ in range(diagnostics.RESCALE_MIN - 1):
        s.refined(0.3, -0.15)
    s.refined(0.0, None)
    kv = s.snapshot()
    assert kv["depth_refine_rescale"] == "n/a"  # 9 values: not yet
    s.refined(0.3, 0.15)
    kv = s.snapshot()  # the window outlives the period
    assert kv["depth_refine_rescale"] == "0.150"
    for _ in range(diagnostics.RESCALE_WINDOW):
        s.refined(0.3, 0.02)  # good poses push the old maps out of the window
    kv = s.snapshot()
    assert kv["depth_refine_rescale"] == "0.020"


def test_optical_output_frames_and_target_conventions():
    from mvgd_ros.frames import optical_output_frame, output_size, target_optical_pose

    assert optical_output_frame("cam_optical_frame", "auto") == ("cam_optical_frame", None)
    name, T = optical_output_frame("camera_link", "auto")
    assert name == "camera_link_mvgd_optical"
    np.testing.assert_allclose(T[:3, :3], R_BODY_OPTICAL)  # optical z = body x (forward)
    assert optical_output_frame("camera_link", "optical") == ("camera_link", None)
    T_goal = make_pose(rpy_matrix(0, 0, np.pi / 2), [1.0, 2.0, 0.0])  # RViz 2D Goal Pose: x forward, facing +y
    np.testing.assert_allclose(target_optical_pose(T_goal, "body")[:3, 2], [0, 1, 0], atol=1e-12)  # optical z looks along +y
    np.testing.assert_allclose(target_optical_pose(T_goal, "optical"), T_goal)
    with pytest.raises(ValueError):
        target_optical_pose(T_goal, "sideways")
    assert output_size([24, 32], (16, 16), (480, 640)) == (24, 32)
    assert output_size([0, 0], (16, 16), (480, 640)) == (16, 21)  # the model's height, the input's aspect
    assert output_size([0, 0], (16, 16), (32, 32)) == (16, 16)


def test_mask_depth_turns_invalid_far_near_and_unsure_pixels_into_nan():
    from mvgd_ros.outputs import mask_depth

    d = np.array([[0.5, 1.0, 5.0], [np.inf, -1.0, 2.0]], np.float32)
    c = np.array([[0.9, 0.2, 0.9], [0.9, 0.9, 0.9]], np.float32)
    out = mask_depth(d, c, min_depth=0.8, max_depth=4.0, min_confidence=0.5)
    np.testing.assert_array_equal(np.isnan(out), [[True, True, True], [True, True, False]])
    assert out[1, 2] == 2.0 and not np.isnan(d).any()  # the input is not modified
    np.testing.assert_array_equal(np.isnan(mask_depth(d, None, 0.0, 0.0, 0.5)), [[False, False, False], [True, True, False]])
    with pytest.raises(ValueError, match="confidence"):
        mask_depth(d, c[:, :2], 0.0, 0.0, 0.5)


def test_stamps_from_another_clock_warn_with_the_likely_cause():
    """A bag replayed without /clock: every latency is years; the period's median says so once."""
    s = diagnostics.NodeStats()
    cfg = diagnostics.HealthConfig(input_timeout_s=0.0, worker_stuck_s=0.0)
    for lat in (5.6e7, 5.6e7 + 0.1, 0.2):
        s.published("depth_published", lat, 0.1)
    kv = s.snapshot(health=(cfg, {}))
    assert kv["_level"] == "warn" and "use_sim_time" in kv["_message"]
    s.published("depth_published", 0.15, 0.1)
    assert s.snapshot(health=(cfg, {}))["_level"] == "ok"  # a new period, stamps in the node's clock
