"""Does `Prediction.observable_share` (observability measured on the predicted depth) agree with the
evaluation's ground-truth observability? (MODEL_CARD "Depth that cannot come from geometry")

    python benchmarks/check_observable_share.py [--model models/mvgd_default.pt] [--views 6]

The HoloLens walk's held-out quarter, every 3rd frame; each frame is the live camera with the
previous views-1 frames as its conditioning set (a sliding window, as the node keeps one). Per
frame: the share `MVGDPredictor.predict` reports and the share `mvgd_core.observability` gives
with the ground-truth depth; then their correlation, mean absolute difference and regime
agreement, and the share with a single view. Prints a table; JSON:
benchmarks/results/check_observable_share.json. CPU, ~1 min.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mvgd_core.data.deepvideomvs import read_deepvideomvs  # noqa: E402
from mvgd_core.data.splits import hololens_split  # noqa: E402
from mvgd_core.inference import MVGDPredictor  # noqa: E402
from mvgd_core.observability import observability, regime  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(ROOT / "models" / "mvgd_default.pt"))
    ap.add_argument("--hololens", default=str(ROOT.parent / "shared" / "data" / "hololens_office"))
    ap.add_argument("--views", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "check_observable_share.json"))
    a = ap.parse_args(argv)
    if not Path(a.hololens).is_dir():
        print(f"check_observable_share: {a.hololens} not found", file=sys.stderr)
        return 2
    torch.set_num_threads(a.threads)
    pred = MVGDPredictor.from_checkpoint(a.model, device="cpu", steps=1)
    _, held = hololens_split()
    frames = read_deepvideomvs(a.hololens, indices=held[::3])
    rows = []
    for i in range(a.views, len(frames)):
        cond, f = frames[i - a.views + 1 : i + 1], frames[i]  # the live frame last, as the node's set
        got = pred.predict(cond, f.K, f.T_wc, f.rgb.shape[:2], task="depth").observable_share
        gt = observability(f.depth, f.K, f.T_wc, np.stack([c.K for c in cond]), np.stack([c.T_wc for c in cond]), cond_hw=f.rgb.shape[:2]).frac
        rows.append((got, gt))
    single = pred.predict(frames[0:1], frames[0].K, frames[0].T_wc, frames[0].rgb.shape[:2], task="depth").observable_share
    r = np.asarray(rows)
    res = {"command": "python benchmarks/check_observable_share.py " + " ".join(argv or sys.argv[1:]), "model": a.model, "views": a.views,
           "frames": len(r), "correlation": float(np.corrcoef(r[:, 0], r[:, 1])[0, 1]), "mean_abs_diff": float(np.abs(r[:, 0] - r[:, 1]).mean()),
           "regime_agreement": float(np.mean([regime(x) == regime(y) for x, y in r])), "single_view_share": float(single),
           "per_frame": [{"predicted": float(x), "ground_truth": float(y)} for x, y in r]}
    print("| frames | correlation | mean abs difference | same regime | one view |\n|---|---|---|---|---|")
    print(f"| {res['frames']} | {res['correlation']:.3f} | {res['mean_abs_diff']:.3f} | {100 * res['regime_agreement']:.0f} % | {single:.3f} |")
    Path(a.out).write_text(json.dumps(res, indent=2))
    print(f"JSON: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
