"""benchmarks/bench_endurance.py's stream and bookkeeping (the ROS run itself is a benchmark, not a test)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from script_loader import load_script

from mvgd_core.cameras import make_pose

end = load_script("benchmarks/bench_endurance.py")


def test_ping_pong_plays_forwards_then_backwards_without_repeating_the_ends():
    assert [end.ping_pong(k, 4) for k in range(9)] == [0, 1, 2, 3, 2, 1, 0, 1, 2]


def test_pose_matches_the_frames_at_their_times_and_interpolates_between():
    def rz(a):
        c, s = np.cos(a), np.sin(a)
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])

    T = np.stack([make_pose(rz(0.1 * k), [k, 0.0, 0.0]) for k in range(3)])
    pose = end.Pose(T, hz=10.0)
    np.testing.assert_allclose(pose.at(0.1), T[1], atol=1e-9)
    mid = pose.at(0.15)
    np.testing.assert_allclose(mid[:3, 3], [1.5, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(mid[:3, :3], rz(0.15), atol=1e-3)
    np.testing.assert_allclose(pose.at(0.3), T[1], atol=1e-9)  # on the way back


def test_mount_is_rep103_optical_frame_looking_along_base_x():
    T = end.mount()
    np.testing.assert_allclose(T[:3, :3] @ [0, 0, 1], [1, 0, 0])  # optical z (forward) = base x
    np.testing.assert_allclose(T[:3, :3] @ [1, 0, 0], [0, -1, 0])  # optical x (right) = base -y
    assert np.isclose(np.linalg.det(T[:3, :3]), 1.0)


def test_schedule_delays_odometry_and_leaves_out_the_outages():
    a = SimpleNamespace(camera_hz=10.0, tf_hz=20.0, tf_lag=0.05, target_hz=1.0, outage_every=2.0, outage_s=0.5)
    ev = end.schedule(a, 5.0)
    assert [due for due, *_ in ev] == sorted(due for due, *_ in ev)
    images = [t for _, _, kind, t in ev if kind == "image"]
    tf = [(due, t) for due, _, kind, t in ev if kind == "tf"]
    assert len(images) == 50
    assert all(due == pytest.approx(t + 0.05) for due, t in tf)
    stamps = [t for _, t in tf]
    assert not [t for t in stamps if 2.0 <= t < 2.5 or 4.0 <= t < 4.5]  # the outages
    assert 1.95 in stamps and 2.5 in stamps and 0.0 in stamps  # before the first one there is none
    assert sum(kind == "target" for _, _, kind, _ in ev) == 5


def test_summary_measures_memory_growth_over_the_second_half_and_counts_log_errors():
    rows = [{"t_min": float(m), "rss_mb": 500.0 + (0 if m < 5 else 3.0 * (m - 5)), "latency_p50_ms": 100.0, "depth_per_s": 10.0}
            for m in range(11)]
    s = end.summary(rows, {"drop_tf_timeout": "7", "worker_stale": "3", "keyframes": "30"}, "ok\n[ERROR] [mvgd_node]: boom\nTraceback (most recent call last):\n")
    assert s["rss_growth_mb_per_min_second_half"] == pytest.approx(3.0, abs=0.3)
    assert s["counters"] == {"drop_tf_timeout": 7, "worker_stale": 3}
    assert s["log_errors"] == 2
    flat = end.summary([dict(r, rss_mb=500.0) for r in rows], {}, "")
    assert flat["rss_growth_mb_per_min_second_half"] == pytest.approx(0.0, abs=1e-9) and flat["log_errors"] == 0


def test_encode_frames_sends_raw_frames_or_decodable_jpegs():
    pytest.importorskip("rclpy")
    from mvgd_ros.image_codec import decode

    rgb = np.zeros((2, 32, 48, 3), np.uint8)
    rgb[1] = (40, 90, 200)
    raw, kb = end.encode_frames(rgb, 0)
    assert kb is None and len(raw) == 2 and np.array_equal(raw[1], rgb[1])
    jpegs, kb = end.encode_frames(rgb, 90)
    assert kb > 0 and [m.format for m in jpegs] == ["rgb8; jpeg compressed bgr8"] * 2
    np.testing.assert_allclose(decode(jpegs[1]).reshape(-1, 3).mean(0), [40, 90, 200], atol=4)


def test_redraw_draws_a_finished_run_again_also_from_a_json_older_than_jpeg_and_param(tmp_path):
    import json

    from PIL import Image

    rows = [{"t_min": 0.5 * (k + 1), "rss_mb": 400.0 + k, "latency_p50_ms": 150.0, "latency_p90_ms": 180.0,
             "depth_per_s": 10.0 + (k % 2)} for k in range(4)]
    settings = {"camera_hz": 30.0, "hw": [240, 320], "tf_hz": 50.0, "tf_lag": 0.05, "minutes": 2.0}  # stop 33's keys
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"settings": settings, "rows": rows}))
    assert end.main(["--redraw", str(path)]) == 0
    assert Image.open(tmp_path / "run.png").size == (900, 320)
    assert end.figure_title(settings) == "mvgd_node, 30 Hz camera 240x320, odometry 50 Hz 50 ms late, 2 min"
    assert end.figure_title({**settings, "jpeg": 90, "param": ["lookahead_frames:=2"]}).endswith("2 min, lookahead_frames:=2")
    assert "JPEG q90" in end.figure_title({**settings, "jpeg": 90})
