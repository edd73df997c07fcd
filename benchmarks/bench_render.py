"""Procedural renderer throughput: frames/s at several resolutions, on 1 core and 2 cores.

    python benchmarks/bench_render.py [--quick] [--out benchmarks/results/bench_render.json]

Rows:
- render 1 thread: `render()` of 16-view batches of pre-built scenes (scene + trajectory
  generation excluded), one process, torch.set_num_threads(1).
- render 2 procs: the same work split over two processes of one thread each (how DataLoader
  workers use 2 cores; one torch process with 2 threads scales worse on a shared machine).
- sequence e2e: render_sequence(seed, 8 frames) per item: scene, trajectory search (with its
  low-res probe renders) and rendering, 1 thread.
- dataset: ProceduralDataset samples/s (N = 2-4 views + target, 6 frames per scene), 1 thread.
CPU ms/frame is process CPU time per frame; the 1-minute load average is recorded because the
machine is shared: wall-clock numbers drop when other jobs run.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mvgd_core.data.render import ProceduralConfig, render, render_sequence  # noqa: E402
from mvgd_core.data.sampler import ProceduralDataset, ViewSamplingConfig  # noqa: E402
from mvgd_core.data.scenes import random_scene  # noqa: E402
from mvgd_core.data.textures import use_image_textures  # noqa: E402
from mvgd_core.data.trajectories import random_intrinsics, random_trajectory  # noqa: E402

VIEWS = 16


def _jobs(hw, n_scenes, seed):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_scenes):
        s = random_scene(rng)
        use_image_textures(s.material_tables(), rng, ProceduralConfig().p_image_texture)  # the default share of photos
        K = random_intrinsics(rng, *hw)
        out.append((s, K, random_trajectory(s, rng, str(rng.choice(["forward", "turn", "handheld", "wide"])), VIEWS, K, *hw)))
    return out


def _render_worker(args):
    hw, n_scenes, seed = args
    torch.set_num_threads(1)
    jobs = _jobs(hw, n_scenes, seed)
    render(jobs[0][0], jobs[0][1], jobs[0][2][:1], *hw)  # warm-up
    w, c = time.perf_counter(), time.process_time()
    for s, K, T in jobs:
        render(s, K, T, *hw)
    return time.perf_counter() - w, time.process_time() - c, n_scenes * VIEWS


def bench_render(hw, n_scenes, procs):
    if procs == 1:
        wall, cpu, frames = _render_worker((hw, n_scenes, 0))
        return frames / wall, 1000 * cpu / frames
    with mp.get_context("spawn").Pool(procs) as pool:
        pool.map(_render_worker, [(hw, 1, 99)] * procs)  # start-up and imports outside the timing
        t = time.perf_counter()
        res = pool.map(_render_worker, [(hw, n_scenes, i) for i in range(procs)])
        wall = time.perf_counter() - t
    frames = sum(r[2] for r in res)
    return frames / max(max(r[0] for r in res), 1e-9), 1000 * sum(r[1] for r in res) / frames, wall


def bench_sequence(hw, n):
    torch.set_num_threads(1)
    render_sequence(0, 2, *hw)
    w, c = time.perf_counter(), time.process_time()
    for seed in range(n):
        render_sequence(1000 + seed, 8, *hw)
    w, c = time.perf_counter() - w, time.process_time() - c
    return 8 * n / w, 1000 * c / (8 * n)


def bench_dataset(hw, n):
    torch.set_num_threads(1)
    ds = ProceduralDataset(hw, ViewSamplingConfig(min_views=2, max_views=4), length=n)
    ds[0]
    w, c = time.perf_counter(), time.process_time()
    for i in range(1, n + 1):
        ds[i]
    w, c = time.perf_counter() - w, time.process_time() - c
    return n / w, 1000 * c / n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer scenes (smoke run)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_render.json"))
    a = ap.parse_args(argv)
    n_scenes = 2 if a.quick else 8
    rows = []
    load0 = os.getloadavg()[0]
    for hw in [(64, 64), (128, 128), (256, 256)]:
        fps, ms = bench_render(hw, n_scenes, 1)
        rows.append({"case": "render 1 thread", "hw": list(hw), "fps": fps, "cpu_ms_per_frame": ms})
        fps2, ms2, _ = bench_render(hw, n_scenes, 2)
        rows.append({"case": "render 2 procs", "hw": list(hw), "fps": fps2, "cpu_ms_per_frame": ms2})
    for hw in [(128, 128)]:
        fps, ms = bench_sequence(hw, 3 if a.quick else 10)
        rows.append({"case": "sequence e2e (8 frames)", "hw": list(hw), "fps": fps, "cpu_ms_per_frame": ms})
        sps, ms = bench_dataset(hw, 4 if a.quick else 20)
        rows.append({"case": "dataset samples/s", "hw": list(hw), "fps": sps, "cpu_ms_per_frame": ms})
    load1 = os.getloadavg()[0]
    print(f"{'case':<26}{'H x W':>10}{'per s':>10}{'CPU ms':>10}")
    for r in rows:
        print(f"{r['case']:<26}{r['hw'][0]:>5} x{r['hw'][1]:<4}{r['fps']:>9.0f}{r['cpu_ms_per_frame']:>10.1f}")
    print(f"load average (1 min) at start {load0:.1f}, at end {load1:.1f}; {os.cpu_count()} CPUs visible")
    result = {
        "rows": rows,
        "loadavg_start": load0,
        "loadavg_end": load1,
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "quick": a.quick,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
