"""What aggregating a cost volume costs: SGM vs the guided filter (prints a table, writes JSON).

    python benchmarks/bench_cost_filter.py [--depths 7 64] [--threads 1 2] [--repeats 5] [--calls 10]

The two aggregations `RefineConfig.cost_filter` offers (stop 16), with the shipped settings, on a
random (D, 96, 128) cost: `mvgd_core.mvs.sgm_aggregate` (4 scanlines: a loop of max(H, W) steps
of a few small tensor ops) and `mvgd_core.mvs.guided_filter` (a fixed ~20 ops). D 7 is the
refinement's band, 64 the classical baseline's sweep. Each cell: median over repeats of the
median over calls, ms. JSON: benchmarks/results/cost_filter.json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mvgd_core.mvs import guided_filter, sgm_aggregate  # noqa: E402
from mvgd_core.refine import _SGM_P2_EDGE, RefineConfig  # noqa: E402
from timing import finish, median_ms  # noqa: E402


def _filters(depths: int) -> dict:
    g = torch.Generator().manual_seed(0)
    cost, gray = torch.rand((depths, 96, 128), generator=g) * 2, torch.rand((96, 128), generator=g)
    c = RefineConfig()
    return {"sgm": lambda: sgm_aggregate(cost, gray, c.sgm_p1, c.sgm_p2, _SGM_P2_EDGE),
            "guided": lambda: guided_filter(cost, gray, c.filter_radius, c.filter_eps)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--depths", type=int, nargs="+", default=[7, 64])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cost_filter.json"))
    args = ap.parse_args(argv)
    if min(args.depths) < 1 or min(args.threads) < 1 or args.repeats < 1 or args.calls < 1:
        ap.error("--depths, --threads, --repeats and --calls must be >= 1")
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for depths in args.depths:
            for name, run in _filters(depths).items():
                rows.append({"filter": name, "depths": depths, "threads": threads, "median_ms": median_ms(run, args.repeats, args.calls)})
    columns = [("cost filter", "filter", ""), ("hypotheses", "depths", ""), ("threads", "threads", ""), ("ms", "median_ms", ".1f")]
    return finish(rows, columns, args.out, "bench_cost_filter.py", argv)


if __name__ == "__main__":
    sys.exit(main())
