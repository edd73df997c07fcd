"""rosbag2 player without ros2cli: read with `rosbags`, publish the raw CDR bytes with rclpy.

Works on sqlite3 and mcap rosbag2 bags (our writer's and other REP-105 tools'). Each topic
gets an rclpy publisher of the bag's message class (imported from the installed interface
packages, e.g. `sensor_msgs.msg.Image`), and the serialized bytes go out unchanged.

Timing: messages are paced by bag time divided by `rate`, or, with `gate`
(`--as-fast-as-node-keeps-up`), published back to back while a gate callback blocks after
each trigger message (the image) until the node has answered or a timeout passed.
`/tf` messages are sent `tf_lead` seconds of bag time early, so a consumer that interpolates
TF at an image's stamp already has the samples after it (otherwise a gated player and a node
waiting for TF would wait for each other). `/tf_static` goes out first, transient-local.

QoS: /tf_static reliable + transient local (like tf2_ros' static broadcaster); every other
topic reliable, volatile, keep-last 10 - a reliable writer matches both reliable readers and
best-effort SensorDataQoS readers, so image topics reach sensor-data subscribers.

CLI: `mvgd-play BAG [--rate R | --as-fast-as-node-keeps-up --wait-topic /mvgd/depth] [--topics ...]`
"""
from __future__ import annotations

import argparse
import importlib
import struct
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

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


def read_messages(path, topics: Iterable[str] | None = None, required: Iterable[str] = ()) -> list[BagMessage]:
    """All messages of `topics` (all if None) in bag-time order.

    Raises BagError for an empty bag, or when a topic in `required` (or any of `topics`) is absent.
    """
    reader = open_bag(path)
    try:
        have = {c.topic for c in reader.connections}
        total = sum(c.msgcount for c in reader.connections)
        if not reader.connections or total == 0:
            raise BagError(f"bag {path} is empty (no messages)")
        wanted = set(have) if topics is None else set(topics)
        missing = sorted((wanted | set(required)) - have)
        if missing:
            listing = ", ".join(f"{c.topic} [{c.msgtype}]" for c in reader.connections)
            raise BagError(f"bag {path} has no topic(s) {missing}; it has: {listing}")
        conns = [c for c in reader.connections if c.topic in wanted]
        headers = {c.msgtype: _has_header(reader, c.msgtype) for c in conns}
        out = []
        for c, t, raw in reader.messages(connections=conns):
            raw = bytes(raw)
            out.append(BagMessage(c.topic, c.msgtype, raw, t, header_stamp(raw) if headers[c.msgtype] else None))
        out.sort(key=lambda m: m.bag_ns)
        return out
    finally:
        reader.close()


class BagPlayer:
    """Publishes bag messages through an rclpy node.

    node: an rclpy Node (spun elsewhere, e.g. by an executor thread, if `gate` needs callbacks).
    messages: from `read_messages`. remap: {bag topic: published topic}. rate: bag-time speed
    multiplier (ignored when a gate is given). tf_lead: seconds of bag time /tf is sent early.
    """

    def __init__(self, node, messages: list[BagMessage], rate: float = 1.0, remap: dict | None = None, tf_lead: float = 0.5, static_topics=("/tf_static",)):
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        if not messages:
            raise BagError("nothing to play: no messages")
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.node, self.rate, self.tf_lead = node, rate, tf_lead
        self.remap = dict(remap or {})
        self.static_topics = set(static_topics)
        static_qos = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        qos = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
        self.publishers = {}
        for topic, msgtype in sorted({(m.topic, m.msgtype) for m in messages}):
            cls = message_class(msgtype)
            self.publishers[topic] = node.create_publisher(cls, self.remap.get(topic, topic), static_qos if topic in self.static_topics else qos)
        lead = int(tf_lead * 1e9)
        static = [m for m in messages if m.topic in self.static_topics]
        rest = sorted((m for m in messages if m.topic not in self.static_topics), key=lambda m: m.bag_ns - (lead if m.topic == "/tf" else 0))
        self.messages = static + rest

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
        n = 0
        t0_wall = time.monotonic()
        t0_bag = next((m.bag_ns for m in self.messages if m.topic not in self.static_topics), self.messages[0].bag_ns)
        bar = tqdm(self.messages, desc="play", unit="msg", disable=not progress, file=sys.stderr, leave=False)
        for m in bar:
            if skip is not None and skip(m):
                continue
            if gate is None and m.topic not in self.static_topics:
                lead = self.tf_lead if m.topic == "/tf" else 0.0
                due = t0_wall + ((m.bag_ns - t0_bag) / 1e9 - lead) / self.rate
                delay = due - time.monotonic()
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="mvgd-play", description="Play a rosbag2 (sqlite3 or mcap) with rclpy, raw CDR.")
    p.add_argument("bag", help="bag folder (or .mcap/.db3 file)")
    p.add_argument("--topics", nargs="*", help="topics to play (default: all)")
    p.add_argument("--rate", type=float, default=1.0, help="bag-time speed multiplier")
    p.add_argument("--as-fast-as-node-keeps-up", action="store_true", help="after each image wait for the node's output with its stamp")
    p.add_argument("--image-topic", default=None, help="trigger topic for the gate (default: the first sensor_msgs/Image topic)")
    p.add_argument("--wait-topic", default="/mvgd/depth", help="output topic the gate waits on")
    p.add_argument("--timeout", type=float, default=10.0, help="gate timeout per image (s)")
    p.add_argument("--tf-lead", type=float, default=0.5, help="send /tf this many bag seconds early")
    p.add_argument("--remap", nargs="*", default=[], metavar="FROM:=TO")
    a = p.parse_args(argv)

    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    try:
        msgs = read_messages(a.bag, a.topics)
    except BagError as exc:
        print(f"mvgd-play: {exc}", file=sys.stderr)
        return 2
    remap = dict(r.split(":=", 1) for r in a.remap)
    rclpy.init()
    node = rclpy.create_node("mvgd_player")
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    threading.Thread(target=ex.spin, daemon=True).start()
    try:
        player = BagPlayer(node, msgs, rate=a.rate, remap=remap, tf_lead=a.tf_lead)
        gate, trig = None, ()
        if a.as_fast_as_node_keeps_up:
            from sensor_msgs.msg import Image

            img = a.image_topic or next((m.topic for m in msgs if m.msgtype == "sensor_msgs/msg/Image"), None)
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
    finally:
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
