"""Endurance: the real node with the shipped model on a 30 Hz camera for minutes, as a robot runs it.

    python benchmarks/bench_endurance.py [--minutes 10] [--camera-hz 30] [--tf-hz 50] [--tf-lag 0.05]
                                         [--hw 240x320] [--window 30] [--target-hz 1] [--outage-every 120]
                                         [--param NAME:=VALUE ...] [--out JSON] [--figure PNG]

What a robot needs from a node that runs for hours, and a 40-frame latency run cannot show:
memory that stops growing, latency and rate that hold, and recovery after an odometry gap.

The stream: a hand-held procedural sequence (`render_sequence(..., trajectory="handheld")`,
0.15-0.9 m/s at 30 Hz; `--frames` rendered at `--hw`, then played forwards and backwards so it
never ends) published as sensor_msgs/Image + CameraInfo in `camera_optical_frame` (with `--jpeg Q`: JPEG
CompressedImage on image/compressed, the node on `image_transport:=compressed`), odometry as
/tf odom -> base_link at `--tf-hz`, `--tf-lag` s late and interpolated between the camera's
poses, and a static REP 103 mount base_link -> camera_optical_frame on /tf_static (the node
composes the chain, as on a robot). Every `--outage-every` s the odometry stops for
`--outage-s` s (frames in the gap are then dropped by the node, or resolved when TF resumes).
A virtual camera 0.2 m to the right of the live one is requested at `--target-hz` on
/mvgd/target_pose. The node runs in its own process with its defaults (`--param` adds any).

Per `--window` s: images sent, depth maps received for them (and their share), latency image
sent -> depth received (p50 / p90), virtual views received, the node's RSS (VmRSS) and CPU
use, and the keyframes, the share of camera frames it never received (`input_missing_share`) and
the health its /diagnostics report. At the end: the RSS growth over the
second half (MB per minute), each drop reason's total, and whether the node's log has an error.
Prints a table, writes JSON (benchmarks/results/endurance.json or --out) and a PNG of RSS,
latency and rate against time (--figure, default next to the JSON).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from mvgd_ros.feed import Feed  # noqa: E402
from mvgd_ros.tf import ns_to_stamp, stamp_to_ns  # noqa: E402
from timing import hw_arg  # noqa: E402

NS = 1_000_000_000
BASE = 1_700_000_000 * NS  # epoch-sized stamps, as on a robot
CAM = "camera_optical_frame"
# REP 103: the optical frame looks along +z with x right, y down; base_link looks along +x with z up.
R_BASE_OPT = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def mount() -> np.ndarray:
    """T_base_optical: the camera 0.1 m ahead of and 0.3 m above base_link."""
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R_BASE_OPT, [0.1, 0.0, 0.3]
    return T


def render_stream(frames: int, hw: tuple[int, int], seed: int):
    """(rgb uint8 (F, H, W, 3), K (3, 3), T_wc (F, 4, 4) optical frame in odom) of a hand-held sequence."""
    from mvgd_core.data.render import ProceduralConfig, render_sequence

    seq = render_sequence(seed, frames, hw[0], hw[1], ProceduralConfig(p_indoor=1.0), trajectory="handheld")
    return np.stack([f.rgb for f in seq]), np.asarray(seq[0].K, np.float64), np.stack([np.asarray(f.T_wc, np.float64) for f in seq])


def ping_pong(k: int, n: int) -> int:
    """Frame index of stream step k when n frames play forwards, then backwards, forever."""
    period = 2 * (n - 1)
    j = k % period
    return j if j < n else period - j


class Pose:
    """Camera pose at any stream time (s): slerp / lerp between the frames it falls between."""

    def __init__(self, T_wc: np.ndarray, hz: float):
        self.T, self.hz = T_wc, hz

    def at(self, t: float) -> np.ndarray:
        from mvgd_core.cameras import interpolate_pose

        n = len(self.T)
        k = int(np.floor(t * self.hz))
        return interpolate_pose(self.T[ping_pong(k, n)], self.T[ping_pong(k + 1, n)], t * self.hz - k)


class Rig(Feed):
    """The feed (camera, odometry TF, mount, target poses) with collectors of depth, virtual views and diagnostics."""

    def __init__(self, compressed: bool = False):
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import Image

        super().__init__("bench_endurance", compressed=compressed, target_topic="/mvgd/target_pose")
        self.sent: dict[int, float] = {}  # image stamp ns -> monotonic send time
        self.depth: dict[int, float] = {}  # image stamp ns -> monotonic first arrival
        self.views: list[float] = []  # arrival times of virtual-view RGB
        self.diag: dict[str, str] = {}
        self.diag_level = ""
        self.node.create_subscription(Image, "/mvgd/depth/image", self._on_depth, self.qos)
        self.node.create_subscription(Image, "/mvgd/rgb/image", self._on_view, self.qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.start()

    stamp = staticmethod(ns_to_stamp)

    def _on_depth(self, msg):
        with self.lock:
            self.depth.setdefault(stamp_to_ns(msg.header.stamp), time.monotonic())

    def _on_view(self, _msg):
        with self.lock:
            self.views.append(time.monotonic())

    def _on_diag(self, msg):
        for s in msg.status:
            if s.name.startswith("mvgd"):
                with self.lock:
                    self.diag = {v.key: v.value for v in s.values}
                    self.diag_level = {0: "ok", 1: "warn", 2: "error"}.get(int.from_bytes(s.level, "little") if isinstance(s.level, bytes) else int(s.level), "?")

    def send_mount(self):
        self.publish_tf("base_link", CAM, mount(), self.stamp(BASE), static=True)

    def send_odometry(self, ns: int, T_odom_base: np.ndarray):
        self.publish_tf("odom", "base_link", T_odom_base, self.stamp(ns))

    def send_image(self, ns: int, image, K: np.ndarray, hw: tuple[int, int]):
        """image: (H, W, 3) uint8 RGB, sent as rgb8; or a pre-encoded CompressedImage (its header is set here)."""
        from std_msgs.msg import Header

        with self.lock:
            self.sent[ns] = time.monotonic()
        self.publish_image(image, K, Header(stamp=self.stamp(ns), frame_id=CAM), hw=hw)

    def send_target(self, ns: int, T_wc: np.ndarray):
        self.publish_target(T_wc, self.stamp(ns))


def encode_frames(rgb: np.ndarray, quality: int) -> tuple[list, float | None]:
    """(what to send per frame, median JPEG size KB): the RGB frames themselves when quality is 0,
    else each encoded once as a JPEG CompressedImage (the sender's encoding cost stays off the clock)."""
    if not quality:
        return list(rgb), None
    from std_msgs.msg import Header

    from mvgd_ros.image_codec import rgb_to_compressed

    msgs = [rgb_to_compressed(f, Header(), "jpeg", quality) for f in rgb]
    return msgs, float(np.median([len(m.data) for m in msgs])) / 1000.0


def proc_sample(pid: int) -> tuple[float | None, float | None]:
    """(RSS MB, CPU seconds user + system) of a process from /proc (Linux); None where unreadable."""
    try:
        rss = next(int(line.split()[1]) / 1024.0 for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmRSS:"))
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return rss, cpu
    except (OSError, StopIteration, IndexError, ValueError):
        return None, None


def schedule(a, duration: float):
    """Sorted (due s, order, kind, stream time s) events: images, odometry (late by tf_lag, skipped
    during outages) and target poses."""
    ev = [(k / a.camera_hz, 1, "image", k / a.camera_hz) for k in range(int(duration * a.camera_hz))]
    for j in range(int((duration + 1.0) * a.tf_hz)):
        t = j / a.tf_hz
        if a.outage_every > 0 and t >= a.outage_every and (t % a.outage_every) < a.outage_s:
            continue
        ev.append((t + a.tf_lag, 0, "tf", t))
    if a.target_hz > 0:
        ev += [(k / a.target_hz + 0.5, 2, "target", k / a.target_hz + 0.5) for k in range(int(duration * a.target_hz))]
    return sorted(ev)


def stream(a, rig: Rig, node_pid: int, images: list, K, T_wc) -> list[dict]:
    """Play the schedule in wall time; sample the node process every --window s. -> raw samples.
    images: per rendered frame, what Rig.send_image sends (RGB arrays or pre-encoded CompressedImage)."""
    from tqdm import tqdm

    pose, T_mount_inv = Pose(T_wc, a.camera_hz), np.linalg.inv(mount())
    side = np.eye(4)
    side[0, 3] = 0.2  # the virtual camera: 0.2 m along the live camera's x (right)
    duration = a.minutes * 60.0
    events = schedule(a, duration)
    samples, start = [], time.monotonic()
    next_sample = a.window
    with tqdm(total=int(duration), unit="s", desc="endurance", disable=a.quiet) as bar:
        for due, _, kind, t in events:
            while due >= next_sample:  # sample on time even while the stream keeps going
                delay = start + next_sample - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                rss, cpu = proc_sample(node_pid)
                with rig.lock:
                    samples.append({"t": next_sample, "rss_mb": rss, "cpu_s": cpu, "diag": dict(rig.diag), "level": rig.diag_level})
                bar.update(int(a.window))
                next_sample += a.window
            delay = start + due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            ns = BASE + int(round(t * NS))
            if kind == "image":
                rig.send_image(ns, images[ping_pong(int(round(t * a.camera_hz)), len(images))], K, a.hw)
            elif kind == "tf":
                rig.send_odometry(ns, pose.at(t) @ T_mount_inv)
            else:
                rig.send_target(ns, pose.at(t) @ side)
    time.sleep(2.0)  # the last answers
    return samples


def windows(a, rig: Rig, samples: list[dict]) -> list[dict]:
    """Per-window rows from the raw samples and the sent / received stamps."""
    with rig.lock:
        sent, depth, views = dict(rig.sent), dict(rig.depth), list(rig.views)
    t0 = min(sent.values())
    rows, prev_cpu, prev_t = [], None, 0.0
    for s in samples:
        lo, hi = s["t"] - a.window, s["t"]
        ns = [k for k, v in sent.items() if lo <= v - t0 < hi]
        lat = [depth[k] - sent[k] for k in ns if k in depth]
        cpu = None if s["cpu_s"] is None or prev_cpu is None else 100.0 * (s["cpu_s"] - prev_cpu) / (s["t"] - prev_t)
        d = s["diag"]
        rows.append({"t_min": round(hi / 60.0, 2), "images": len(ns), "depth_per_s": len(lat) / a.window,
                     "depth_share": len(lat) / len(ns) if ns else None,
                     "latency_p50_ms": float(np.percentile(lat, 50) * 1e3) if lat else None,
                     "latency_p90_ms": float(np.percentile(lat, 90) * 1e3) if lat else None,
                     "views_per_s": sum(lo <= v - t0 < hi for v in views) / a.window,
                     "rss_mb": s["rss_mb"], "cpu_percent": cpu, "keyframes": d.get("keyframes"), "health": s["level"],
                     "input_missing_share": float(d["input_missing_share"]) if "input_missing_share" in d else None})
        prev_cpu, prev_t = s["cpu_s"], s["t"]
    return rows


def summary(rows: list[dict], last_diag: dict, log_text: str) -> dict:
    """RSS growth over the second half (least squares, MB / min), first vs last window, drop totals, log errors."""
    half = [r for r in rows[len(rows) // 2:] if r["rss_mb"] is not None]
    slope = float(np.polyfit([r["t_min"] for r in half], [r["rss_mb"] for r in half], 1)[0]) if len(half) >= 2 else None
    drops = {k: int(v) for k, v in last_diag.items() if k.startswith(("drop_", "total_", "reset_", "worker_")) and v.lstrip("-").isdigit()}
    errors = [line for line in log_text.splitlines() if "Traceback" in line or "[ERROR]" in line]
    return {"rss_growth_mb_per_min_second_half": slope, "rss_first_mb": rows[0]["rss_mb"], "rss_last_mb": rows[-1]["rss_mb"],
            "rss_max_mb": max((r["rss_mb"] for r in rows if r["rss_mb"] is not None), default=None),
            "latency_p50_first_ms": rows[0]["latency_p50_ms"], "latency_p50_last_ms": rows[-1]["latency_p50_ms"],
            "depth_per_s_median": float(np.median([r["depth_per_s"] for r in rows])), "counters": drops,
            "log_errors": len(errors), "log_error_lines": errors[:10]}


def figure(path: Path, rows: list[dict], title: str) -> Path:
    """Three panels against minutes: node RSS, latency p50 / p90, depth maps per second."""
    from PIL import Image, ImageDraw, ImageFont

    from mvgd_core import charts

    W, H = 900, 300
    img = Image.new("RGB", (W, H + 20), (255, 255, 255))
    draw, font = ImageDraw.Draw(img), ImageFont.load_default()
    draw.text((6, 4), title, fill=(0, 0, 0), font=font)
    xs = [r["t_min"] for r in rows]
    xmax = max(xs) if xs else 1.0
    ticks = charts.nice_ticks(0.0, xmax)
    panels = [("node RSS (MB)", [("rss_mb", (40, 90, 200))]),
              ("latency ms (p50 blue, p90 red)", [("latency_p50_ms", (40, 90, 200)), ("latency_p90_ms", (200, 60, 40))]),
              ("depth maps / s", [("depth_per_s", (40, 150, 60))])]
    for i, (name, series) in enumerate(panels):
        ys = [r[k] for k, _ in series for r in rows if r[k] is not None]
        hi = max(ys, default=1.0) or 1.0  # from 0: a few MB of drift must not look like a leak
        X, Y = charts.axes(draw, (i * W // 3, 20, (i + 1) * W // 3, H + 20), name, font, "minutes", (0.0, xmax),
                           (0.0, 1.15 * hi), ticks, charts.tick_format(ticks))
        for key, colour in series:
            charts.polyline(draw, X, Y, xs, [float("nan") if r[key] is None else r[key] for r in rows], colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def figure_title(settings: dict) -> str:
    """The figure's title from the run's settings (the JSON's "settings")."""
    s, (h, w), jpeg = settings, settings["hw"], settings.get("jpeg", 0)  # runs before stop 34 had no --jpeg / --param
    return (f"mvgd_node, {s['camera_hz']:g} Hz camera {h}x{w}{f' JPEG q{jpeg}' if jpeg else ''}, "
            f"odometry {s['tf_hz']:g} Hz {s['tf_lag'] * 1e3:.0f} ms late, {s['minutes']:g} min" + "".join(f", {p}" for p in s.get("param", [])))


def redraw(json_path: Path, png: Path | None) -> Path:
    """Draw a finished run's figure again from its JSON (no node is started)."""
    result = json.loads(json_path.read_text())
    return figure(png or json_path.with_suffix(".png"), result["rows"], figure_title(result["settings"]))


def _fmt(r: dict) -> str:
    f = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    return (f"| {r['t_min']:.1f} | {r['images']} | {r['depth_per_s']:.1f} | {f(r['depth_share'], '.0%')} | {f(r['latency_p50_ms'], '.0f')} | "
            f"{f(r['latency_p90_ms'], '.0f')} | {r['views_per_s']:.2f} | {f(r['rss_mb'], '.0f')} | {f(r['cpu_percent'], '.0f')} | "
            f"{r['keyframes'] or '-'} | {f(r['input_missing_share'], '.0%')} | {r['health'] or '-'} |")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--camera-hz", type=float, default=30.0)
    ap.add_argument("--tf-hz", type=float, default=50.0)
    ap.add_argument("--tf-lag", type=float, default=0.05, help="s the odometry arrives after its stamp")
    ap.add_argument("--hw", type=hw_arg, default=(240, 320), help="camera image size HxW")
    ap.add_argument("--frames", type=int, default=900, help="frames rendered (played forwards and backwards)")
    ap.add_argument("--jpeg", type=int, default=0, metavar="QUALITY",
                    help="send JPEG CompressedImage on image/compressed at this quality (1-100), the node with "
                         "image_transport:=compressed; 0: raw rgb8 Image")
    ap.add_argument("--seed", type=int, default=2_500_000, help="procedural scene (not a training seed)")
    ap.add_argument("--window", type=float, default=30.0, help="s per table row")
    ap.add_argument("--target-hz", type=float, default=1.0, help="virtual-view requests per s (0: none)")
    ap.add_argument("--outage-every", type=float, default=120.0, help="s between odometry outages (0: none)")
    ap.add_argument("--outage-s", type=float, default=1.0, help="length of each odometry outage")
    ap.add_argument("--model", default=None, help="checkpoint (default: the node's, models/mvgd_default.pt)")
    ap.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE", help="extra node parameter (repeatable)")
    ap.add_argument("--out", type=Path, default=RESULTS / "endurance.json")
    ap.add_argument("--figure", type=Path, default=None, help="PNG (default: the JSON's path with .png)")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--redraw", type=Path, default=None, metavar="JSON", help="only draw this finished run's figure again")
    return ap


def node_command(a) -> list[str]:
    """The real mvgd_node with the benchmark's parameters (and the compressed input with --jpeg)."""
    exe = shutil.which("mvgd_node") or str(Path(sys.executable).with_name("mvgd_node"))
    cmd = [exe, "--ros-args", "-p", "fixed_frame:=odom", "-p", "clock_skew_warn_s:=0.0"]
    if a.model:
        cmd += ["-p", f"checkpoint:={Path(a.model).resolve()}"]
    for p in a.param + (["image_transport:=compressed"] if a.jpeg else []):
        cmd += ["-p", p]
    return cmd


def run(a, images: list, K, T_wc, log: Path) -> dict:
    """Start the node, stream at it for --minutes, stop it: what the run measured (before the summary)."""
    from mvgd_ros.eval_node import NodeProcess

    node, rig = NodeProcess(node_command(a), dict(os.environ), log), Rig(compressed=bool(a.jpeg))
    try:
        end = time.monotonic() + 180
        while rig.image_pub.get_subscription_count() == 0 or rig.tf_pub.get_subscription_count() == 0:
            if time.monotonic() > end or not node.alive():
                raise SystemExit(f"bench_endurance: the node did not come up:\n{node.tail()}")
            time.sleep(0.1)
        rig.send_mount()
        time.sleep(2.0)
        samples = stream(a, rig, node.proc.pid, images, K, T_wc)
        alive = node.alive()
        with rig.lock:
            last_diag = dict(rig.diag)
        rows = windows(a, rig, samples)
    finally:
        rig.close()
        code = node.stop()
    return {"node_alive_at_end": alive, "node_exit_code": code, "rows": rows, "diagnostics_last": last_diag}


def report(result: dict) -> None:
    """The table and the one-line summary on stdout."""
    print("| minute | images | depth/s | of images | p50 ms | p90 ms | views/s | RSS MB | CPU % | keyframes | missing (node's estimate) | health |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in result["rows"]:
        print(_fmt(r))
    s, jpeg_kb = result["summary"], result["jpeg_kb_median"]
    print(f"node alive to the end: {result['node_alive_at_end']} (exit {result['node_exit_code']}); RSS {s['rss_first_mb']:.0f} -> "
          f"{s['rss_last_mb']:.0f} MB (max {s['rss_max_mb']:.0f}), second half {s['rss_growth_mb_per_min_second_half']:+.2f} MB/min; "
          f"log errors {s['log_errors']}; counters {s['counters']}" + (f"; JPEG median {jpeg_kb:.0f} KB" if jpeg_kb else ""))


def main(argv=None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    if a.redraw:
        print(f"wrote {redraw(a.redraw, a.figure)}")
        return 0
    if a.minutes * 60 < 2 * a.window:
        ap.error("--minutes must cover at least two --window")
    if not 0 <= a.jpeg <= 100:
        ap.error("--jpeg must be 0 (raw) or a JPEG quality 1-100")
    os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    print(f"rendering {a.frames} frames at {a.hw[0]}x{a.hw[1]} ...", flush=True)
    rgb, K, T_wc = render_stream(a.frames, a.hw, a.seed)
    images, jpeg_kb = encode_frames(rgb, a.jpeg)
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_endurance_{os.getpid()}.log"
    measured = run(a, images, K, T_wc, log)
    result = {"env": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()},
              "command": "python benchmarks/bench_endurance.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "settings": {k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
              "jpeg_kb_median": jpeg_kb, **measured,
              "summary": summary(measured["rows"], measured["diagnostics_last"], log.read_text(errors="replace") if log.exists() else "")}
    report(result)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2))
    png = figure(a.figure or a.out.with_suffix(".png"), result["rows"], figure_title(result["settings"]))
    print(f"wrote {a.out} and {png}")
    return 0 if measured["node_alive_at_end"] else 1


if __name__ == "__main__":
    sys.exit(main())
