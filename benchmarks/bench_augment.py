"""Cost of training augmentation: samples/s with augmentation off vs on, one thread.

    python benchmarks/bench_augment.py [--quick] [--out benchmarks/results/augment_cost.json]

Rows: ProceduralDataset (rendered per item) and SequenceDataset (TUM fr1/rpy small, read and
resized once) at the matching config's size (96x128, 3 conditioning views + target), with
mvgd_core.data.augment settings: off, colour only, crop only, view order only, and `all` =
training/configs/matching.yaml's `data.augment`. Crops make the procedural renderer draw at
pre_crop_hw (image_hw / crop_scale[0]), which is where most of their cost goes. Same items
(indices 0..n-1) for every row; CPU ms/sample is process CPU time, the robust figure on a
shared machine (samples/s is wall clock and moves with the load; the 1-minute load average
is recorded).
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

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mvgd_core.config import from_dict  # noqa: E402
from mvgd_core.data.augment import AugmentConfig, pre_crop_hw  # noqa: E402
from mvgd_core.data.sampler import DataConfig, ProceduralDataset, SequenceDataset, load_source_frames, SourceConfig  # noqa: E402


def _rate(ds, n: int, views: int) -> tuple[float, float]:
    ds[(n + 1, views)]  # warm-up (imports, caches)
    w, c = time.perf_counter(), time.process_time()
    for i in range(n):
        ds[(i, views)]
    return n / (time.perf_counter() - w), 1000 * (time.process_time() - c) / n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer items (noisier)")
    ap.add_argument("--views", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "augment_cost.json"))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    data = from_dict(DataConfig, yaml.safe_load((ROOT / "training" / "configs" / "matching.yaml").read_text())["data"], where="data")
    hw, samp, full = data.image_hw, data.sampling, data.augment
    if not full.enabled:
        raise SystemExit("matching.yaml has no data.augment section turned on")
    variants = {
        "off": AugmentConfig(),
        "colour": dataclasses.replace(full, crop_scale=(1.0, 1.0), permute_views=False),
        "crop": AugmentConfig(crop_scale=full.crop_scale),
        "view order": AugmentConfig(permute_views=True),
        "all (matching.yaml)": full,
    }
    tum = load_source_frames(SourceConfig(kind="tum", path=str(ROOT / "data" / "tum_fr1_rpy_small"), tum_camera="fr1"))
    n_proc, n_seq = (6, 40) if a.quick else (24, 200)
    rows = []
    for name, aug in variants.items():
        proc = ProceduralDataset(hw, samp, data.procedural, length=10**6, seed=0, frames_per_scene=data.frames_per_scene, augment=aug)
        seq = SequenceDataset(tum, hw, samp, length=10**6, seed=0, augment=aug)
        for kind, ds, n in (("procedural", proc, n_proc), ("tum", seq, n_seq)):
            rate, cpu = _rate(ds, n, a.views)
            rows.append({"source": kind, "augment": name, "pre_crop_hw": list(pre_crop_hw(hw, aug)), "items": n,
                         "samples_per_s": round(rate, 2), "cpu_ms_per_sample": round(cpu, 2)})
    base = {r["source"]: r["cpu_ms_per_sample"] for r in rows if r["augment"] == "off"}
    print(f"image_hw {list(hw)}, {a.views} conditioning views + target, 1 thread, load average {os.getloadavg()[0]:.2f}")
    print("| source | augment | pre-crop H x W | samples/s | CPU ms/sample | CPU vs off |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        r["cpu_vs_off"] = round(r["cpu_ms_per_sample"] / base[r["source"]], 3)
        print(f"| {r['source']} | {r['augment']} | {r['pre_crop_hw'][0]} x {r['pre_crop_hw'][1]} | {r['samples_per_s']:.2f} | "
              f"{r['cpu_ms_per_sample']:.1f} | {r['cpu_vs_off']:.2f}x |")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"image_hw": list(hw), "views": a.views, "threads": 1, "load_average_1min": os.getloadavg()[0],
                               "machine": platform.processor() or platform.machine(), "augment_all": dataclasses.asdict(full),
                               "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
