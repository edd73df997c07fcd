"""First-frame latency of the node's predictor path with and without the start-up warm-up.

    .venv/bin/python benchmarks/bench_warmup.py --device cpu --threads 1
    .venv/bin/python benchmarks/bench_warmup.py --device cuda

Each variant runs in a fresh process (lazy set-up is per process): load the checkpoint, then
(with warm-up) `mvgd_ros.model.warm_up`, then time predictions on a rendered sequence the way
the node calls them (`MVGDPredictor.predict`, depth, 4 conditioning views). Reported: the first
real frame's latency, the median of frames 2..N, and their ratio; plus the warm-up's own time.
Prints a table and writes JSON to --out (default benchmarks/results/warmup_<device>.json).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _child(a) -> dict:
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    from mvgd_core.data.render import render_sequence
    from mvgd_core.inference import MVGDPredictor
    from mvgd_ros.frames import output_size, scale_intrinsics
    from mvgd_ros.model import warm_up

    pred = MVGDPredictor.from_checkpoint(a.model, device=a.device, steps=a.steps)
    h, w = pred.image_size
    frames = render_sequence(seed=5, num_frames=a.frames + 4, height=h * 2, width=w * 2, trajectory="forward")
    out_hw = output_size([0, 0], pred.image_size, frames[0].rgb.shape[:2])
    warm_s = warm_up(pred, out_hw, a.steps) if a.warm_up else None
    times = []
    for i in range(4, len(frames)):
        f = frames[i]
        _sync(a.device)
        t0 = time.perf_counter()
        pred.predict(frames[i - 4:i + 1], scale_intrinsics(f.K, f.rgb.shape[:2], out_hw), f.T_wc, out_hw, task="depth", steps=a.steps, seed=0)
        _sync(a.device)
        times.append(time.perf_counter() - t0)
    rest = statistics.median(times[1:])
    return {"warm_up": a.warm_up, "warm_up_s": warm_s, "first_s": times[0], "rest_median_s": rest, "first_over_rest": times[0] / rest}


def _sync(device):
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=str(ROOT / "models" / "mvgd_default.pt"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--frames", type=int, default=6)
    p.add_argument("--out", default=None)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--warm-up", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(_child(a)))
        return 0
    rows = []
    for warm in (False, True):
        cmd = [sys.executable, __file__, "--child", "--model", a.model, "--device", a.device, "--threads", str(a.threads),
               "--steps", str(a.steps), "--frames", str(a.frames)] + (["--warm-up"] if warm else [])
        rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]))
    print("| warm-up | warm-up s | first frame s | later frames (median) s | first / later |\n|---|---|---|---|---|")
    for r in rows:
        ws = f"{r['warm_up_s']:.3f}" if r["warm_up_s"] is not None else "-"
        print(f"| {'yes' if r['warm_up'] else 'no'} | {ws} | {r['first_s']:.3f} | {r['rest_median_s']:.3f} | {r['first_over_rest']:.1f}x |")
    out = Path(a.out or ROOT / "benchmarks" / "results" / f"warmup_{a.device}.json")
    out.write_text(json.dumps({"device": a.device, "threads": a.threads, "steps": a.steps, "model": Path(a.model).name,
                               "machine": platform.machine(), "rows": rows}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
