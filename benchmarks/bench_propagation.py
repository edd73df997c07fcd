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
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_node import _size  # noqa: E402  (the benchmarks' size parser: N or HxW, clear errors)
from timing import finish, median_ms  # noqa: E402
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
    return median_ms(run, repeats, calls)


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
    columns = [("size", "size", ""), ("threads", "threads", ""), ("colour guide", "guide", ""), ("ms per depth map", "median_ms", ".1f")]
    return finish(rows, columns, args.out, "bench_propagation.py", argv)


if __name__ == "__main__":
    sys.exit(main())
