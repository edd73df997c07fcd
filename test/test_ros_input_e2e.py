"""The node keeps up with a real robot (issue 12), over loopback DDS with the node as a subprocess.

Rate, latency and glitch scenarios run `test/fake_model_node.py` (the real node with a
deterministic stand-in model: depth from poses, see there), so what is measured is the input
path, not a network's speed. Each assertion compares two runs of the same process under the
same load (a ratio), never a wall-clock figure. The shift and bad-intrinsics scenarios, with
the real model, are in test_ros_numeric_e2e.py (one node process per module: they never overlap).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from ros_harness import send_until, wait_for

pytest.importorskip("rclpy")
import ros_stream  # noqa: E402
from fake_model_node import TRUE_DEPTH  # noqa: E402
from mvgd_core.cameras import make_pose  # noqa: E402
from mvgd_ros import image_codec  # noqa: E402
from ros_stream import BASE, NS, play_stream  # noqa: E402,F401  (BASE, NS: also for test_ros_numeric_e2e)

pytestmark = pytest.mark.ros

HERE = Path(__file__).resolve().parent


class Io(ros_stream.Io):
    """ros_stream.Io plus the node's reset service."""

    def reset_node(self):
        from std_srvs.srv import Trigger

        client = self.node.create_client(Trigger, "/mvgd_node/reset")
        assert client.wait_for_service(timeout_sec=30)
        future = client.call_async(Trigger.Request())
        wait_for(future.done, "reset")


def _spawn(cmd, *params):
    args = [a for p in params for a in ("-p", p)]
    return subprocess.Popen([*cmd, "--ros-args", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(os.environ), text=True)


def _stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    print(out[-4000:])  # shown when a test fails
    return out


def _connect(io, proc):
    wait_for(lambda: proc.poll() is None and io.image_pub.get_subscription_count() > 0 and io.tf_pub.get_subscription_count() > 0
             and io.info_pub.get_subscription_count() > 0, "the node's subscriptions", deadline=120)
    sub = next(s for s in io.node.subscriptions if s.topic_name == "/mvgd/depth/image")
    wait_for(lambda: sub.get_publisher_count() > 0, "the node's depth publisher", deadline=60)


@contextmanager
def node_process(cmd, *params):
    """The node as a subprocess with `-p` params, connected to a fresh Io; on exit both are
    stopped and the node's output must hold no traceback."""
    proc = _spawn(cmd, *params)
    io = Io()
    try:
        _connect(io, proc)
        yield io
    finally:
        io.close()
        out = _stop(proc)
    assert "Traceback" not in out, out[-3000:]


@pytest.fixture(scope="module")
def fake():
    """The node with the stand-in model; keyframes: a buffer of 3, all of them conditioning (max_views 4),
    so a glitch keyframe that stayed would be used."""
    with node_process([sys.executable, str(HERE / "fake_model_node.py")], "warm_up:=false", "fixed_frame:=odom", "tf_wait_s:=0.5",
                      "keyframe_buffer_size:=3", "max_views:=4", "diagnostics_period_s:=0.2", "torch_threads:=1") as io:
        yield io


COUNTERS = ("total_superseded", "worker_stale", "total_skipped_out_of_order", "drop_tf_timeout", "drop_no_camera_info")


def _counters(io) -> dict[str, int]:
    """The node's input counters from its latest diagnostics (printed: why frames were lost)."""
    time.sleep(0.5)  # two diagnostics periods, so the message reflects the stream that just ended
    with io.lock:
        return {k: int(io.diag.get(k, "0")) for k in COUNTERS}


def test_late_tf_and_offset_camera_info_keep_at_least_80_percent_of_the_depth_rate(fake):
    c0 = _counters(fake)
    perfect = play_stream(fake, BASE, 2.0)
    c1 = _counters(fake)
    late = play_stream(fake, BASE + 100 * NS, 2.0, tf_lag=0.3, info_offset_ns=1_000_000)  # camera_info stamped 1 ms after the image
    c2 = _counters(fake)
    print("counters perfect", {k: c1[k] - c0[k] for k in COUNTERS}, "late", {k: c2[k] - c1[k] for k in COUNTERS})
    got_perfect = sum(fake.depth_at(ns) is not None for ns in perfect)
    got_late = sum(fake.depth_at(ns) is not None for ns in late)
    print(f"depth maps: perfect timing {got_perfect}/{len(perfect)}, TF 0.3 s late + camera_info +1 ms {got_late}/{len(late)}")
    assert got_perfect > len(perfect) // 3, "the perfect stream itself hardly produced depth"
    assert got_late >= 0.8 * got_perfect
    d = image_codec.image_to_depth(fake.depth_at(next(ns for ns in late if fake.depth_at(ns)))[1])
    assert np.allclose(d, TRUE_DEPTH)  # and the late frames carry their own poses


def test_a_frame_that_never_resolves_does_not_raise_good_frames_p99_latency(fake):
    lat = {False: [], True: []}
    for block, ghost in enumerate([False, True, False, True]):  # interleaved: both see the same machine load
        stamps = play_stream(fake, BASE + (200 + 10 * block) * NS, 1.5, ghost=ghost, tf_first=True)
        lat[ghost] += [fake.depth_at(ns)[0] - fake.sent[ns] for ns in stamps if fake.depth_at(ns) is not None]
    p99 = {k: float(np.percentile(v, 99)) for k, v in lat.items()}
    print(f"good-frame latency p99: alone {p99[False] * 1e3:.1f} ms, with never-resolving frames {p99[True] * 1e3:.1f} ms "
          f"({len(lat[False])}, {len(lat[True])} frames)")
    assert len(lat[True]) >= 0.5 * len(lat[False])
    # 20 %, with a 30 ms floor so scheduler noise on a shared 2-core machine is not read as behaviour:
    # a blocking frame would add tf_wait_s (500 ms) to the frames behind it.
    assert p99[True] <= max(1.2 * p99[False], p99[False] + 0.03)


def _gated(io, base, n, glitch_at=None, glitch_m=5.0):
    """One frame at a time (TF, then camera_info + image; wait for its depth): depth per frame index."""
    out = []
    for i in range(n):
        ns = base + i * NS // 10
        true = make_pose(np.eye(3), [0.12 * i, 0.0, 0.0])  # every frame a keyframe (pose distance 0.12 >= 0.1)
        told = true.copy()
        if i == glitch_at:
            told[1, 3] += glitch_m  # one odometry sample metres off
        io.send_tf(ns, told)
        send_until(lambda: io.send_image(ns, true[:3, 3]), lambda: io.depth_at(ns) is not None, f"depth {i}")
        out.append(float(np.nanmean(image_codec.image_to_depth(io.depth_at(ns)[1]))))
    return np.array(out)


def test_one_odometry_glitch_is_forgotten_within_one_keyframe(fake):
    fake.reset_node()
    clean = _gated(fake, BASE + 300 * NS, 12)
    fake.reset_node()
    g = 5
    glitched = _gated(fake, BASE + 400 * NS, 12, glitch_at=g)
    print("clean", clean.round(2), "\nglitch", glitched.round(2))
    assert np.allclose(clean, TRUE_DEPTH)
    assert glitched[g] > 2 * TRUE_DEPTH  # the glitched frame itself is wrong (its own pose is): unavoidable
    np.testing.assert_allclose(glitched[g + 1:], clean[g + 1:], rtol=0.10)  # from the next keyframe on: as if it never happened
    wait_for(lambda: int(fake.diag.get("total_keyframe_outliers", "0")) >= 1, "the eviction counted in diagnostics")


def test_frames_lost_before_the_node_are_counted_in_diagnostics(fake):
    """A 30 Hz camera of which ~60 % of the images never arrive (as with large images over Fast DDS's
    default shared memory, bench_endurance.py): the node's diagnostics report the missing share."""
    kept = np.random.default_rng(3).random(150) < 0.4
    start = time.monotonic()
    for k in range(150):  # 5 s: longer than input_gaps.WINDOW_S, so earlier tests' streams are out of the window
        t = k / 30
        time.sleep(max(0.0, start + t - time.monotonic()))
        ns = BASE + 450 * NS + int(round(t * NS))
        fake.send_tf(ns, ros_stream.pose_at(t))
        if kept[k]:
            fake.send_image(ns, ros_stream.pose_at(t)[:3, 3])
    wait_for(lambda: "input_missing_share" in fake.diag, "the missing share in diagnostics")
    time.sleep(0.5)  # two diagnostics periods after the last image
    with fake.lock:
        share = float(fake.diag["input_missing_share"])
    print(f"missing share: reported {share:.3f}, true {1 - kept.mean():.3f}")
    assert share == pytest.approx(1 - kept.mean(), abs=0.08)


def _set_node_param(io, name, value):
    """The node's mutable parameter over its set_parameters service (as `ros2 param set` does)."""
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    client = io.node.create_client(SetParameters, "/mvgd_node/set_parameters")
    assert client.wait_for_service(timeout_sec=30)
    future = client.call_async(SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()]))
    wait_for(future.done, f"set {name}")
    assert future.result().results[0].successful, future.result().results[0].reason
    io.node.destroy_client(client)


def test_fixed_lag_depth_on_a_30_hz_stream_with_late_tf_keeps_the_rate_and_each_frames_own_pose(fake):
    """Last in the module: its stamps are the newest (older ones would be skipped as out of order).
    lookahead_frames 6 (0.2 s at 30 Hz), TF 0.3 s late: frames wait for newer ones, yet the depth
    rate stays within 80 % of the live stream's and each depth map is its own frame's."""
    live = play_stream(fake, BASE + 500 * NS, 2.0, tf_lag=0.3)
    _set_node_param(fake, "lookahead_frames", 6)
    try:
        lagged = play_stream(fake, BASE + 600 * NS, 2.0, tf_lag=0.3, tail_s=1.0)  # the last frames leave after lookahead_max_wait_s
    finally:
        _set_node_param(fake, "lookahead_frames", 0)
    got_live = [ns for ns in live if fake.depth_at(ns) is not None]
    got = [ns for ns in lagged if fake.depth_at(ns) is not None]
    wait = {k: float(np.median([fake.depth_at(ns)[0] - fake.sent[ns] for ns in v])) for k, v in (("live", got_live), ("lagged", got))}
    print(f"depth maps: live {len(got_live)}/{len(live)}, lookahead 6: {len(got)}/{len(lagged)}; median image -> depth "
          f"{wait['live'] * 1e3:.0f} vs {wait['lagged'] * 1e3:.0f} ms")
    assert len(got_live) > len(live) // 3, "the live stream itself hardly produced depth"
    assert len(got) >= 0.8 * len(got_live)
    assert wait["lagged"] >= wait["live"] + 0.1  # they waited for 6 newer frames (0.2 s of a paced 30 Hz stream)
    for ns in got[:: max(1, len(got) // 5)]:
        assert np.allclose(image_codec.image_to_depth(fake.depth_at(ns)[1]), TRUE_DEPTH)  # its own pose, not a newer frame's

