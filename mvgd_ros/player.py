"""rosbag2 player without ros2cli: read with `rosbags`, publish the raw CDR bytes with rclpy.

Works on sqlite3 and mcap rosbag2 bags (our writer's and other REP-105 tools'). Each topic
gets an rclpy publisher of the bag's message class (imported from the installed interface
packages, e.g. `sensor_msgs.msg.Image`), and the serialized bytes go out unchanged.

Timing: messages are paced by bag time divided by `rate`, or, with `gate`
(`--as-fast-as-node-keeps-up`), published back to back while a gate callback blocks after
each trigger message (the image) until the node has answered or a timeout passed.
`/tf` messages may be sent `tf_lead` seconds of bag time early. The default is 0 (bag order,
what `ros2 bag play` does); a gated run needs a lead (0.5 s by default there), so that a node
interpolating TF at an image's stamp already has the samples after it (otherwise the player
and the node would wait for each other). `/tf_static` goes out first, transient-local.

Streaming: `BagPlayer.from_bag` reads the bag while it plays (a small look-ahead buffer for the
/tf lead), so memory does not grow with the bag. `read_messages` still returns a list for
callers that filter messages first (mvgd-eval).

QoS: /tf_static reliable + transient local (like tf2_ros' static broadcaster); every other
topic reliable, volatile, keep-last 10 - a reliable writer matches both reliable readers and
best-effort SensorDataQoS readers, so image topics reach sensor-data subscribers.

CLI: `mvgd-play BAG [--rate R | --as-fast-as-node-keeps-up --wait-topic /mvgd/depth/image] [--tf-lead S] [--topics ...]`
"""
from __future__ import annotations

import argparse
import heapq
import importlib
import struct
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from rosbags.highlevel import AnyReader


class BagError(RuntimeError):
    """The bag is missing, unreadable, empty, or lacks a requested topic."""


@dataclass
class BagMessage:
    """One message as stored: topic, type name, raw CDR, bag time (ns), header stamp (s) or None."""

    topic: str
    msgtype: str
    raw: bytes
    bag_ns: int
    stamp: float | None


def header_stamp(raw: bytes) -> float | None:
    """Header stamp (s) of a serialized message whose first field is std_msgs/Header.

    CDR: 4-byte encapsulation (byte 1: 1 = little endian), then int32 sec, uint32 nanosec.
    """
    if len(raw) < 12:
        return None
    fmt = "<iI" if raw[1] == 1 else ">iI"
    sec, nsec = struct.unpack_from(fmt, raw, 4)
    return sec + nsec * 1e-9


def message_class(msgtype: str):
    """`sensor_msgs/msg/Image` -> the installed rclpy class; BagError with a hint when missing."""
    pkg, _, name = msgtype.rpartition("/")
    pkg = pkg.replace("/", ".")
    try:
        return getattr(importlib.import_module(pkg), name)
    except (ImportError, AttributeError) as exc:
        hint = " (tf2_msgs is built by `make venv`)" if msgtype.startswith("tf2_msgs/") else ""
        raise BagError(f"no Python message class for {msgtype}: {exc}{hint}") from exc


def _has_header(reader: AnyReader, msgtype: str) -> bool:
    try:
        fields = reader.typestore.fielddefs[msgtype][1]
        return bool(fields) and fields[0][0] == "header" and fields[0][1][1] == "std_msgs/msg/Header"
    except (KeyError, IndexError, TypeError):
        return False


def open_bag(path) -> AnyReader:
    """An opened AnyReader; BagError for a missing or unreadable bag."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"bag not found: {path}")
    try:
        reader = AnyReader([path])
        reader.open()
    except Exception as exc:  # rosbags raises several types for corrupt/foreign files
        raise BagError(f"cannot read bag {path}: {type(exc).__name__}: {exc}") from exc
    return reader


def bag_topics(path) -> dict[str, tuple[str, int]]:
    """{topic: (msgtype, message count)} of a bag."""
    reader = open_bag(path)
    try:
        out: dict[str, tuple[str, int]] = {}
        for c in reader.connections:
            t, n = out.get(c.topic, (c.msgtype, 0))
            out[c.topic] = (t, n + c.msgcount)
        return out
    finally:
        reader.close()


def _checked_connections(reader: AnyReader, path, topics: Iterable[str] | None, required: Iterable[str]):
    """Connections of `topics` (all if None); BagError for an empty bag or an absent topic."""
    have = {c.topic for c in reader.connections}
    total = sum(c.msgcount for c in reader.connections)
    if not reader.connections or total == 0:
        raise BagError(f"bag {path} is empty (no messages)")
    wanted = set(have) if topics is None else set(topics)
    missing = sorted((wanted | set(required)) - have)
    if missing:
        listing = ", ".join(f"{c.topic} [{c.msgtype}]" for c in reader.connections)
        raise BagError(f"bag {path} has no topic(s) {missing}; it has: {listing}")
    return [c for c in reader.connections if c.topic in wanted]


def iter_messages(path, topics: Iterable[str] | None = None, required: Iterable[str] = (), exclude: Iterable[str] = ()) -> Iterator[BagMessage]:
    """Messages of `topics` (all if None) minus `exclude`, in bag-time order, read lazily.

    Errors (missing/empty bag, absent topic) are raised at the call, before the first message."""
    reader = open_bag(path)
    try:
        conns = [c for c in _checked_connections(reader, path, topics, required) if c.topic not in set(exclude)]
    except BagError:
        reader.close()
        raise
    return _stream(reader, conns)


def _stream(reader: AnyReader, conns) -> Iterator[BagMessage]:
    try:
        headers = {c.msgtype: _has_header(reader, c.msgtype) for c in conns}
        if not conns:
            return
        for c, t, raw in reader.messages(connections=conns):  # rosbags merges connections in time order
            raw = bytes(raw)
            yield BagMessage(c.topic, c.msgtype, raw, t, header_stamp(raw) if headers[c.msgtype] else None)
    finally:
        reader.close()


def read_messages(path, topics: Iterable[str] | None = None, required: Iterable[str] = ()) -> list[BagMessage]:
    """All messages of `topics` (all if None) in bag-time order, as a list.

    Raises BagError for an empty bag, or when a topic in `required` (or any of `topics`) is absent.
    """
    return sorted(iter_messages(path, topics, required), key=lambda m: m.bag_ns)


def lead_order(messages: Iterable[BagMessage], lead_ns: int, early_topics=("/tf",)) -> Iterator[BagMessage]:
    """Messages in bag order with `early_topics` moved `lead_ns` earlier: sorted by
    bag_ns - lead for those, bag_ns for the rest, holding back only `lead_ns` of bag time."""
    if lead_ns <= 0:
        yield from messages
        return
    early = set(early_topics)
    heap: list[tuple[int, int, BagMessage]] = []
    for i, m in enumerate(messages):  # input in bag_ns order: a key <= newest bag_ns - lead is final
        heapq.heappush(heap, (m.bag_ns - (lead_ns if m.topic in early else 0), i, m))
        while heap and heap[0][0] <= m.bag_ns - lead_ns:
            yield heapq.heappop(heap)[2]
    while heap:
        yield heapq.heappop(heap)[2]


class BagPlayer:
    """Publishes bag messages through an rclpy node.

    node: an rclpy Node (spun elsewhere, e.g. by an executor thread, if `gate` needs callbacks).
    messages: from `read_messages` (or use `BagPlayer.from_bag` to stream). remap: {bag topic:
    published topic}. rate: bag-time speed multiplier (ignored when a gate is given). tf_lead:
    seconds of bag time /tf is sent early (0 = bag order, like `ros2 bag play`).
    """

    def __init__(self, node, messages: list[BagMessage] | None, rate: float = 1.0, remap: dict | None = None, tf_lead: float = 0.0,
                 static_topics=("/tf_static",), _stream: tuple | None = None):
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        if tf_lead < 0:
            raise ValueError(f"tf_lead must be >= 0, got {tf_lead}")
        self.node, self.rate, self.tf_lead = node, rate, tf_lead
        self.remap = dict(remap or {})
        self.static_topics = set(static_topics)
        if _stream is None:
            if not messages:
                raise BagError("nothing to play: no messages")
            types = {m.topic: m.msgtype for m in messages}
            self._static = [m for m in messages if m.topic in self.static_topics]
            rest = sorted((m for m in messages if m.topic not in self.static_topics), key=lambda m: m.bag_ns)
            self._source, self.total = (lambda: iter(rest)), len(messages)
        else:
            types, self._static, self._source, self.total = _stream
        self.read_count = 0  # messages taken from the source so far (streaming shows in it)
        static_qos = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        qos = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
        self.publishers = {}
        for topic, msgtype in sorted(types.items()):
            cls = message_class(msgtype)
            self.publishers[topic] = node.create_publisher(cls, self.remap.get(topic, topic), static_qos if topic in self.static_topics else qos)

    @classmethod
    def from_bag(cls, node, path, topics: Iterable[str] | None = None, **kwargs) -> "BagPlayer":
        """A player that streams `path` while playing (the static topics are read first, they are few)."""
        static_topics = tuple(kwargs.pop("static_topics", ("/tf_static",)))
        info = bag_topics(path)
        wanted = set(info) if topics is None else set(topics)
        missing = sorted(wanted - set(info))
        if missing:
            raise BagError(f"bag {path} has no topic(s) {missing}; it has: {', '.join(sorted(info))}")
        total = sum(n for t, (_, n) in info.items() if t in wanted)
        if total == 0:
            raise BagError(f"bag {path} is empty (no messages)")
        statics = [t for t in wanted if t in static_topics]
        static = list(iter_messages(path, statics)) if statics else []
        dynamic = sorted(wanted - set(statics))
        source = (lambda: iter_messages(path, dynamic)) if dynamic else (lambda: iter(()))
        types = {t: info[t][0] for t in wanted}
        return cls(node, None, static_topics=static_topics, _stream=(types, static, source, total), **kwargs)

    def _counted(self, it: Iterable[BagMessage]) -> Iterator[BagMessage]:
        for m in it:
            self.read_count += 1
            yield m

    def wait_for_subscribers(self, topics: Iterable[str], timeout: float = 10.0) -> list[str]:
        """Wait until every publisher of `topics` (bag names) has a subscriber; returns those still without."""
        end = time.monotonic() + timeout
        pending = [t for t in topics if t in self.publishers]
        while True:
            pending = [t for t in pending if self.publishers[t].get_subscription_count() == 0]
            if not pending or time.monotonic() >= end:
                return pending
            time.sleep(0.05)

    def play(self, gate: Callable[[BagMessage], None] | None = None, trigger_topics=(), on_publish: Callable[[BagMessage, float], None] | None = None,
             skip: Callable[[BagMessage], bool] | None = None, progress: bool = True) -> int:
        """Publish everything; returns the number of messages published.

        gate(msg) is called after publishing each message on `trigger_topics` and may block
        (e.g. until the node's output for msg.stamp arrived); with a gate there is no
        bag-time pacing. on_publish(msg, wall_time) after each publish; skip(msg) -> True
        withholds a message (held-out frames).
        """
        from tqdm import tqdm

        trig = set(trigger_topics)
        lead_ns = int(round(self.tf_lead * 1e9))
        n = 0
        t0_wall = t0_key = None
        bar = tqdm(total=self.total, desc="play", unit="msg", disable=not progress, file=sys.stderr, leave=False)
        for m in _chain(self._static, lead_order(self._counted(self._source()), lead_ns)):
            bar.update(1)
            if skip is not None and skip(m):
                continue
            if gate is None and m.topic not in self.static_topics:
                key = m.bag_ns - (lead_ns if m.topic == "/tf" else 0)
                if t0_wall is None:
                    t0_wall, t0_key = time.monotonic(), key
                delay = t0_wall + (key - t0_key) / 1e9 / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            self.publishers[m.topic].publish(m.raw)
            n += 1
            if on_publish is not None:
                on_publish(m, time.time())
            if gate is not None and m.topic in trig:
                gate(m)
        bar.close()
        return n


def _chain(first: list, rest: Iterable) -> Iterator:
    yield from first
    yield from rest


class OutputWaiter:
    """Gate for `--as-fast-as-node-keeps-up`: records stamps seen on an output topic.

    `wait(stamp, timeout)` blocks until an output with that header stamp (within 1 ms) arrived;
    returns True, or False on timeout. Subscribes raw (no deserialization cost).
    """

    def __init__(self, node, topic: str, msg_cls, qos_depth: int = 10):
        self._cv = threading.Condition()
        self.stamps: dict[float, float] = {}  # stamp -> receive wall time
        node.create_subscription(msg_cls, topic, self._cb, qos_depth, raw=True)

    def _cb(self, raw: bytes) -> None:
        s = header_stamp(raw)
        with self._cv:
            self.stamps[round(s, 3)] = time.time()
            self._cv.notify_all()

    def wait(self, stamp: float, timeout: float) -> bool:
        key = round(stamp, 3)
        with self._cv:
            return self._cv.wait_for(lambda: key in self.stamps, timeout)


GATED_TF_LEAD_S = 0.5  # default lead with --as-fast-as-node-keeps-up (see the module docstring)


class SpinThread:
    """Spins an executor on a thread until `stop()`, which joins it before anything is destroyed.

    Shutting the executor down (or destroying its node) while `spin()` still runs on another
    thread aborted the process (SIGABRT, exit 134) at the end of every mvgd-play run."""

    def __init__(self, executor, period_s: float = 0.05):
        self._executor, self._period, self._stop = executor, period_s, threading.Event()
        self._thread = threading.Thread(target=self._run, name="mvgd-play-spin", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and self._executor.context.ok():
            self._executor.spin_once(timeout_sec=self._period)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="mvgd-play", description="Play a rosbag2 (sqlite3 or mcap) with rclpy, raw CDR, streaming.")
    p.add_argument("bag", help="bag folder (or .mcap/.db3 file)")
    p.add_argument("--topics", nargs="*", help="topics to play (default: all)")
    p.add_argument("--rate", type=float, default=1.0, help="bag-time speed multiplier")
    p.add_argument("--as-fast-as-node-keeps-up", action="store_true", help="after each image wait for the node's output with its stamp")
    p.add_argument("--image-topic", default=None, help="trigger topic for the gate (default: the first sensor_msgs/Image topic)")
    p.add_argument("--wait-topic", default="/mvgd/depth/image", help="output topic the gate waits on")
    p.add_argument("--timeout", type=float, default=10.0, help="gate timeout per image (s)")
    p.add_argument("--tf-lead", type=float, default=None,
                   help=f"send /tf this many bag seconds early (default 0 like `ros2 bag play`; {GATED_TF_LEAD_S} with --as-fast-as-node-keeps-up)")
    p.add_argument("--remap", nargs="*", default=[], metavar="FROM:=TO")
    a = p.parse_args(argv)
    tf_lead = a.tf_lead if a.tf_lead is not None else (GATED_TF_LEAD_S if a.as_fast_as_node_keeps_up else 0.0)

    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    try:
        topics = bag_topics(a.bag)
    except BagError as exc:
        print(f"mvgd-play: {exc}", file=sys.stderr)
        return 2
    remap = dict(r.split(":=", 1) for r in a.remap)
    rclpy.init()
    node = rclpy.create_node("mvgd_player")
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    spinner = SpinThread(ex)
    try:
        player = BagPlayer.from_bag(node, a.bag, a.topics, rate=a.rate, remap=remap, tf_lead=tf_lead)
        gate, trig = None, ()
        if a.as_fast_as_node_keeps_up:
            from sensor_msgs.msg import Image

            img = a.image_topic or next((t for t in sorted(player.publishers) if topics[t][0] == "sensor_msgs/msg/Image"), None)
            if img is None:
                raise BagError("--as-fast-as-node-keeps-up needs an image topic in the bag")
            waiter = OutputWaiter(node, a.wait_topic, Image)
            misses = []

            def gate(m):
                if not waiter.wait(m.stamp, a.timeout):
                    misses.append(m.stamp)

            trig = (img,)
        player.wait_for_subscribers(list(player.publishers), timeout=2.0)
        n = player.play(gate=gate, trigger_topics=trig)
        print(f"published {n} messages" + (f"; {len(misses)} images got no output within {a.timeout}s" if gate else ""))
        return 0
    except BagError as exc:
        print(f"mvgd-play: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        spinner.stop()
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
