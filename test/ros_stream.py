"""A robot-like input stream over DDS for the node's input path: test-side publishers and a
depth collector (`Io`) and a camera + odometry TF schedule paced in wall time (`play_stream`).
Shared by test/test_ros_input_e2e.py (and test_ros_numeric_e2e.py) and benchmarks/bench_input.py.
"""
from __future__ import annotations

import time

import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from fake_model_node import encode_position
from mvgd_core.cameras import make_pose
from mvgd_ros.feed import Feed
from mvgd_ros.tf import ns_to_stamp, stamp_to_ns

CAM = "cam_optical_frame"
NS = 1_000_000_000
BASE = 1_700_000_000 * NS  # epoch-sized stamps, as on a robot
K16 = np.array([[16.0, 0.0, 7.5], [0.0, 16.0, 7.5], [0.0, 0.0, 1.0]])


stamp = ns_to_stamp


class Io(Feed):
    """The feed, with a depth collector (arrivals timed) and the node's diagnostics."""

    def __init__(self, image_topic="image", info_topic="camera_info", depth_topics=("mvgd/depth/image",), name="input_e2e"):
        from diagnostic_msgs.msg import DiagnosticArray

        super().__init__(name, image_topic=image_topic, info_topic=info_topic, qos_depth=200, tf_depth=200)
        self.depth: dict[int, tuple[float, Image]] = {}  # stamp ns -> (monotonic first arrival, msg)
        self.sent: dict[int, float] = {}  # image stamp ns -> monotonic send time
        self.diag: dict[str, str] = {}
        self.message = ""  # the node's latest diagnostics summary
        for topic in depth_topics:  # benchmarks against older code add its output name
            self.node.create_subscription(Image, topic, self._on_depth, self.qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.start()

    def _on_depth(self, msg):
        with self.lock:
            self.depth.setdefault(stamp_to_ns(msg.header.stamp), (time.monotonic(), msg))  # first arrival

    def _on_diag(self, msg):
        with self.lock:
            self.diag = {v.key: v.value for v in msg.status[0].values}
            self.message = msg.status[0].message

    def depth_at(self, ns):
        with self.lock:
            return self.depth.get(ns)

    def send_tf(self, ns: int, T, child=CAM):
        self.publish_tf("odom", child, T, stamp(ns))

    def send_image(self, ns: int, true_pos, frame_id=CAM, info_offset_ns=0, K=K16, rgb=None):
        header = Header(stamp=stamp(ns), frame_id=frame_id)
        rgb = encode_position(np.full((16, 16, 3), 100, np.uint8), true_pos) if rgb is None else rgb
        self.sent[ns] = time.monotonic()
        self.publish_image(rgb, K, header, info_header=Header(stamp=stamp(ns + info_offset_ns), frame_id=frame_id))


def pose_at(t: float) -> np.ndarray:
    return make_pose(np.eye(3), [0.5 * t, 0.0, 0.0])  # 0.5 m/s along the optical x axis


def play_stream(io, base, seconds, cam_hz=30, tf_hz=50, tf_lag=0.0, info_offset_ns=0, ghost=False, tf_first=False, tail_s=0.4):
    """Play a camera (and optionally a never-resolving 'ghost' camera) with TF `tf_lag` s late, paced in
    wall time; then TF a little longer so the tail can resolve, and wait `tail_s` + `tf_lag` s.
    Returns the image stamps sent."""
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
    time.sleep(tail_s + tf_lag)
    return [base + int(round(k / cam_hz * NS)) for k in range(n)]
