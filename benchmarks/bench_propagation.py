"""What spreading the refinement's corrections costs per depth map (prints a table, writes JSON).

    python benchmarks/bench_propagation.py [--sizes 96x128 192x256] [--threads 1 2] [--repeats 5] [--calls 20]

`mvgd_core.propagation.propagate_correction` with the shipped `RefineConfig` settings on a
synthetic depth map where 30 % of the pixels were accepted (about the share the refinement
replaces on real frames), with the image as colour guide (live camera) and without (novel view).
Each cell: median over repeats of the median over calls, ms. JSON:
benchmarks/results/propagation_cost.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_node import _size  # noqa: E402  (the benchmarks' size parser: N or HxW, clear errors)
from mvgd_core.propagation import propagate_correction  # noqa: E402
from mvgd_core.refine import RefineConfig  # noqa: E402


def measure(hw: tuple[int, int], guided: bool, repeats: int, calls: int) -> float:
    g = torch.Generator().manual_seed(0)
    net = 1.0 + torch.rand(hw, generator=g)
    acc = torch.rand(hw, generator=g) < 0.3
    refined = torch.where(acc, net * 1.1, net)
    guide = torch.rand((3, *hw), generator=g) if guided else None
    c = RefineConfig()
    run = lambda: propagate_correction(net, refined, acc, guide, c.propagate_radius, c.propagate_dilation,  # noqa: E731
                                       c.propagate_sigma_colour, c.propagate_prior)
    run()
    per = []
    for _ in range(repeats):
        ts = []
        for _ in range(calls):
            t = time.perf_counter()
            run()
            ts.append(time.perf_counter() - t)
        per.append(float(np.median(ts)) * 1000)
    return float(np.median(per))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=_size, nargs="+", default=[(96, 128), (192, 256)])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "propagation_cost.json"))
    args = ap.parse_args(argv)
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for hw in args.sizes:
            for guided in (True, False):
                rows.append({"size": f"{hw[0]}x{hw[1]}", "threads": threads, "guide": "image" if guided else "none",
                             "median_ms": measure(hw, guided, args.repeats, args.calls)})
    print("\n| size | threads | colour guide | ms per depth map |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['threads']} | {r['guide']} | {r['median_ms']:.1f} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = "python benchmarks/bench_propagation.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out.write_text(json.dumps({"command": cmd.strip(), "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
                               "load_average": list(os.getloadavg()), "rows": rows}, indent=2))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
