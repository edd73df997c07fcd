"""The node's live depth on a stream, in-process: what keeping each view's work across predictions saves.

    python benchmarks/bench_stream.py [--bag data/bags/hololens_office] [--max-views 8] [--every-frame]
                                      [--repeats 3] [--threads 2] [--model PATH] [--out JSON]

Replays a bag's frames through the node's own keyframe policy (`eval_scoring.node_conditioning`,
the node's defaults but `--max-views`; `--every-frame`: every frame a keyframe, as bench_node.py's
node part) and predicts each live frame's depth from its views with MVGDPredictor.predict, as the
node's worker does: the same Frame objects all along, so `MVGDPredictor.view_cache` finds the
views it saw before. Each prediction runs twice, cache on and off (capacity 0), in alternating
order (paired: slow phases of a shared machine hit both alike). Prints a table (p50 / p90 per arm,
the median of the paired differences, the cache's hit rate) and writes JSON
(benchmarks/results/stream_<views>views.json or --out). bench_node.py measures the whole node over DDS.
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

from mvgd_core.data.rosbag_io import BagError, read_bag  # noqa: E402
from mvgd_core.inference import MVGDPredictor  # noqa: E402
from mvgd_core.view_cache import ViewCache  # noqa: E402
from mvgd_ros.eval_scoring import node_conditioning  # noqa: E402
from mvgd_ros.keyframes import KeyframeConfig  # noqa: E402


def live_sets(frames, max_views: int, every_frame: bool) -> list[tuple[int, list[int]]]:
    """[(live frame index, its conditioning view indices)] the node would use, views of 2 or more."""
    cfg = KeyframeConfig(max_views=max_views, **({"pose_distance": 0.0} if every_frame else {}))
    return [(i, v) for i, v in sorted(node_conditioning(frames, set(), cfg).items()) if len(v) >= 2]


def measure(pred: MVGDPredictor, frames, sets, repeats: int) -> dict:
    arms = {"cache on": ViewCache(), "cache off": ViewCache(0)}
    times = {name: [] for name in arms}
    for r in range(repeats):
        arms["cache on"].clear()  # each pass starts cold, as a node does
        for k, (i, views) in enumerate(sets):
            order = list(arms) if (k + r) % 2 else list(arms)[::-1]
            for name in order:
                pred.view_cache = arms[name]
                cond, live = [frames[j] for j in views], frames[i]
                t = time.perf_counter()
                pred.predict(cond, live.K, live.T_wc, live.rgb.shape[:2], "depth", seed=0)
                times[name].append(time.perf_counter() - t)
    pred.view_cache = ViewCache()
    on, off = np.array(times["cache on"]) * 1000, np.array(times["cache off"]) * 1000
    cache = arms["cache on"]
    return {"predictions": len(on), "views_mean": float(np.mean([len(v) for _, v in sets])),
            **{f"{name} {q}_ms": float(np.percentile(a, p)) for name, a in (("on", on), ("off", off)) for q, p in (("p50", 50), ("p90", 90))},
            "paired_diff_median_ms": float(np.median(off - on)), "paired_diff_iqr_ms": [float(np.percentile(off - on, 25)), float(np.percentile(off - on, 75))],
            "hit_rate": cache.hits / max(1, cache.hits + cache.misses)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bag", default=str(ROOT / "data" / "bags" / "hololens_office"))
    ap.add_argument("--max-views", type=int, default=8)
    ap.add_argument("--every-frame", action="store_true", help="every frame a keyframe (bench_node.py's node part)")
    ap.add_argument("--repeats", type=int, default=3, help="passes over the stream")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default=str(ROOT / "models" / "mvgd_default.pt"))
    ap.add_argument("--out", default="")
    a = ap.parse_args(argv)
    try:
        frames = read_bag(a.bag)
    except (BagError, OSError) as exc:
        ap.error(f"cannot read {a.bag}: {exc}")
    torch.set_num_threads(a.threads)
    pred = MVGDPredictor.from_checkpoint(a.model, device="auto", steps=1)
    sets = live_sets(frames, a.max_views, a.every_frame)
    if not sets:
        ap.error(f"{a.bag}: no live frame with 2 or more views")
    for i, views in sets[:2]:  # warm-up: the first CPU calls are several times slower
        pred.predict([frames[j] for j in views], frames[i].K, frames[i].T_wc, frames[i].rgb.shape[:2], "depth")
    print(f"[bench] {len(sets)} live frames of {Path(a.bag).name}, {a.repeats} passes", file=sys.stderr, flush=True)
    row = measure(pred, frames, sets, a.repeats)
    print(f"\nlive depth from the node's keyframes ({Path(a.bag).name}, up to {a.max_views} views"
          f"{', every frame a keyframe' if a.every_frame else ''}), {pred.device}, {a.threads} threads, ms per prediction\n")
    print("| views (mean) | predictions | cache on p50 / p90 | cache off p50 / p90 | off - on, paired median [IQR] | hit rate |")
    print("|---|---|---|---|---|---|")
    print(f"| {row['views_mean']:.1f} | {row['predictions']} | {row['on p50_ms']:.1f} / {row['on p90_ms']:.1f} | "
          f"{row['off p50_ms']:.1f} / {row['off p90_ms']:.1f} | {row['paired_diff_median_ms']:.1f} "
          f"[{row['paired_diff_iqr_ms'][0]:.1f}, {row['paired_diff_iqr_ms'][1]:.1f}] | {row['hit_rate']:.2f} |")
    out = Path(a.out) if a.out else ROOT / "benchmarks" / "results" / f"stream_{a.max_views}views.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = "python benchmarks/bench_stream.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out.write_text(json.dumps({"command": cmd.strip(), "bag": a.bag, "model": a.model, "threads": a.threads, "device": str(pred.device),
                               "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
                               "load_avg_at_end": os.getloadavg()[0], "when": time.strftime("%Y-%m-%d %H:%M:%S"), "row": row}, indent=2))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
