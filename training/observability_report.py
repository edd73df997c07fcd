#!/usr/bin/env python3
"""How observable are the depth targets of a training data mixture, before and after the control?

    python training/observability_report.py                                    # training/configs/default.yaml
    python training/observability_report.py --config training/configs/matching.yaml --num 512

Draws --num training items exactly as the trainer does (mvgd_core.train_data.build_train_dataset,
ViewCountBatchSampler, batches of --batch), reads each sample's stored observability
(MultiViewSample.observability: share of valid target pixels that move >= 1 px at sample
resolution when depth changes by 25 %, and the median such displacement) and runs the
trainer's task choice (mvgd_core.train_data.choose_tasks) twice on the same batches with the same
generator: "before" without the observability control, "after" with it
(data.sampling.min_observable_frac / monocular_share from the config, or the --min-observable-frac
/ --monocular-share values when the config leaves the control off). Prints Markdown tables
(share per regime, quantiles of observable fraction and disparity; all samples, and the
depth-task samples before / after; per source for mixtures) and writes
benchmarks/results/observability_<config>.json. One thread; a few minutes at most.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from mvgd_core.config import from_dict  # noqa: E402
from mvgd_core.data.sampler import DataConfig, ViewCountBatchSampler  # noqa: E402
from mvgd_core.data.types import collate_samples  # noqa: E402
from mvgd_core.diffusion import TASK_DEPTH  # noqa: E402
from mvgd_core.observability import REGIMES, regime  # noqa: E402
from mvgd_core.train_data import build_train_dataset, choose_tasks  # noqa: E402

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def summarize(obs: np.ndarray) -> dict:
    """obs (n, 2) [frac, median_disparity_px] -> count, share per regime, quantiles of both."""
    n = len(obs)
    if n == 0:
        return {"n": 0}
    regs = [regime(float(f)) for f in obs[:, 0]]
    return {
        "n": n,
        "regime_share": {r: regs.count(r) / n for r in REGIMES},
        "frac_quantiles": dict(zip(map(str, QUANTILES), np.quantile(obs[:, 0], QUANTILES).round(4).tolist())),
        "disparity_px_quantiles": dict(zip(map(str, QUANTILES), np.quantile(obs[:, 1], QUANTILES).round(4).tolist())),
        "frac_below_1px_mean": float(1.0 - obs[:, 0].mean()),
    }


def table(rows: list[tuple[str, dict]]) -> str:
    head = "| set | n | observable | weak | none | obs. frac p10 / p50 / p90 | disparity px p10 / p50 / p90 |"
    lines = [head, "|" + "---|" * 7]
    for name, s in rows:
        if not s.get("n"):
            lines.append(f"| {name} | 0 | | | | | |")
            continue
        r, f, d = s["regime_share"], s["frac_quantiles"], s["disparity_px_quantiles"]
        lines.append(f"| {name} | {s['n']} | {r['observable']:.1%} | {r['weak']:.1%} | {r['none']:.1%} | "
                     f"{f['0.1']:.2f} / {f['0.5']:.2f} / {f['0.9']:.2f} | {d['0.1']:.2f} / {d['0.5']:.2f} / {d['0.9']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="training/configs/default.yaml")
    ap.add_argument("--num", type=int, default=1024, help="training items drawn (rounded down to whole batches)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--min-observable-frac", type=float, default=0.5, help="'after' control when the config has none")
    ap.add_argument("--monocular-share", type=float, default=0.1, help="'after' monocular share when the config has no control")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/observability_<config>.json)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    os.chdir(ROOT)  # config paths are relative to the repository root, as for the trainer
    raw = yaml.safe_load(Path(a.config).read_text())
    data = from_dict(DataConfig, raw.get("data"), where="data")
    depth_ratio = float(raw.get("depth_ratio", 0.5))
    scene_reuse = int(raw.get("scene_reuse", 1))
    rgb_on_cond = bool(raw.get("rgb_on_cond_targets", False))
    s = data.sampling
    after = s if s.min_observable_frac > 0 else dataclasses.replace(s, min_observable_frac=a.min_observable_frac, monocular_share=a.monocular_share)
    before = dataclasses.replace(s, min_observable_frac=0.0, monocular_share=0.0)

    t0 = time.time()
    ds = build_train_dataset(data, scene_reuse)
    bs = ViewCountBatchSampler(max(a.num, a.batch), a.batch, s.min_views, s.max_views, seed=a.seed, shuffle=scene_reuse <= 1)
    obs, cond, src, task_b, task_a = [], [], [], [], []
    gb, ga = torch.Generator().manual_seed(a.seed), torch.Generator().manual_seed(a.seed)
    p = np.array([x.weight for x in data.sources], dtype=np.float64)
    p /= p.sum()
    for items in bs:
        batch = collate_samples([ds[it] for it in items])
        obs.append(batch.observability.numpy())
        diff = (batch.cond_T_wc - batch.tgt_T_wc[:, None]).abs().flatten(2).amax(-1)
        cond.append((diff.amin(-1) <= 1e-5).numpy())
        # the source each item came from (MixtureDataset's own rule)
        src += [0 if len(p) == 1 else int(np.random.default_rng([data.seed, it[0], 1]).choice(len(p), p=p)) for it in items]
        task_b.append(choose_tasks(batch, depth_ratio, rgb_on_cond, gb, before).numpy())
        task_a.append(choose_tasks(batch, depth_ratio, rgb_on_cond, ga, after).numpy())
    obs, cond, src = np.concatenate(obs), np.concatenate(cond), np.array(src)
    depth_b, depth_a = np.concatenate(task_b) == TASK_DEPTH, np.concatenate(task_a) == TASK_DEPTH
    secs = time.time() - t0

    res = {
        "command": "python " + " ".join(shlex.quote(x) for x in [f"training/{Path(__file__).name}", *(argv if argv is not None else sys.argv[1:])]),
        "config": a.config, "depth_ratio": depth_ratio, "seconds": round(secs, 1),
        "control_after": {"min_observable_frac": after.min_observable_frac, "monocular_share": after.monocular_share},
        "all_samples": summarize(obs),
        "target_is_conditioning_share": float(cond.mean()),
        "depth_targets_before": summarize(obs[depth_b]),
        "depth_targets_after": summarize(obs[depth_a]),
        "depth_task_share_before": float(depth_b.mean()), "depth_task_share_after": float(depth_a.mean()),
        "per_source": {f"{i}:{x.kind}:{Path(x.path).name or '-'}": summarize(obs[src == i]) for i, x in enumerate(data.sources)},
    }
    c = res["control_after"]
    print(f"# Observability of {a.config} ({len(obs)} training items, {secs:.0f} s)\n\n    {res['command']}\n")
    print("Regimes by observable share of valid target pixels: observable >= 50 %, weak 10-50 %, none < 10 %.")
    print(f"'after' = min_observable_frac {c['min_observable_frac']}, monocular_share {c['monocular_share']}; "
          f"depth_ratio {depth_ratio}; {cond.mean():.0%} of targets are a conditioning view.\n")
    rows = [("all samples", res["all_samples"]),
            (f"depth targets, before ({depth_b.mean():.0%} of samples)", res["depth_targets_before"]),
            (f"depth targets, after ({depth_a.mean():.0%} of samples)", res["depth_targets_after"])]
    if len(data.sources) > 1:
        rows += [(f"source {k}", v) for k, v in res["per_source"].items()]
    print(table(rows))
    out = Path(a.out or f"benchmarks/results/observability_{Path(a.config).stem}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
