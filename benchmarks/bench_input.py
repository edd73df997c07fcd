"""Input-path benchmarks (issue 12): prints tables, writes JSON to benchmarks/results/input.json.

    python benchmarks/bench_input.py [--part tf|node|all] [--rates 15 30 60] [--lags 0 0.1 0.3 0.5]
                                     [--seconds 3] [--before /tmp/mvgd_head]

Part "tf" - the pip-only TF buffer (mvgd_ros.tf.FallbackTfBuffer, TFTree in integer ns):
inserts of TransformStamped messages (what the /tf callback does) and lookups through a REP 105
chain map -> odom -> base_link -> camera_link -> camera_optical_frame (two dynamic edges, two
static), one core, N each. With --before DIR (a `git archive HEAD` copy of the repo from before
the change), the old TFTree's set_transform + lookup are timed the same way for comparison.

Part "node" - the real node over loopback DDS, in its own process, with the deterministic
stand-in model of test/fake_model_node.py (depth from poses, ~0 ms), so what is measured is the
input path, not the network: a camera at 15/30/60 Hz (camera_info stamped 1 ms after the
image), odometry TF at 50 Hz arriving `lag` s late, for `--seconds` s per cell. Depth maps per
second = depth messages received for the stream's images / stream duration; latency = image
publish -> depth arrival (wall clock, same machine), percentiles over the cell. A last row adds,
at 30 Hz with no lag, a second camera frame that never resolves (no TF), interleaved. With
--before DIR the same cells run against the old node for comparison.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "test"))
NS = 1_000_000_000
BASE = 1_700_000_000 * NS


# ---------------------------------------------------------------------- TF buffer


def _msg(parent, child, ns, T):
    from mvgd_ros.tf import broadcast_message, ns_to_stamp

    return broadcast_message(parent, child, T, ns_to_stamp(ns))


def bench_tf(n: int, before: Path | None) -> dict:
    import rclpy

    from mvgd_core.cameras import make_pose
    from mvgd_ros.tf import FallbackTfBuffer

    rclpy.init()
    node = rclpy.create_node("bench_tf")
    rng = np.random.default_rng(0)
    eye = np.eye(3)
    statics = [("base_link", "camera_link", make_pose(eye, [0.2, 0, 0.5])), ("camera_link", "camera_optical_frame", make_pose(eye, [0, 0, 0]))]
    period = 1_000_000  # 1 kHz odometry samples; map -> odom at 10 Hz
    odom = [_msg("odom", "base_link", BASE + i * period, make_pose(eye, rng.normal(size=3))) for i in range(n)]
    mapo = [_msg("map", "odom", BASE + i * 100 * period, make_pose(eye, rng.normal(size=3))) for i in range(n // 100 + 1)]
    out = {}
    buf = FallbackTfBuffer(node, cache_time_s=2 * n * period / NS)  # keep everything: lookups hit any stamp
    for p, c, T in statics:
        buf.add(_msg(p, c, 0, T), True)
    for m in mapo:
        buf.add(m, False)
    t0 = time.perf_counter()
    for m in odom:
        buf.add(m, False)
    out["insert_per_s"] = n / (time.perf_counter() - t0)
    stamps = (BASE + rng.integers(0, (n - 1) * period, size=n)).tolist()
    t0 = time.perf_counter()
    for s in stamps:
        buf.lookup_ns("map", "camera_optical_frame", s)
    out["lookup_per_s"] = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for s in stamps[: n // 4]:
        try:
            buf.lookup_ns("map", "unknown_frame", s)
        except LookupError:
            pass
    out["unknown_frame_lookup_per_s"] = (n // 4) / (time.perf_counter() - t0)
    if before is not None:
        out["before"] = _bench_old_tree(before, odom, mapo, statics, stamps)
    node.destroy_node()
    rclpy.shutdown()
    return out


def _bench_old_tree(before: Path, odom, mapo, statics, stamps) -> dict:
    """The old TFTree (float seconds, 4x4 matrices, torch validation) as the old FallbackTfBuffer used it."""
    import importlib.util

    from mvgd_ros.tf import transform_to_matrix

    spec = importlib.util.spec_from_file_location("old_tf_tree", before / "mvgd_core" / "data" / "tf_tree.py")
    old = importlib.util.module_from_spec(spec)
    sys.modules["old_tf_tree"] = old  # dataclasses look the module up while building _Edge
    spec.loader.exec_module(old)
    tree = old.TFTree(cache_time=1e9)
    sec = lambda m: m.header.stamp.sec + m.header.stamp.nanosec * 1e-9  # noqa: E731
    for p, c, T in statics:
        tree.set_transform(p, c, 0.0, T, static=True)
    for m in mapo:
        tree.set_transform("map", "odom", sec(m), transform_to_matrix(m.transform))
    k = min(len(odom), 3000)  # the old one is slow: a sample is enough
    t0 = time.perf_counter()
    for m in odom[:k]:
        tree.set_transform("odom", "base_link", sec(m), transform_to_matrix(m.transform))
    ins = k / (time.perf_counter() - t0)
    lo, hi = sec(odom[0]), sec(odom[k - 1])
    ss = np.random.default_rng(1).uniform(lo, hi, size=k).tolist()
    t0 = time.perf_counter()
    for s in ss:
        tree.lookup("map", "camera_optical_frame", s)
    return {"insert_per_s": ins, "lookup_per_s": k / (time.perf_counter() - t0)}


# ---------------------------------------------------------------------- node over DDS


def _cell(io, base, seconds, cam_hz, lag, ghost=False, tf_hz=50):
    """One stream (test/ros_stream.play_stream; camera_info stamped 1 ms after each image) -> its row."""
    from ros_stream import play_stream

    stamps = play_stream(io, base, seconds, cam_hz, tf_hz, tf_lag=lag, info_offset_ns=1_000_000, ghost=ghost, tail_s=0.6)
    with io.lock:
        lat = [io.depth[s][0] - io.sent[s] for s in stamps if s in io.depth]
    n = len(stamps)
    row = {"camera_hz": cam_hz, "tf_lag_s": lag, "never_resolving_frames": ghost, "images": n,
           "depth_per_s": len(lat) / seconds, "depth_fraction": len(lat) / n}
    for q in (50, 90, 99):
        row[f"latency_p{q}_ms"] = float(np.percentile(lat, q) * 1e3) if lat else None
    return row


def bench_node(rates, lags, seconds, pythonpath: Path | None) -> list[dict]:
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID=os.environ.get("ROS_DOMAIN_ID", "61"))
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath) + os.pathsep + env.get("PYTHONPATH", "")
    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID")})
    args = ["warm_up:=false", "fixed_frame:=odom", "tf_wait_s:=0.6", "torch_threads:=1", "diagnostics_period_s:=5.0"]
    proc = subprocess.Popen([sys.executable, str(ROOT / "test" / "fake_model_node.py"), "--ros-args", *[x for a in args for x in ("-p", a)]],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    from ros_stream import Io

    io = Io(depth_topics=("mvgd/depth/image", "mvgd/depth"), name="bench_input")  # + the output name before the output rework (--before)
    rows = []
    try:
        end = time.monotonic() + 120
        while io.image_pub.get_subscription_count() == 0 or io.tf_pub.get_subscription_count() == 0:
            if time.monotonic() > end or proc.poll() is not None:
                raise RuntimeError("the node did not come up")
            time.sleep(0.05)
        time.sleep(1.0)
        _cell(io, BASE, 1.0, 30, 0.0)  # warm-up, not recorded
        cells = [(r, lag, False) for r in rates for lag in lags] + [(30, 0.0, True)]
        for i, (r, lag, ghost) in enumerate(cells):
            row = _cell(io, BASE + (i + 1) * 100 * NS, seconds, r, lag, ghost)
            rows.append(row)
            print(_fmt(row), flush=True)
    finally:
        io.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    return rows


def _fmt(r):
    lat = " | ".join("-" if r[f"latency_p{q}_ms"] is None else f"{r[f'latency_p{q}_ms']:.0f}" for q in (50, 90, 99))
    return f"| {r['camera_hz']} | {r['tf_lag_s']:.1f} | {'yes' if r['never_resolving_frames'] else 'no'} | {r['depth_per_s']:.1f} | {r['depth_fraction']:.0%} | {lat} |"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("tf", "node", "all"), default="all")
    ap.add_argument("--rates", type=int, nargs="+", default=[15, 30, 60])
    ap.add_argument("--lags", type=float, nargs="+", default=[0.0, 0.1, 0.3, 0.5])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--tf-n", type=int, default=20000)
    ap.add_argument("--before", type=Path, default=None, help="a copy of the repo before the change (git archive HEAD | tar -x -C DIR)")
    a = ap.parse_args()
    result = {"env": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}}
    if a.part in ("tf", "all"):
        result["tf"] = bench_tf(a.tf_n, a.before)
        t = result["tf"]
        print(f"TF buffer: {t['insert_per_s']:.0f} inserts/s, {t['lookup_per_s']:.0f} lookups/s (4-edge chain), "
              f"{t['unknown_frame_lookup_per_s']:.0f} unknown-frame lookups/s")
        if "before" in t:
            print(f"  before: {t['before']['insert_per_s']:.0f} inserts/s, {t['before']['lookup_per_s']:.0f} lookups/s")
    if a.part in ("node", "all"):
        print("| camera Hz | TF lag s | never-resolving frames | depth/s | of images | latency p50 ms | p90 | p99 |")
        print("|---|---|---|---|---|---|---|---|")
        result["node"] = bench_node(a.rates, a.lags, a.seconds, None)
        if a.before is not None:
            print("before:")
            result["node_before"] = bench_node(a.rates, a.lags, a.seconds, a.before)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "input.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
