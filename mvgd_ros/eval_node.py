"""mvgd-eval's ROS side: `mvgd_node` as a subprocess, an in-process rclpy collector of its
outputs (and publisher of target poses), and the playback of the bag through it: gated (each
image waits for its depth) or paced by bag time. What comes back is a `Playback`, scored by
`mvgd_ros.eval_scoring`.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mvgd_core.data.types import Frame
from mvgd_ros.eval_bag import EvalError
from mvgd_ros.eval_scoring import Output
from mvgd_ros.frames import fill_pose
from mvgd_ros.lookahead import Lagged, LookaheadQueue


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no stderr captured)"


class NodeProcess:
    """`mvgd_node` as a subprocess; stderr/stdout to a log file for error messages."""

    def __init__(self, cmd: list[str], env: dict, log: Path):
        self.cmd, self.log = cmd, log
        self._fh = open(log, "wb")
        try:
            self.proc = subprocess.Popen(cmd, stdout=self._fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        except FileNotFoundError as exc:
            raise EvalError(f"cannot start the node: {exc}. Is the package installed (`make venv`)?") from exc

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 40) -> str:
        self._fh.flush()
        return _tail(self.log, n)

    def peak_rss_mb(self) -> float | None:
        """Peak resident memory of the node process (VmHWM, Linux), while it runs."""
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
        except OSError:
            pass
        return None

    def stop(self, timeout: float = 10.0) -> int | None:
        self.peak_mb = self.peak_rss_mb()
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._fh.close()
        return self.proc.returncode


class Collector:
    """In-process rclpy node: node outputs by stamp, target-pose publisher, gate helpers."""

    def __init__(self, args):
        import rclpy
        from geometry_msgs.msg import PoseStamped
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image

        from mvgd_ros import image_codec as IC
        from mvgd_ros.player import SpinThread

        self.IC = IC
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node("mvgd_eval", context=self.ctx)
        self.cv = threading.Condition()
        self.depth: dict[float, Output] = {}
        self.rgb: dict[float, Output] = {}
        self.vdepth: dict[float, Output] = {}
        self.conf: dict[float, Output] = {}
        self.infos: dict[str, dict[float, np.ndarray]] = {"depth": {}, "rgb": {}}
        self.errors: list[str] = []
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        # outputs are image_transport camera layouts: <base>/image + <base>/camera_info (the bare base is the deprecated name)
        self.node.create_subscription(Image, args.depth_out + "/image", lambda m: self._img(m, self.depth, "depth"), qos)
        self.node.create_subscription(CameraInfo, args.depth_out + "/camera_info", lambda m: self._info(m, "depth"), qos)
        if not getattr(args, "no_baselines", False):  # for "mvgd (confident px)", beside mvs; the node publishes it only when asked
            self.node.create_subscription(Image, args.depth_out + "/confidence", lambda m: self._img(m, self.conf, "confidence"), qos)
        if args.rgb_out:
            self.node.create_subscription(Image, args.rgb_out + "/image", lambda m: self._img(m, self.rgb, "rgb"), qos)
            self.node.create_subscription(CameraInfo, args.rgb_out + "/camera_info", lambda m: self._info(m, "rgb"), qos)
        if args.virtual_depth_out:
            self.node.create_subscription(Image, args.virtual_depth_out + "/image", lambda m: self._img(m, self.vdepth, "vdepth"), qos)
        self.pose_pub = self.node.create_publisher(PoseStamped, args.target_pose_topic, 10)
        self.PoseStamped = PoseStamped
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self.spinner = SpinThread(self.ex)  # joined in close() before anything is destroyed

    @staticmethod
    def _stamp(h) -> float:
        return h.stamp.sec + h.stamp.nanosec * 1e-9

    def _info(self, msg, kind):
        K, _ = self.IC.camera_info_to_K(msg)
        with self.cv:
            self.infos[kind][round(self._stamp(msg.header), 3)] = K

    def _img(self, msg, store, kind):
        t = time.time()
        try:
            data = self.IC.image_to_rgb(msg) if msg.encoding in self.IC.COLOR_ENCODINGS else self.IC.image_to_depth(msg)
        except ValueError as exc:
            self.errors.append(f"{kind}: {exc}")
            return
        s = self._stamp(msg.header)
        with self.cv:
            store[round(s, 3)] = Output(s, data, None, t)
            self.cv.notify_all()

    def wait(self, store: dict, stamp: float, timeout: float) -> bool:
        key = round(stamp, 3)
        with self.cv:
            return self.cv.wait_for(lambda: key in store, timeout)

    def publish_target(self, T_wc: np.ndarray, stamp: float, frame_id: str):
        from mvgd_ros.tf import sec_to_stamp

        msg = self.PoseStamped()
        msg.header.stamp = sec_to_stamp(stamp)
        msg.header.frame_id = frame_id
        fill_pose(msg.pose, T_wc)
        self.pose_pub.publish(msg)

    def attach_K(self):
        """Give each output the K of its camera_info (same stamp), if it arrived."""
        with self.cv:
            for store, kind in ((self.depth, "depth"), (self.rgb, "rgb"), (self.vdepth, "rgb")):  # virtual depth shares the rgb camera
                for key, o in store.items():
                    o.K = self.infos[kind].get(key)

    def close(self):
        """Stop spinning (joined), then tear down. Shutting down the executor while `spin()` still
        ran on its thread left that thread busy at full CPU once and mvgd-eval waiting on it."""
        import rclpy

        self.spinner.stop()
        self.ex.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)


# Bags play on wall time here on purpose (the collector measures latency itself): the node's
# clock-skew check would only say so in every evaluation.
EVAL_NODE_PARAMS = ("clock_skew_warn_s:=0.0",)


def _node_command(args) -> list[str]:
    exe = shutil.which(args.node_cmd) or str(Path(sys.executable).with_name(args.node_cmd))
    if not Path(exe).exists() and not shutil.which(exe):
        raise EvalError(f"node executable {args.node_cmd!r} not found (looked on PATH and next to {sys.executable}); run `make venv`")
    cmd = [exe, "--ros-args", "-p", f"fixed_frame:={args.world_frame}"]
    if args.model:
        cmd += ["-p", f"{args.model_param}:={Path(args.model).resolve()}"]
    for p in (*EVAL_NODE_PARAMS, *args.param):  # the user's --param come last and win
        cmd += ["-p", p]
    remaps = {"image": args.image_topic, "camera_info": args.camera_info_topic}
    for k, v in remaps.items():
        if v:
            cmd += ["-r", f"{k}:={v}"]
    return cmd


def node_param_values(args):
    """The node's parameter values: declared defaults (mvgd_ros.params) with our -p overrides."""
    from mvgd_ros import params as NP

    values = {s.name: s.default for s in NP.SPECS}
    for item in (*EVAL_NODE_PARAMS, *args.param):
        name, sep, raw = item.partition(":=")
        if not sep or name not in values:
            raise EvalError(f"--param {item!r}: expected NAME:=VALUE with NAME one of the node's parameters")
        d = values[name]
        try:
            values[name] = type(d)(raw) if not isinstance(d, (bool, list)) else (raw.lower() == "true" if isinstance(d, bool) else json.loads(raw))
        except ValueError as exc:
            raise EvalError(f"--param {item!r}: {exc}") from exc
    return NP.Params(**values)


def _timeout(args, n_outputs: int) -> float:
    """Gate timeout: generous until the node has answered once (model warm-up), then --timeout."""
    return args.first_timeout if n_outputs == 0 else args.timeout


@dataclass
class Playback:
    """What came back from the node: outputs by frame index, latency samples, process facts."""

    live: dict  # {frame index: Output} depth at the live camera
    rgb: dict  # {held-out index: Output} virtual-view RGB
    vdepth: dict  # {held-out index: Output} virtual-view depth
    lat_samples: list  # [(stamp, seconds image published -> depth received)]
    startup_s: float
    node_rc: int | None
    node_cmd: list
    node_peak_mb: float | None


def _wait_until_subscribed(node: NodeProcess, col: Collector, player, args) -> float:
    """Block until every input topic and our depth subscription are matched, then settle;
    returns the seconds that took. EvalError if the node dies or --startup-timeout passes."""
    t0 = time.monotonic()
    while True:
        if not node.alive():
            raise EvalError(f"the node exited with code {node.proc.returncode} before subscribing to {args.image_topic}:\n{node.tail()}")
        # every input topic matched (a camera_info or /tf lost to discovery would drop frames)
        if not player.wait_for_subscribers(list(player.publishers), timeout=0.0) and col.node.count_publishers(args.depth_out + "/image") > 0:
            break
        if time.monotonic() - t0 > args.startup_timeout:
            raise EvalError(f"the node did not subscribe to {args.image_topic} within {args.startup_timeout:.0f}s:\n{node.tail()}")
        time.sleep(0.1)
    # Matching is seen from our side first; give the node's side a moment too, or the first
    # image (volatile QoS) is lost and the node may think nobody wants its depth yet.
    time.sleep(args.settle)
    return time.monotonic() - t0


class _PlayHooks:
    """The player's callbacks: a held-out image becomes a target pose (`skip`), each sent image
    or target waits for its output (`gate`, gated mode) in the order the node's lookahead queue
    releases them (mvgd_ros/lookahead.py: with lookahead_frames k, the output of the item k images
    back), publish times are kept for latency. `misses`: stamps of inputs that got no output within
    the timeout."""

    def __init__(self, args, node: NodeProcess, col: Collector, frames: list[Frame], held: set[int], stamp_to_idx: dict):
        self.args, self.node, self.col, self.frames, self.held, self.stamp_to_idx = args, node, col, frames, held, stamp_to_idx
        self.node_params = node_param_values(args)
        self.lag = self.node_params.lookahead_frames  # the node answers an item once this many newer images came
        self.due = LookaheadQueue()  # stamps of sent images and targets whose output is not awaited yet
        self.misses: list[float] = []
        self.seen_outputs = 0
        self.pub_time: dict[float, float] = {}

    def skip(self, m) -> bool:
        args, col = self.args, self.col
        if m.topic not in (args.image_topic, args.camera_info_topic) or m.stamp is None:
            return False
        i = self.stamp_to_idx.get(round(m.stamp, 3))
        if i is None or i not in self.held:
            return False
        if m.topic == args.image_topic:  # withheld image: ask for its view instead
            col.publish_target(self.frames[i].T_wc, self.frames[i].stamp, args.world_frame)
            if args.rate is None:
                self._await(self.due.push(Lagged(None, None, False, 0.0, target=m.stamp, stamp=m.stamp), self.lag))
        return m.topic == args.image_topic

    def on_publish(self, m, wall) -> None:
        if m.topic == self.args.image_topic and m.stamp is not None:
            self.pub_time[round(m.stamp, 3)] = wall

    def gate(self, m) -> None:
        """Wait for the outputs now due: this image's depth, or with lookahead_frames k the output of
        the image (or target) k images back."""
        if not self.node.alive():
            raise EvalError(f"the node died during playback (code {self.node.proc.returncode}):\n{self.node.tail()}")
        self._await(self.due.push(Lagged(m.stamp, None, False, 0.0, stamp=m.stamp), self.lag))

    def _await(self, items: list[Lagged]) -> None:
        """Wait for each released item's output: an image's depth, a target's RGB (or its depth when
        that is published last); a timeout is a miss."""
        for item in items:
            if item.is_frame:
                store, stamp = self.col.depth, item.frame
            else:
                store, stamp = (self.col.vdepth if self.args.virtual_depth_out else self.col.rgb), item.target
            if self.col.wait(store, stamp, _timeout(self.args, self.seen_outputs)):
                self.seen_outputs += item.is_frame
            else:
                self.misses.append(stamp)


def _outputs_by_index(col: Collector, stamp_to_idx: dict, held: set[int]) -> tuple[dict, dict, dict]:
    """(live depth, novel RGB, novel depth) as {frame index: Output}."""
    depth_out = {stamp_to_idx[k]: o for k, o in col.depth.items() if k in stamp_to_idx}
    for k, o in col.depth.items():  # the confidence published beside each depth map, same stamp
        c = col.conf.get(k)
        o.confidence = c.data if c is not None and c.data.shape == o.data.shape else None
    rgb_out = {stamp_to_idx[k]: o for k, o in col.rgb.items() if k in stamp_to_idx and stamp_to_idx[k] in held}
    vdepth_out = {stamp_to_idx[k]: o for k, o in col.vdepth.items() if k in stamp_to_idx and stamp_to_idx[k] in held}
    live = {i: o for i, o in depth_out.items() if i not in held}
    # novel depth may also arrive on the depth topic if the node publishes virtual depth there
    vdepth_out.update({i: o for i, o in depth_out.items() if i in held and i not in vdepth_out})
    return live, rgb_out, vdepth_out


def play_through_node(bag: Path, args, out: Path, frames: list[Frame], held: set[int], msgs: list, notes: list[str]) -> Playback:
    """Start the node, wait for it to subscribe, play the bag (gated or paced), collect outputs."""
    from mvgd_ros.player import BagPlayer

    stamp_to_idx = {round(f.stamp, 3): i for i, f in enumerate(frames)}
    env = dict(os.environ)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    cmd = _node_command(args)
    node = NodeProcess(cmd, env, out / "node.log")
    col = None
    try:
        col = Collector(args)
        player = BagPlayer(col.node, msgs, rate=args.rate or 1.0, tf_lead=args.tf_lead)
        startup_s = _wait_until_subscribed(node, col, player, args)
        hooks = _PlayHooks(args, node, col, frames, held, stamp_to_idx)
        print(f"[mvgd-eval] node up after {startup_s:.1f}s; playing {len(frames)} frames ({len(held)} held out) from {bag}", file=sys.stderr)
        player.play(gate=None if args.rate else hooks.gate, trigger_topics=(args.image_topic,), on_publish=hooks.on_publish, skip=hooks.skip,
                    progress=not args.quiet)
        # drain: outputs still in flight (with lookahead_frames, the last images wait lookahead_max_wait_s for newer ones)
        lag_wait = hooks.node_params.lookahead_max_wait_s if hooks.lag else 0.0
        end = time.monotonic() + (args.drain if args.rate else 2.0) + lag_wait
        while time.monotonic() < end and node.alive():
            time.sleep(0.1)
        col.attach_K()
        if not col.depth and not col.rgb:
            raise EvalError(f"the node produced no output on {args.depth_out} / {args.rgb_out} for {len(frames)} frames:\n{node.tail()}")
        if hooks.misses:
            notes.append(f"{len(hooks.misses)} of {len(frames)} inputs got no output within the gate timeout (node warming up, dropping, or lacking TF)")
        if col.errors:
            notes.append(f"{len(col.errors)} outputs could not be decoded, e.g. {col.errors[0]}")
        live, rgb_out, vdepth_out = _outputs_by_index(col, stamp_to_idx, held)
        lat_samples = sorted((o.stamp, o.recv - hooks.pub_time[k]) for k, o in col.depth.items() if k in hooks.pub_time)
    finally:
        if col is not None:
            col.close()
        rc = node.stop()
    return Playback(live, rgb_out, vdepth_out, lat_samples, startup_s, rc, cmd, getattr(node, "peak_mb", None))
