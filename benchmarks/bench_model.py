"""Latency and peak memory of MVGD vs the number of conditioning views.

    .venv/bin/python benchmarks/bench_model.py --preset small --device cpu
    .venv/bin/python benchmarks/bench_model.py --preset base --device cuda --views 1 4 16 64 256 1024

For each view count N (batch 1): one forward pass (scene encoding + all RIN blocks) and one
full DDIM sampling run (`--steps`, scene tokens encoded once, latent self-conditioning), both
under no_grad, median of `--repeats` runs after one warm-up. Wall time and process CPU time
(time.process_time, all threads) are both reported. On a shared, loaded CPU machine use
`--threads 1` (and OMP_WAIT_POLICY=PASSIVE): with several threads, OpenMP spin-waits on
descheduled peers and both clocks become noise (see results/bench_model_cpu_2threads.json).

Peak memory:
- CUDA: torch.cuda.max_memory_allocated() minus the memory held before the run (model + inputs).
- CPU: tracemalloc does not see PyTorch's C++ allocations, so each N runs in a fresh
  subprocess and reports peak resident set size (getrusage ru_maxrss) minus the RSS measured
  right before the first forward (after model and inputs exist). It includes allocator slack.

Prints a table and writes JSON to --out (default benchmarks/results/bench_model_<device>.json).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mvgd_core.cameras import look_at  # noqa: E402
from mvgd_core.diffusion import DiffusionConfig, GaussianDiffusion, prepare_inputs  # noqa: E402
from mvgd_core.model import MVGD, model_config  # noqa: E402
from mvgd_core.sampler import DDIMSampler  # noqa: E402


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _inputs(cfg, N: int, device):
    H, W = cfg.image_size
    g = torch.Generator().manual_seed(0)
    K = torch.tensor([[0.8 * W, 0, (W - 1) / 2], [0, 0.8 * W, (H - 1) / 2], [0, 0, 1]])
    ang = torch.linspace(0, 6.28, N + 1)[:-1]
    T = torch.stack([torch.tensor(look_at([2 * a.cos().item(), 2 * a.sin().item(), 0.5], [0, 0, 0.5]), dtype=torch.float32) for a in ang])
    tgt = torch.tensor(look_at([2.2, 0.0, 0.6], [0, 0, 0.5]), dtype=torch.float32)
    inp = prepare_inputs(torch.rand(1, N, 3, H, W, generator=g), K.expand(1, N, 3, 3), T[None], K[None], tgt[None])
    return {k: getattr(inp, k).to(device) for k in ("cond_rgb", "cond_K", "cond_T", "tgt_K", "tgt_T")}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(preset: str, N: int, device: torch.device, steps: int, repeats: int) -> dict:
    """Forward and sampling latency (s) and peak memory (bytes) for N views."""
    torch.manual_seed(0)
    cfg = model_config(preset)
    model = MVGD(cfg).to(device).eval()
    inp = _inputs(cfg, N, device)
    B, (H, W) = 1, cfg.image_size
    task = torch.ones(B, dtype=torch.long, device=device)
    x = torch.randn(B, cfg.channels, H, W, device=device)
    t = torch.full((B,), 500, dtype=torch.long, device=device)
    sampler = DDIMSampler(GaussianDiffusion(DiffusionConfig()))

    def forward():
        model(x, t, task, inp["cond_rgb"], inp["cond_K"], inp["cond_T"], inp["tgt_K"], inp["tgt_T"])

    def sample():
        scene = model.encode_scene(inp["cond_rgb"], inp["cond_K"], inp["cond_T"])
        fn = lambda x_t, tt, sc: model(x_t, tt, task, None, None, None, inp["tgt_K"], inp["tgt_T"], latents_sc=sc, scene_tokens=scene)  # noqa: E731
        sampler.sample(fn, (B, cfg.channels, H, W), generator=torch.Generator().manual_seed(0), device=device, num_inference_steps=steps)

    def timed(fn, k):
        """Median wall time and median process CPU time (all threads) over k runs."""
        wall, cpu = [], []
        for _ in range(k):
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            _sync(device)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        return statistics.median(wall), statistics.median(cpu)

    with torch.no_grad():
        if device.type == "cuda":
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        else:
            base = _rss_bytes()  # model + inputs exist; everything above this is the run's working memory
        forward()  # warm-up (allocator, kernels)
        fwd, fwd_cpu = timed(forward, repeats)
        smp, smp_cpu = timed(sample, max(1, repeats // 2))
        peak = (torch.cuda.max_memory_allocated() if device.type == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) - base
    return {"views": N, "data_tokens": (N + 1) * cfg.num_patches, "forward_s": fwd, "sample_s": smp,
            "forward_cpu_s": fwd_cpu, "sample_cpu_s": smp_cpu, "steps": steps,
            "peak_mem_bytes": max(int(peak), 0)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--views", type=int, nargs="+", default=[1, 4, 16, 64, 256, 1024])
    ap.add_argument("--steps", type=int, default=10, help="DDIM steps of the sampling benchmark")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--_child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("CUDA requested but not available")

    if args._child is not None:  # one N in a fresh process (clean CPU peak RSS)
        print(json.dumps(measure(args.preset, args._child, device, args.steps, args.repeats)))
        return

    rows = []
    for N in args.views:
        if device.type == "cpu":
            cmd = [sys.executable, __file__, "--preset", args.preset, "--device", "cpu", "--steps", str(args.steps),
                   "--repeats", str(args.repeats), "--threads", str(args.threads), "--_child", str(N)]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        else:
            rows.append(measure(args.preset, N, device, args.steps, args.repeats))
        r = rows[-1]
        print(f"N={N:5d} tokens={r['data_tokens']:7d} forward {r['forward_s'] * 1e3:9.1f} ms (cpu {r['forward_cpu_s'] * 1e3:9.1f})  "
              f"sample({args.steps}) {r['sample_s'] * 1e3:9.1f} ms (cpu {r['sample_cpu_s'] * 1e3:9.1f})  "
              f"peak {r['peak_mem_bytes'] / 2**20:8.1f} MiB", flush=True)

    by_n = {r["views"]: r for r in rows}
    ratio = {k: by_n[1024][k] / by_n[64][k] for k in ("forward_s", "sample_s", "forward_cpu_s", "sample_cpu_s")} if 64 in by_n and 1024 in by_n else None
    cfg = model_config(args.preset)
    result = {
        "preset": args.preset, "config": cfg.__dict__ | {"image_size": list(cfg.image_size)},
        "params": sum(p.numel() for p in MVGD(cfg).parameters()),
        "device": args.device, "device_name": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or platform.machine(),
        "threads": args.threads, "torch": torch.__version__, "steps": args.steps,
        "memory_method": "cuda max_memory_allocated - allocated before" if device.type == "cuda" else "fresh subprocess per N: ru_maxrss - RSS before the first forward",
        "loadavg_1_5_15_at_end": list(os.getloadavg()), "cpu_count": os.cpu_count(),
        "rows": rows, "ratio_1024_over_64": ratio,
    }
    print("\n| views | data tokens | forward wall (ms) | forward CPU (ms) | sample wall (ms) | sample CPU (ms) | peak mem (MiB) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['views']} | {r['data_tokens']} | {r['forward_s'] * 1e3:.1f} | {r['forward_cpu_s'] * 1e3:.1f} | "
              f"{r['sample_s'] * 1e3:.1f} | {r['sample_cpu_s'] * 1e3:.1f} | {r['peak_mem_bytes'] / 2**20:.1f} |")
    if ratio:
        print("time(1024)/time(64) (target <= 20): " + ", ".join(f"{k} {v:.2f}" for k, v in ratio.items()))
    out = Path(args.out or Path(__file__).parent / "results" / f"bench_model_{args.device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
