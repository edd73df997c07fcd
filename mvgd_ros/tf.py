"""TF for the node: tf2_ros when installed, else our TFTree fed from /tf and /tf_static.

Both backends sit behind one small interface the node uses:
    lookup_ns(target, source, stamp_ns) -> T_target_source (4, 4) float64, or TfLookupError
    can_transform_ns(target, source, stamp_ns) -> bool
stamp_ns is integer nanoseconds (a header stamp's sec * 1e9 + nanosec, exact) or None for the
latest available transform (tf2's Time(0)). `lookup`/`can_transform` take float seconds for
callers that have them. Lookups never block (no timeout): the node keeps frames whose TF has
not arrived in its pending queue and retries, as geometry2's examples advise. Failures are
counted by kind in `failures` (unknown frame / not connected / extrapolation), for diagnostics.

Fallback (no tf2_ros, e.g. a wheels-only machine): subscriptions with tf2_ros' own QoS
(/tf keep-last 100 reliable volatile; /tf_static keep-last 100 reliable transient-local, so
a late-joining node still receives latched statics) feed `mvgd_core.data.tf_tree.TFTree` in
integer nanoseconds, which interpolates like tf2 (lerp + slerp, static edges for all times,
extrapolation errors). Time going backwards is handled per edge: a dynamic sample more than
`JUMP_BACK_S` older than its edge's newest is held back as the start of a new timeline; when
the edge's next sample confirms it (also far in the past: a bag restarted) that edge alone
restarts from the new samples (`jumps_back`); when the next sample continues the old timeline
the held one was a stale message and is dropped (`stale_dropped`). Other edges and statics
are never touched (tf2_ros instead clears the whole buffer when the node's clock jumps back,
which the robot path gets by creating its Buffer with the node).

New-data hook (both backends): `on_new_data`, when set, is called on the executor thread after
a /tf or /tf_static message went into the buffer, so frames waiting for that transform are
re-checked at once rather than on the next timer tick. tf2_ros::MessageFilter does the same
(geometry2 tf2_ros/include/tf2_ros/message_filter.hpp: `add` registers
`buffer_.waitForTransform(..., transformReadyCallback)` for each queued message, and tf2's
BufferCore tests those requests on every transform it stores). The fallback calls the hook
right after a message's inserts (once per message, lock released). tf2_ros' Python package
has no MessageFilter; its Buffer wakes `wait_for_transform_async` futures from its own
overrides of `set_transform` / `set_transform_static` (geometry2 tf2_ros_py/tf2_ros/buffer.py,
`_call_new_data_callbacks`), so the tf2_ros backend subclasses Buffer the same way and
triggers a guard condition whose callback runs on the executor after the listener's callback
returned (the transforms of one message coalesce into one wake-up).

Bounded memory: the fallback keeps at most `MAX_TF_FRAMES` edges (child frames); a new child
beyond that evicts the least recently updated edge (counted in `frames_evicted`, one throttled
warning), so a publisher inventing frame names cannot grow the tree without limit. Lookups of
unknown frames store nothing.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Callable

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Transform, TransformStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from mvgd_core.cameras import make_pose, matrix_to_quat, quat_to_matrix
from mvgd_ros.lru import LruDict

try:  # on a robot
    import tf2_ros
except ImportError:  # wheels-only machine
    tf2_ros = None

TF_QOS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
TF_STATIC_QOS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
JUMP_BACK_S = 1.0
MAX_TF_FRAMES = 4096  # child frames the fallback keeps (a robot has a few hundred)
WARN_EVERY_S = 10.0
NS = 1_000_000_000


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


def stamp_to_ns(stamp) -> int:
    """Exact integer nanoseconds of a builtin_interfaces/Time."""
    return stamp.sec * NS + stamp.nanosec


def sec_to_ns(stamp_s: float | None) -> int | None:
    return None if stamp_s is None else int(round(stamp_s * 1e9))


def ns_to_stamp(ns: int) -> Time:
    """builtin_interfaces/Time of integer nanoseconds (the inverse of `stamp_to_ns`)."""
    sec, nanosec = divmod(int(ns), NS)
    return Time(sec=sec, nanosec=nanosec)


def sec_to_stamp(stamp_s: float) -> Time:
    """builtin_interfaces/Time of float seconds, rounded to the nearest ns: 12.9999999996 is 13 s
    (splitting seconds first gave 12 s and 1e9 ns, or 12 s and 0 ns)."""
    return ns_to_stamp(sec_to_ns(stamp_s))


class FallbackTfBuffer:
    """tf2_ros.Buffer + TransformListener stand-in: a TFTree (integer ns) fed by /tf and /tf_static."""

    backend = "fallback"

    def __init__(self, node: Node, cache_time_s: float = 10.0, max_frames: int = MAX_TF_FRAMES):
        from mvgd_core.data.tf_tree import ExtrapolationError, NotConnectedError, TFTree, UnknownFrameError

        self._errors = ((UnknownFrameError, "unknown_frame"), (NotConnectedError, "not_connected"), (ExtrapolationError, "extrapolation"))
        self._tree = TFTree(cache_time=int(cache_time_s * NS))
        self._jump_ns = int(JUMP_BACK_S * NS)
        self._held: dict[str, tuple] = {}  # child -> (parent, stamp_ns, tq): a possible new timeline, one per edge
        self._lock = threading.Lock()  # callbacks and lookups may run on different executor threads
        self.failures: Counter = Counter()
        self.rejected = 0  # malformed transforms received (bad quaternion, cycle, ...)
        self.jumps_back = 0  # edges restarted because their time went backwards
        self.stale_dropped = 0  # single samples far in an edge's past, dropped
        self._children: LruDict[str, None] = LruDict(max_frames)  # edges by last update (bounded memory)
        self._logger = node.get_logger()
        self._warned_at = -float("inf")
        self.on_new_data: Callable[[], None] | None = None  # see the module docstring
        self._subs = [
            node.create_subscription(tf_message_class(), "/tf", lambda m: self.on_tf_message(m, False), TF_QOS),
            node.create_subscription(tf_message_class(), "/tf_static", lambda m: self.on_tf_message(m, True), TF_STATIC_QOS),
        ]

    def on_tf_message(self, msg, static: bool) -> int:
        """A /tf (static=False) or /tf_static message: insert its transforms, then call on_new_data
        once if any went in (outside the lock: the hook looks transforms up). Returns how many went in."""
        with self._lock:
            added = sum(self.add(t, static) for t in msg.transforms)
        if added and self.on_new_data is not None:
            self.on_new_data()
        return added

    def add(self, t: TransformStamped, static: bool) -> bool:
        """Insert one transform (call with the lock held or from a single thread); False if rejected or held back."""
        from mvgd_core.data.tf_tree import checked_tq

        parent, child = t.header.frame_id.lstrip("/"), t.child_frame_id.lstrip("/")
        tr, q = t.transform.translation, t.transform.rotation
        try:
            tq = checked_tq((tr.x, tr.y, tr.z), (q.x, q.y, q.z, q.w))
            stamp = stamp_to_ns(t.header.stamp)
            if not static and not self._in_timeline(parent, child, stamp, tq):
                return False
            self._tree.insert_checked(parent, child, stamp, tq, static)
        except ValueError:
            self.rejected += 1
            return False
        self._remember(child)
        return True

    def _remember(self, child: str) -> None:
        """Mark `child`'s edge as just updated; beyond max_frames drop the least recently updated edge."""
        evicted = self._children.put(child, None)
        for old, _ in evicted:
            self._tree.drop_edge(old)  # static or dynamic (TFTree.clear_edge keeps statics)
            self._held.pop(old, None)
        now = time.monotonic()
        if evicted and now - self._warned_at >= WARN_EVERY_S:  # own throttle: rclpy's inspects the stack on every call
            self._warned_at = now
            self._logger.warning(f"more than {self._children.cap} TF frames: dropped the least recently updated "
                                 f"({self._children.evicted} so far); is a publisher inventing frame names?")

    @property
    def frames_evicted(self) -> int:
        return self._children.evicted

    def counters(self) -> dict[str, int]:
        """For diagnostics: malformed transforms refused, edges restarted / stale samples dropped, frames evicted."""
        return {"tf_rejected": self.rejected, "tf_jumps_back": self.jumps_back, "tf_stale_dropped": self.stale_dropped,
                "tf_frames_evicted": self.frames_evicted}

    def _in_timeline(self, parent: str, child: str, stamp: int, tq) -> bool:
        """Per-edge time-jump rule (module docstring); True when the sample goes in as usual."""
        rng = self._tree.time_range(parent, child)
        held = self._held.pop(child, None)
        if rng is None or stamp >= rng[1] - self._jump_ns:
            if held is not None:
                self.stale_dropped += 1  # the old timeline went on: the held sample was stale
            return True
        if held is None or held[0] != parent:
            self._held[child] = (parent, stamp, tq)
            return False
        self.jumps_back += 1  # two samples agree on an earlier timeline: this edge restarted
        self._tree.clear_edge(child)
        self._tree.insert_checked(parent, child, held[1], held[2], False)
        return True

    def lookup_ns(self, target: str, source: str, stamp_ns: int | None) -> np.ndarray:
        from mvgd_core.data.tf_tree import tq_to_matrix

        with self._lock:
            try:
                tq = self._tree.lookup_tq(target.lstrip("/"), source.lstrip("/"), stamp_ns)
            except LookupError as exc:
                kind = next((k for cls, k in self._errors if isinstance(exc, cls)), "other")
                self.failures[kind] += 1
                raise TfLookupError(str(exc), kind) from exc
        return tq_to_matrix(tq)

    def can_transform_ns(self, target: str, source: str, stamp_ns: int | None) -> bool:
        with self._lock:
            return self._tree.can_transform(target.lstrip("/"), source.lstrip("/"), stamp_ns)

    def lookup(self, target: str, source: str, stamp_s: float | None) -> np.ndarray:
        return self.lookup_ns(target, source, sec_to_ns(stamp_s))

    def can_transform(self, target: str, source: str, stamp_s: float | None) -> bool:
        return self.can_transform_ns(target, source, sec_to_ns(stamp_s))


class Tf2RosBuffer:
    """The robot path: tf2_ros.Buffer + TransformListener behind the same interface.

    The Buffer is created with the node (tf2_ros Buffer(cache_time, node)): it then follows the
    node's clock, so with use_sim_time a bag loop (the clock jumping back) clears the buffer
    instead of leaving every later lookup an extrapolation."""

    backend = "tf2_ros"

    def __init__(self, node: Node, cache_time_s: float = 10.0):
        from rclpy.duration import Duration

        self.on_new_data: Callable[[], None] | None = None  # see the module docstring
        self._wake = node.create_guard_condition(self._on_wake)
        self._buffer = _notifying_buffer_class()(self._new_data, cache_time=Duration(seconds=cache_time_s), node=node)
        self._listener = tf2_ros.TransformListener(self._buffer, node, spin_thread=False)
        self.failures: Counter = Counter()
        self._kinds = (
            (tf2_ros.LookupException, "unknown_frame"),
            (tf2_ros.ConnectivityException, "not_connected"),
            (tf2_ros.ExtrapolationException, "extrapolation"),
        )

    def _new_data(self) -> None:
        """Called by the Buffer after each inserted transform (the listener's callback): only wake the executor."""
        if self.on_new_data is not None:
            self._wake.trigger()

    def _on_wake(self) -> None:
        if self.on_new_data is not None:
            self.on_new_data()

    @staticmethod
    def _time(stamp_ns: int | None):
        from rclpy.time import Time

        return Time() if stamp_ns is None else Time(nanoseconds=int(stamp_ns))

    def lookup_ns(self, target: str, source: str, stamp_ns: int | None) -> np.ndarray:
        try:
            t = self._buffer.lookup_transform(target, source, self._time(stamp_ns))
        except tf2_ros.TransformException as exc:
            kind = next((k for cls, k in self._kinds if isinstance(exc, cls)), "other")
            self.failures[kind] += 1
            raise TfLookupError(str(exc), kind) from exc
        return transform_to_matrix(t.transform)

    def can_transform_ns(self, target: str, source: str, stamp_ns: int | None) -> bool:
        return self._buffer.can_transform(target, source, self._time(stamp_ns))

    def counters(self) -> dict[str, int]:
        return {}  # tf2_ros keeps its own (it logs TF_REPEATED_DATA, jumps, ...)

    def lookup(self, target: str, source: str, stamp_s: float | None) -> np.ndarray:
        return self.lookup_ns(target, source, sec_to_ns(stamp_s))

    def can_transform(self, target: str, source: str, stamp_s: float | None) -> bool:
        return self.can_transform_ns(target, source, sec_to_ns(stamp_s))


def _notifying_buffer_class():
    """tf2_ros.Buffer that calls `on_insert()` after every set_transform / set_transform_static
    (how tf2_ros' own Buffer drives wait_for_transform_async). Made on use: tf2_ros is optional."""

    class NotifyingBuffer(tf2_ros.Buffer):
        def __init__(self, on_insert: Callable[[], None], **kwargs):
            super().__init__(**kwargs)
            self._on_insert = on_insert

        def set_transform(self, transform, authority):
            super().set_transform(transform, authority)
            self._on_insert()

        def set_transform_static(self, transform, authority):
            super().set_transform_static(transform, authority)
            self._on_insert()

    return NotifyingBuffer


def tf_message_class():
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
