"""Node / predictor benchmarks: prints tables, writes JSON to benchmarks/results/.

    python benchmarks/bench_node.py [--sizes 64 128 96x128 256] [--views 1 4 16 64 256 1024] [--steps 10]
                                    [--threads 1] [--part node|views|all] [--model PATH] [--param refine_depth:=false --tag norefine]

Part "node" - end to end through the real `mvgd_node` over DDS (mvgd-eval's gated playback):
image published -> /mvgd/depth received, with 8 conditioning views (max_views 8, every frame a
keyframe), at 64x64, 128x128 and 256x256 or any HxW given: at the checkpoint's own image size the checkpoint itself
(default the shipped model, with its learned stage and calibration: what the node runs), at other sizes random weights
in its architecture (the learned stage is then absent; the row's "weights" says which). The first 7 frames fill the
conditioning set and are not counted. Throughput = depth maps per second of gated playback
(one image in flight). Memory = the node process's peak RSS. JSON: node_latency_<steps>steps.json.

Part "views" - the predictor path the node calls (MVGDPredictor.predict, depth, the shipped
model at its own image size) with N = 1 ... 1024 conditioning views; each N in a fresh subprocess
so its peak RSS is its own. The child keeps freed memory as the node does (keep_freed_memory; BENCH_KEEP_FREED=0 in the
environment: glibc's default, as before stop 32). The model-only scaling (forward passes, no sampler) is the core engineer's
benchmarks/bench_model.py; this measures what the node pays per prediction.

CPU only where no GPU is present (device "auto" picks CUDA when available; the JSON records it).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


SHIPPED = ROOT / "models" / "mvgd_default.pt"
sys.path.insert(0, str(ROOT / "benchmarks"))
from timing import hw_arg  # noqa: E402


def _checkpoint_for(path: Path, hw: tuple[int, int], model: Path = SHIPPED) -> tuple[Path, str]:
    """(checkpoint, "shipped" | "random") for the node at image size hw: `model` itself at its own
    size; elsewhere random weights in its architecture written to `path` (its weights exist for its
    own size only). Random weights carry no learned stage, so its time goes unmeasured: until stop
    32 every row was measured that way, the shipped size included."""
    from mvgd_core.checkpoint import load_checkpoint

    config = load_checkpoint(model)["config"]["model"]
    if tuple(config["image_size"]) == tuple(hw):
        return model, "shipped"
    return _random_checkpoint(path, hw, config, str(model)), "random"


def _random_checkpoint(path: Path, hw: tuple[int, int], config: dict, where: str) -> Path:
    """Random weights in the architecture of model config `config` (from checkpoint `where`) at
    image size hw (speed does not depend on the weights)."""
    import dataclasses

    import torch

    from mvgd_core.checkpoint import make_state, save_checkpoint
    from mvgd_core.config import from_dict
    from mvgd_core.diffusion import DiffusionConfig
    from mvgd_core.model import MVGD, ModelConfig

    arch = from_dict(ModelConfig, config, where=where)
    torch.manual_seed(0)
    save_checkpoint(path, make_state(MVGD(dataclasses.replace(arch, image_size=hw)), DiffusionConfig()))
    return path


def _env() -> dict:
    import torch

    return {"torch": torch.__version__, "device": "cuda" if torch.cuda.is_available() else "cpu", "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(), "load_avg_at_start": os.getloadavg()[0]}


def bench_node(sizes, steps: int, frames: int, tmp: Path, params: tuple[str, ...] = (), model: Path = SHIPPED) -> list[dict]:
    from mvgd_core.data.render import render_sequence
    from mvgd_core.data.rosbag_io import write_bag
    from mvgd_core.report import latency_stats
    from mvgd_ros import eval as E

    rows = []
    for h, w in sizes:
        s = f"{h}x{w}"
        ckpt, weights = _checkpoint_for(tmp / f"small_{s}.pt", (h, w), model)
        seq = render_sequence(seed=5, num_frames=frames, height=h, width=w, trajectory="forward")
        bag = write_bag(seq, tmp / f"bag_{s}", storage="mcap", stamp_offset=100.0, overwrite=True)
        out = tmp / f"eval_{s}"
        args = [str(bag), "--model", str(ckpt), "--out", str(out), "--quiet", "--holdout-every", "0", "--no-baselines",
                "--max-pictures", "0", "--rgb-out", "", "--virtual-depth-out", "", "--first-timeout", "300", "--timeout", "300",
                "--param", "max_views:=8", "--param", "keyframe_pose_distance:=0.0",
                "--param", f"steps:={steps}"] + [x for kv in params for x in ("--param", kv)]
        print(f"[bench] node {s}: {frames} frames", file=sys.stderr, flush=True)
        if E.main(args) != 0:
            raise SystemExit(f"mvgd-eval failed at {s}")
        m = json.loads((out / "metrics.json").read_text())
        samples = [x for t, x in m["latency_samples"]][7:]  # frames 8+ see 8 views
        lat = latency_stats(samples)
        rows.append({"size": s, "views": 8, "steps": steps, "weights": weights, "params": list(params), "samples": lat["n"], "p50_ms": lat["p50_ms"], "p90_ms": lat["p90_ms"],
                     "p99_ms": lat["p99_ms"], "throughput_hz": 1000.0 / lat["mean_ms"] if lat["mean_ms"] else None,
                     "node_peak_rss_mb": m.get("node_peak_rss_mb")})
    return rows


def _one_predict(n: int, steps: int, ckpt: str, repeats: int) -> dict:
    """Child process: time MVGDPredictor.predict with n conditioning views; report peak RSS."""
    import numpy as np
    import torch

    from mvgd_core.allocator import keep_freed_memory
    from mvgd_core.cameras import look_at
    from mvgd_core.data.types import Frame
    from mvgd_core.inference import MVGDPredictor

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    if os.environ.get("BENCH_KEEP_FREED", "1") == "1":  # as the node does by default (keep_freed_memory)
        keep_freed_memory()
    pred = MVGDPredictor.from_checkpoint(ckpt, steps=steps)
    H, W = pred.image_size
    rng = np.random.default_rng(0)
    K = np.array([[W * 0.8, 0, (W - 1) / 2], [0, W * 0.8, (H - 1) / 2], [0, 0, 1.0]])
    cond = []
    for i in range(n):
        a = 2 * np.pi * i / max(n, 1)
        T = look_at([3 * np.cos(a), 3 * np.sin(a), 1.0], [0, 0, 0.5])
        cond.append(Frame(rgb=rng.integers(0, 255, (H, W, 3), dtype=np.uint8), K=K, T_wc=T, stamp=float(i)))
    for _ in range(2):  # warm-up: the first CPU calls are several times slower (allocator, kernel caches)
        pred.predict(cond, K, cond[0].T_wc, (H, W), steps=1)
    times, cpu = [], []
    for r in range(repeats):
        pred.view_cache.clear()  # every view new, as for a fresh set: the scaling in N (the node's keyframes mostly hit it)
        t, c = time.perf_counter(), time.process_time()
        pred.predict(cond, K, cond[0].T_wc, (H, W), steps=steps, seed=r)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)  # all threads: less sensitive to other jobs on a shared CPU
    hwm = None
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024.0
    return {"views": n, "size": f"{H}x{W}", "steps": steps, "repeats": repeats, "median_s": float(np.median(times)), "min_s": float(np.min(times)), "cpu_s": float(np.median(cpu)),
            "peak_rss_mb": hwm, "device": str(pred.device)}


def bench_views(views, steps: int, ckpt: str, repeats: int = 3, threads: int = 2) -> list[dict]:
    rows = []
    for n in views:
        print(f"[bench] predictor with {n} views", file=sys.stderr, flush=True)
        reps = repeats
        r = subprocess.run([sys.executable, __file__, "--_child", str(n), "--steps", str(steps), "--model", ckpt, "--repeats", str(reps)],
                           capture_output=True, text=True, env={**os.environ, "BENCH_THREADS": str(threads)})
        if r.returncode != 0:
            rows.append({"views": n, "error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"})
            continue
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
    return rows


def _table(rows: list[dict], cols: list[tuple[str, str, str]]) -> str:
    head = "| " + " | ".join(c[1] for c in cols) + " |\n|" + "---|" * len(cols) + "\n"

    def cell(r, k, f):
        v = r.get(k)
        return "–" if v is None else (f.format(v) if f else str(v))

    return head + "\n".join("| " + " | ".join(cell(r, k, f) for k, _, f in cols) + " |" for r in rows)


NODE_COLS = [("size", "image", ""), ("weights", "weights", ""), ("views", "views", ""), ("steps", "DDIM steps", ""), ("samples", "frames", ""), ("p50_ms", "p50 ms", "{:.0f}"),
             ("p90_ms", "p90 ms", "{:.0f}"), ("p99_ms", "p99 ms", "{:.0f}"), ("throughput_hz", "depth maps/s", "{:.2f}"), ("node_peak_rss_mb", "node peak RSS MB", "{:.0f}")]
VIEW_COLS = [("views", "views", ""), ("size", "image", ""), ("steps", "DDIM steps", ""), ("median_s", "median s / prediction", "{:.3f}"),
             ("min_s", "min s", "{:.3f}"), ("cpu_s", "CPU s (all threads)", "{:.2f}"), ("peak_rss_mb", "peak RSS MB", "{:.0f}"), ("error", "error", "")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=["node", "views", "all"], default="all")
    p.add_argument("--sizes", type=hw_arg, nargs="+", default=[(64, 64), (128, 128), (256, 256)],
                   help="image sizes: N (NxN) or HxW, e.g. 96x128 (the matching model's own size)")
    p.add_argument("--views", type=int, nargs="+", default=[1, 4, 16, 64, 256, 1024])
    p.add_argument("--steps", type=int, default=10, help="DDIM steps (10: the issue's latency target; the node's default is 1)")
    p.add_argument("--frames", type=int, default=13, help="frames per node run (7 fill the conditioning set)")
    p.add_argument("--model", default=None, help="checkpoint (default: models/mvgd_default.pt): the views part, and the node part "
                   "at its own image size (random weights in its architecture at other sizes)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="torch threads in the views part (the node uses torch's default)")
    p.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                   help="extra node parameter for the node part, e.g. refine_depth:=false (repeatable)")
    p.add_argument("--tag", default="", help="suffix of the node part's JSON name, e.g. 'norefine'")
    p.add_argument("--_child", type=int, default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a._child is not None:
        print(json.dumps(_one_predict(a._child, a.steps, a.model, a.repeats)))
        return 0
    import torch

    torch.set_num_threads(2)
    RESULTS.mkdir(parents=True, exist_ok=True)
    cmd = "python benchmarks/bench_node.py " + " ".join(argv if argv is not None else sys.argv[1:])
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        if a.part in ("node", "all"):
            rows = bench_node(a.sizes, a.steps, a.frames, tmp, tuple(a.param), Path(a.model or SHIPPED))
            res = {"command": cmd, "env": _env(), "rows": rows, "when": time.strftime("%Y-%m-%d %H:%M:%S")}
            (RESULTS / f"node_latency_{a.steps}steps{'_' + a.tag if a.tag else ''}.json").write_text(json.dumps(res, indent=2))
            print("\nEnd-to-end node latency (image in -> depth out, real DDS, gated):\n" + _table(rows, NODE_COLS))
        if a.part in ("views", "all"):
            ckpt = a.model or str(SHIPPED)
            rows = bench_views(a.views, a.steps, ckpt, a.repeats, a.threads)
            res = {"command": cmd, "env": _env(), "threads": a.threads, "model": ckpt, "rows": rows, "when": time.strftime("%Y-%m-%d %H:%M:%S")}
            (RESULTS / f"node_view_scaling_{a.threads}threads.json").write_text(json.dumps(res, indent=2))
            print("\nPredictor path (MVGDPredictor.predict, depth) vs conditioning views:\n" + _table(rows, VIEW_COLS))
    print(f"\nJSON: {RESULTS}/node_latency_<steps>steps.json, node_view_scaling_<threads>threads.json (load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
