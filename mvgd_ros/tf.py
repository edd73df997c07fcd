"""TF for the node: tf2_ros when installed, else our TFTree fed from /tf and /tf_static.

Both backends sit behind one small interface the node uses:
    lookup(target, source, stamp_s) -> T_target_source (4, 4) float64, or TfLookupError
    can_transform(target, source, stamp_s) -> bool
stamp_s is seconds (float) or None for the latest available transform (tf2's Time(0)).
Lookups never block (no timeout): the node keeps frames whose TF has not arrived in its
pending queue and retries, as geometry2's examples advise. Failures are counted by kind in
`failures` (unknown frame / not connected / extrapolation), for diagnostics.

Fallback (no tf2_ros, e.g. a wheels-only machine): subscriptions with tf2_ros' own QoS
(/tf keep-last 100 reliable volatile; /tf_static keep-last 100 reliable transient-local, so
a late-joining node still receives latched statics) feed `mvgd_core.data.tf_tree.TFTree`,
which interpolates like tf2 (lerp + slerp, static edges for all times, extrapolation errors).
Like tf2_ros, a dynamic sample more than `JUMP_BACK_S` older than its edge's newest means time
jumped back (a bag restarted): the dynamic history is cleared, static transforms are kept.
"""
from __future__ import annotations

import threading
from collections import Counter

import numpy as np
from geometry_msgs.msg import Transform, TransformStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from mvgd_core.cameras import make_pose, matrix_to_quat, quat_to_matrix

try:  # on a robot
    import tf2_ros
except ImportError:  # wheels-only machine
    tf2_ros = None

TF_QOS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
TF_STATIC_QOS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
JUMP_BACK_S = 1.0


class TfLookupError(LookupError):
    """A transform is not (yet) available; `kind` is 'unknown_frame', 'not_connected' or 'extrapolation'."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


def transform_to_matrix(t: Transform) -> np.ndarray:
    """(4, 4) float64 from a geometry_msgs/Transform; ValueError for a non-finite or zero quaternion."""
    q = (t.rotation.x, t.rotation.y, t.rotation.z, t.rotation.w)
    p = (t.translation.x, t.translation.y, t.translation.z)
    if not np.isfinite(p).all():
        raise ValueError(f"translation contains NaN or Inf: {p}")
    return make_pose(quat_to_matrix(q), p)


def matrix_to_transform(T: np.ndarray) -> Transform:
    """geometry_msgs/Transform from a (4, 4) rigid transform."""
    out = Transform()
    out.translation.x, out.translation.y, out.translation.z = (float(v) for v in T[:3, 3])
    q = matrix_to_quat(T[:3, :3])
    out.rotation.x, out.rotation.y, out.rotation.z, out.rotation.w = (float(v) for v in q)
    return out


def stamp_to_sec(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


class FallbackTfBuffer:
    """tf2_ros.Buffer + TransformListener stand-in: a TFTree fed by /tf and /tf_static subscriptions."""

    backend = "fallback"

    def __init__(self, node: Node, cache_time_s: float = 10.0):
        from mvgd_core.data.tf_tree import ExtrapolationError, NotConnectedError, TFTree, UnknownFrameError

        self._errors = ((UnknownFrameError, "unknown_frame"), (NotConnectedError, "not_connected"), (ExtrapolationError, "extrapolation"))
        self._tree = TFTree(cache_time=cache_time_s)
        self._static: dict[str, tuple[str, np.ndarray]] = {}  # child -> (parent, T): survives jumps back
        self._lock = threading.Lock()  # callbacks and lookups may run on different executor threads
        self.failures: Counter = Counter()
        self.rejected = 0  # malformed transforms received (bad quaternion, cycle, ...)
        self.jumps_back = 0
        self._subs = [
            node.create_subscription(_tf_message_class(), "/tf", lambda m: self._on_tf(m, False), TF_QOS),
            node.create_subscription(_tf_message_class(), "/tf_static", lambda m: self._on_tf(m, True), TF_STATIC_QOS),
        ]

    def _on_tf(self, msg, static: bool) -> None:
        with self._lock:
            for t in msg.transforms:
                self.add(t, static)

    def add(self, t: TransformStamped, static: bool) -> bool:
        """Insert one transform (call with the lock held or from a single thread); False if rejected."""
        parent, child, stamp = t.header.frame_id.lstrip("/"), t.child_frame_id.lstrip("/"), stamp_to_sec(t.header.stamp)
        try:
            T = transform_to_matrix(t.transform)
            if not static:
                rng = self._tree.time_range(parent, child)
                if rng is not None and stamp < rng[1] - JUMP_BACK_S:
                    self._clear_dynamic()
            self._tree.set_transform(parent, child, stamp, T, static=static)
        except ValueError:
            self.rejected += 1
            return False
        if static:
            self._static[child] = (parent, T)
        return True

    def _clear_dynamic(self) -> None:
        self.jumps_back += 1
        self._tree.clear()
        for child, (parent, T) in self._static.items():
            self._tree.set_transform(parent, child, 0.0, T, static=True)

    def lookup(self, target: str, source: str, stamp_s: float | None) -> np.ndarray:
        with self._lock:
            try:
                return self._tree.lookup(target.lstrip("/"), source.lstrip("/"), stamp_s)
            except LookupError as exc:
                kind = next((k for cls, k in self._errors if isinstance(exc, cls)), "other")
                self.failures[kind] += 1
                raise TfLookupError(str(exc), kind) from exc

    def can_transform(self, target: str, source: str, stamp_s: float | None) -> bool:
        with self._lock:
            return self._tree.can_transform(target.lstrip("/"), source.lstrip("/"), stamp_s)


class Tf2RosBuffer:
    """The robot path: tf2_ros.Buffer + TransformListener behind the same interface."""

    backend = "tf2_ros"

    def __init__(self, node: Node, cache_time_s: float = 10.0):
        from rclpy.duration import Duration

        self._buffer = tf2_ros.Buffer(cache_time=Duration(seconds=cache_time_s))
        self._listener = tf2_ros.TransformListener(self._buffer, node, spin_thread=False)
        self.failures: Counter = Counter()
        self._kinds = (
            (tf2_ros.LookupException, "unknown_frame"),
            (tf2_ros.ConnectivityException, "not_connected"),
            (tf2_ros.ExtrapolationException, "extrapolation"),
        )

    @staticmethod
    def _time(stamp_s: float | None):
        from rclpy.time import Time

        return Time() if stamp_s is None else Time(nanoseconds=int(round(stamp_s * 1e9)))

    def lookup(self, target: str, source: str, stamp_s: float | None) -> np.ndarray:
        try:
            t = self._buffer.lookup_transform(target, source, self._time(stamp_s))
        except tf2_ros.TransformException as exc:
            kind = next((k for cls, k in self._kinds if isinstance(exc, cls)), "other")
            self.failures[kind] += 1
            raise TfLookupError(str(exc), kind) from exc
        return transform_to_matrix(t.transform)

    def can_transform(self, target: str, source: str, stamp_s: float | None) -> bool:
        return self._buffer.can_transform(target, source, self._time(stamp_s))


def _tf_message_class():
    try:
        from tf2_msgs.msg import TFMessage
    except ImportError as exc:
        raise ImportError("tf2_msgs is not installed: on a robot install ros-<distro>-tf2-msgs; without a distro, `make venv` builds it") from exc
    return TFMessage


def make_tf_buffer(node: Node, cache_time_s: float = 10.0, backend: str = "auto"):
    """tf2_ros when importable (or backend='tf2_ros'), else the fallback (or backend='fallback')."""
    if backend not in ("auto", "tf2_ros", "fallback"):
        raise ValueError(f"tf backend must be auto, tf2_ros or fallback, got {backend!r}")
    if backend == "tf2_ros" or (backend == "auto" and tf2_ros is not None):
        if tf2_ros is None:
            raise ImportError("tf2_ros is not installed (backend='tf2_ros' requested)")
        return Tf2RosBuffer(node, cache_time_s)
    return FallbackTfBuffer(node, cache_time_s)


def broadcast_message(parent: str, child: str, T: np.ndarray, stamp) -> TransformStamped:
    """TransformStamped of T_parent_child, for publishing our own frames (virtual cameras)."""
    t = TransformStamped()
    t.header.frame_id, t.header.stamp, t.child_frame_id = parent, stamp, child
    t.transform = matrix_to_transform(T)
    return t
