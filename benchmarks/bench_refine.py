"""What the photometric refinement and the view synthesis cost per prediction (prints a table, writes JSON).

    python benchmarks/bench_refine.py [--views 4 8] [--repeats 5] [--calls 10] [--threads 2] [--model PATH]
                                      [--variant key=value[,key=value] ...] [--out JSON]

MVGDPredictor.predict with the shipped model at its own image size, on a rendered forward
sequence: depth at the live camera (the last view) with `refine` off / on (on: also through the
checkpoint's learned stage, `refine_net`, when it has one), and RGB at a novel view with `synthesize` off /
on, and on with the views' own depth fused in (`view_depth`, as the
node does since stop 14); each `--variant` (RefineConfig fields, e.g.
`max_sources=3,window=5`) adds a column: depth refined with those settings. The settings alternate within each repeat (paired, so slow
phases of a shared machine hit both alike); each cell is the median over repeats of the median
over `calls` calls. JSON: benchmarks/results/refine_cost_<threads>threads.json (or --out).
"""
from __future__ import annotations

import argparse
import dataclasses
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

from mvgd_core.data.render import render_sequence  # noqa: E402
from mvgd_core.data.types import Frame  # noqa: E402
from mvgd_core.inference import MVGDPredictor  # noqa: E402
from mvgd_core.config import settings_from_text  # noqa: E402
from mvgd_core.refine import RefineConfig  # noqa: E402

CASES = {"depth, refine off": ("depth", {"refine": False}), "depth, refine on": ("depth", {"refine": True}),
         "depth, refine on + learned stage": ("depth", {"refine": True, "refine_net": True}),
         "novel RGB, synthesis off": ("rgb", {"synthesize": False}), "novel RGB, synthesis on": ("rgb", {"synthesize": True}),
         "novel RGB, synthesis + view depth fusion": ("rgb", {"synthesize": True, "view_depth": "views"})}


def cases(variants: list[str]) -> dict:
    """{column: (task, predict kwargs, RefineConfig or None = the predictor's own)}."""
    out = {name: (task, kw, None) for name, (task, kw) in CASES.items()}
    for v in variants:
        out[f"depth, refine {v}"] = ("depth", {"refine": True}, settings_from_text(RefineConfig, v))
    return out


def measure(pred: MVGDPredictor, views: int, repeats: int, calls: int, columns: dict) -> dict:
    H, W = pred.image_size
    seq = render_sequence(seed=5, num_frames=views + 1, height=H, width=W, trajectory="forward")
    cond = [Frame(rgb=f.rgb, K=f.K, T_wc=f.T_wc) for f in seq[:views]]
    live, novel = cond[-1], seq[views]
    targets = {"depth": (live.K, live.T_wc), "rgb": (novel.K, novel.T_wc)}
    own = [(pred.predict(cond, f.K, f.T_wc, (H, W)).depth, f.K) for f in cond]  # each view's own live depth, as the node keeps it
    columns = {name: (task, {k: own if v == "views" else v for k, v in kw.items()}, cfg) for name, (task, kw, cfg) in columns.items()}
    shipped = pred.refine
    for task, kw, cfg in columns.values():  # warm-up
        pred.refine = cfg or shipped
        pred.predict(cond, *targets[task], (H, W), task=task, **kw)
    per = {name: [] for name in columns}
    for _ in range(repeats):
        for name, (task, kw, cfg) in columns.items():
            pred.refine = cfg or shipped
            ts = []
            for i in range(calls):
                t = time.perf_counter()
                pred.predict(cond, *targets[task], (H, W), task=task, seed=i, **kw)
                ts.append(time.perf_counter() - t)
            per[name].append(float(np.median(ts)) * 1000)
    pred.refine = shipped
    return {name: {"median_ms": float(np.median(v)), "min_ms": float(np.min(v)), "max_ms": float(np.max(v))} for name, v in per.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--views", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default=str(ROOT / "models" / "mvgd_default.pt"))
    ap.add_argument("--out", default="", help="JSON path (default benchmarks/results/refine_cost_<threads>threads.json)")
    ap.add_argument("--variant", action="append", default=[], help="RefineConfig overrides for one more depth column (repeatable)")
    a = ap.parse_args(argv)
    try:
        columns = cases(a.variant)
    except ValueError as exc:
        ap.error(str(exc))
    torch.set_num_threads(a.threads)
    pred = MVGDPredictor.from_checkpoint(a.model, device="cpu", steps=1)
    rows = []
    for v in a.views:
        print(f"[bench] {v} views", file=sys.stderr, flush=True)
        rows.append({"views": v, **measure(pred, v, a.repeats, a.calls, columns)})
    print(f"\nMVGDPredictor.predict at {pred.image_size[0]}x{pred.image_size[1]}, {a.threads} threads, ms per call: median over "
          f"{a.repeats} repeats (min-max of the repeats)\n")
    print("| views | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns))
    for r in rows:
        print(f"| {r['views']} | " + " | ".join(f"{r[n]['median_ms']:.1f} ({r[n]['min_ms']:.1f}-{r[n]['max_ms']:.1f})" for n in columns) + " |")
    out = Path(a.out) if a.out else ROOT / "benchmarks" / "results" / f"refine_cost_{a.threads}threads.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = "python benchmarks/bench_refine.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out.write_text(json.dumps({"command": cmd.strip(), "model": a.model, "threads": a.threads, "torch": torch.__version__,
                               "machine": platform.processor() or platform.machine(), "load_avg_at_end": os.getloadavg()[0],
                               "refine": dataclasses.asdict(pred.refine), "variants": a.variant,
                               "when": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": rows}, indent=2))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
