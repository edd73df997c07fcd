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
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from ros_harness import send_until, wait_for

rclpy = pytest.importorskip("rclpy")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from fake_model_node import TRUE_DEPTH, encode_position  # noqa: E402
from mvgd_core.cameras import make_pose  # noqa: E402
from mvgd_ros import image_codec  # noqa: E402
from mvgd_ros.tf import TF_STATIC_QOS, broadcast_message  # noqa: E402

pytestmark = pytest.mark.ros

HERE = Path(__file__).resolve().parent
CAM = "cam_optical_frame"
NS = 1_000_000_000
BASE = 1_700_000_000 * NS  # epoch-sized stamps, as on a robot
K16 = np.array([[16.0, 0.0, 7.5], [0.0, 16.0, 7.5], [0.0, 0.0, 1.0]])


def stamp(ns: int):
    h = Header()
    h.stamp.sec, h.stamp.nanosec = divmod(int(ns), NS)
    return h.stamp


class Io:
    """Test-side publishers and collectors in their own context; depth arrivals are timed."""

    def __init__(self, image_topic="image", info_topic="camera_info"):
        from diagnostic_msgs.msg import DiagnosticArray
        from tf2_msgs.msg import TFMessage

        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node("input_e2e", context=self.ctx)
        qos = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
        self.TFMessage = TFMessage
        self.image_pub = self.node.create_publisher(Image, image_topic, qos)
        self.info_pub = self.node.create_publisher(CameraInfo, info_topic, qos)
        self.tf_pub = self.node.create_publisher(TFMessage, "/tf", QoSProfile(depth=200))
        self.tf_static_pub = self.node.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS)
        self.lock = threading.Lock()
        self.depth: dict[int, tuple[float, Image]] = {}  # stamp ns -> (monotonic arrival, msg)
        self.sent: dict[int, float] = {}  # image stamp ns -> monotonic send time
        self.diag: dict[str, str] = {}
        self.node.create_subscription(Image, "mvgd/depth/image", self._on_depth, qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on_depth(self, msg):
        with self.lock:
            self.depth[msg.header.stamp.sec * NS + msg.header.stamp.nanosec] = (time.monotonic(), msg)

    def _on_diag(self, msg):
        with self.lock:
            self.diag = {v.key: v.value for v in msg.status[0].values}

    def depth_at(self, ns):
        with self.lock:
            return self.depth.get(ns)

    def send_tf(self, ns: int, T, child=CAM):
        self.tf_pub.publish(self.TFMessage(transforms=[broadcast_message("odom", child, T, stamp(ns))]))

    def send_image(self, ns: int, true_pos, frame_id=CAM, info_offset_ns=0, K=K16, rgb=None):
        header = Header(stamp=stamp(ns), frame_id=frame_id)
        rgb = encode_position(np.full((16, 16, 3), 100, np.uint8), true_pos) if rgb is None else rgb
        self.info_pub.publish(image_codec.make_camera_info(K, rgb.shape[:2], Header(stamp=stamp(ns + info_offset_ns), frame_id=frame_id)))
        self.sent[ns] = time.monotonic()
        self.image_pub.publish(image_codec.rgb_to_image(rgb, header))

    def reset_node(self):
        from std_srvs.srv import Trigger

        client = self.node.create_client(Trigger, "/mvgd_node/reset")
        assert client.wait_for_service(timeout_sec=30)
        future = client.call_async(Trigger.Request())
        wait_for(future.done, "reset")

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)


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


def pose_at(t: float) -> np.ndarray:
    return make_pose(np.eye(3), [0.5 * t, 0.0, 0.0])  # 0.5 m/s along the optical x axis


def _stream(io, base, seconds, cam_hz=30, tf_hz=50, tf_lag=0.0, info_offset_ns=0, ghost=False, tf_first=False):
    """Play a camera (and optionally a never-resolving 'ghost' camera) with TF `tf_lag` s late, paced in
    wall time; then TF a little longer so the tail can resolve. Returns the image stamps sent."""
    events = []
    n = int(seconds * cam_hz)
    for k in range(n):
        t = k / cam_hz
        ns = base + int(round(t * NS))
        events.append((t, 1, lambda ns=ns, t=t: io.send_image(ns, pose_at(t)[:3, 3], info_offset_ns=info_offset_ns)))
        if ghost:  # an image between every two, in a frame TF never hears of
            g = ns + NS // (2 * cam_hz)
            events.append((t + 0.5 / cam_hz, 1, lambda g=g: io.send_image(g, [0, 0, 0], frame_id="ghost_optical_frame")))
        if tf_first:
            events.append((t, 0, lambda ns=ns, t=t: io.send_tf(ns, pose_at(t))))
    if not tf_first:
        for j in range(int((seconds + 0.2) * tf_hz) + 1):
            t = j / tf_hz
            events.append((t + tf_lag, 0, lambda t=t: io.send_tf(base + int(round(t * NS)), pose_at(t))))
    start = time.monotonic()
    for due, _, fn in sorted(events, key=lambda e: (e[0], e[1])):
        delay = start + due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        fn()
    time.sleep(0.4 + tf_lag)
    return [base + int(round(k / cam_hz * NS)) for k in range(n)]


COUNTERS = ("total_superseded", "worker_stale", "total_skipped_out_of_order", "drop_tf_timeout", "drop_no_camera_info")


def _counters(io) -> dict[str, int]:
    """The node's input counters from its latest diagnostics (printed: why frames were lost)."""
    time.sleep(0.5)  # two diagnostics periods, so the message reflects the stream that just ended
    with io.lock:
        return {k: int(io.diag.get(k, "0")) for k in COUNTERS}


def test_late_tf_and_offset_camera_info_keep_at_least_80_percent_of_the_depth_rate(fake):
    c0 = _counters(fake)
    perfect = _stream(fake, BASE, 2.0)
    c1 = _counters(fake)
    late = _stream(fake, BASE + 100 * NS, 2.0, tf_lag=0.3, info_offset_ns=1_000_000)  # camera_info stamped 1 ms after the image
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
        stamps = _stream(fake, BASE + (200 + 10 * block) * NS, 1.5, ghost=ghost, tf_first=True)
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
