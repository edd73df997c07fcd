#!/usr/bin/env python3
"""Choose the node's keyframe policy on sequences the evaluation never uses (prints a table, writes JSON).

    python training/tune_keyframes.py --set hololens_train --variant shipped --variant optimal_baseline=0.3
    python training/tune_keyframes.py --set hololens_train --lookahead 0 1 2 4

Replays a frame sequence the way `mvgd-eval` feeds the node (every `--holdout-every`-th frame
withheld as a novel view, the rest sent in order), with the node's own keyframe policy
(`mvgd_ros.keyframes`, through `mvgd_ros.eval_scoring.node_conditioning`) for each variant of
`KeyframeConfig`, and the node's prediction (`MVGDPredictor.predict`: 1 DDIM step and the
photometric refinement, as the node's defaults). Scores the live-camera depth as the node's
evaluation does (`mvgd_ros.eval_scoring`: per frame AbsRel and δ<1.25 at the camera's
resolution, regime from the same conditioning views): medians over the observable frames and
over all frames. `--lookahead`: the node's `lookahead_frames` (fixed-lag depth,
mvgd_ros/lookahead.py), each variant at each value. `--novel`: score the withheld frames
instead (the node's target-pose renders: depth and RGB of view synthesis, PSNR; without the
node's fusion of keyframe depth). No DDS, so a variant takes seconds to a minute; the held-out bags stay for
the final check through the real node (`python -m mvgd_ros.demo`).

Sets (none is in a demo bag or an evaluation table):
- hololens_train: the HoloLens walk's TRAINING part (frames 0-278, mvgd_core.data.splits), every
  2nd frame at 270x180, as `make_bag` builds the held-out demo bag from the last quarter;
- procedural: rendered sequences like `procedural_demo` (48 frames at 128x96; `--trajectory`:
  forward, as the bag, or another camera motion) at seeds 6,000,101+ (the demo bag uses seed 7,
  the evaluation tables 2,000,000+, evaluate_sequences.py 2,100,000+);
- tum: TUM fr1/rpy (the shipped small copy; in the model's training data, and the demo bag's frames).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "training"))

import numpy as np  # noqa: E402

from evaluate_model import _first_existing  # noqa: E402
from mvgd_core.config import settings_from_text  # noqa: E402
from mvgd_core.data.trajectories import TRAJECTORY_KINDS  # noqa: E402
from mvgd_core.data.types import Frame  # noqa: E402
from mvgd_ros.keyframes import KeyframeConfig  # noqa: E402
from sequence_replay import Scorer, replay  # noqa: E402


def parse_variant(text: str) -> tuple[str, KeyframeConfig]:
    """'shipped' or 'key=value,...' over KeyframeConfig fields -> (name, config); ValueError if malformed."""
    return text, KeyframeConfig() if text == "shipped" else settings_from_text(KeyframeConfig, text)


def load_set(name: str, args) -> list[list[Frame]]:
    """The set's sequences (lists of frames in time order)."""
    if name == "hololens_train":
        from mvgd_core.data.deepvideomvs import list_images, read_deepvideomvs
        from mvgd_core.data.make_bag import HOLOLENS as BAG
        from mvgd_core.data.sampler import resize_frame
        from mvgd_core.data.splits import hololens_split

        path = _first_existing(args.hololens)
        if path is None:
            raise SystemExit(f"tune_keyframes: none of {args.hololens} exists")
        n = len(list_images(path))
        train, _ = hololens_split(n)
        train = [i for i in train if i < n]  # gpu_kit's copy holds the training frames only
        frames = read_deepvideomvs(path, indices=train, stride=BAG["stride"])
        return [[resize_frame(f, BAG["hw"], crop_to_aspect=False) for f in frames]]
    if name == "procedural":
        from mvgd_core.data.make_bag import PROCEDURAL as BAG
        from mvgd_core.data.render import ProceduralConfig, render_sequence

        return [render_sequence(6_000_101 + k, BAG["num_frames"], BAG["height"], BAG["width"], ProceduralConfig(p_indoor=1.0),
                                trajectory=args.trajectory) for k in range(args.sequences)]
    if name == "tum":
        from mvgd_core.data.tum import read_tum

        return [read_tum(ROOT / "data" / "tum_fr1_rpy_small")]
    raise SystemExit(f"tune_keyframes: unknown set {name!r}")


def run_variant(scorer: Scorer, seqs: list[list[Frame]], cfg: KeyframeConfig, args, lookahead: int = 0) -> dict:
    from mvgd_ros.lookahead import refine_sources

    sources = refine_sources(lookahead)  # as the node's renderer
    rows = []
    for s, frames in enumerate(seqs):
        for i, window in replay(frames, cfg, lookahead, args.holdout_every, args.warmup, args.novel):
            r = scorer.score(s, frames, i, window, "rgb") if args.novel else scorer.score(s, frames, i, window, "depth", sources)
            if r is not None:
                rows.append({**r, "views": len(window)})
    obs = [r for r in rows if r["regime"] == "observable"]

    def med(rs, k):
        return float(np.median([r[k] for r in rs])) if rs else float("nan")

    out = {"frames": len(rows), "observable": len(obs), "abs_rel_obs": med(obs, "abs_rel"), "delta1_obs": med(obs, "delta1"),
           "abs_rel_all": med(rows, "abs_rel"), "delta1_all": med(rows, "delta1"), "mean_views": float(np.mean([r["views"] for r in rows])) if rows else 0.0}
    if args.novel:
        out["psnr_all"] = med(rows, "psnr")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", required=True, choices=["hololens_train", "procedural", "tum"])
    ap.add_argument("--variant", action="append", default=[], help="'shipped' or key=value[,key=value] over KeyframeConfig (repeatable)")
    ap.add_argument("--model", default=str(ROOT / "models" / "mvgd_default.pt"))
    ap.add_argument("--sequences", type=int, default=3, help="procedural sequences")
    ap.add_argument("--trajectory", default="forward", choices=sorted(TRAJECTORY_KINDS), help="procedural camera motion")
    ap.add_argument("--hololens", default="data/hololens_office|../shared/data/hololens_office|gpu_kit/hololens_office_train",
                    help="first existing wins (as tune_refine.py; gpu_kit's copy holds the training frames only)")
    ap.add_argument("--holdout-every", type=int, default=4, help="as mvgd-eval: withhold every k-th frame (0 = none)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--lookahead", type=int, nargs="+", default=[0], help="the node's lookahead_frames (each variant at each)")
    ap.add_argument("--novel", action="store_true", help="score the withheld frames (target-pose renders) instead of the live camera")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="JSON (default runs/tune_keyframes/<set>.json)")
    a = ap.parse_args(argv)
    try:
        variants = dict(parse_variant(v) for v in (a.variant or ["shipped"]))
    except (TypeError, ValueError) as exc:
        ap.error(str(exc))
    import torch

    from mvgd_core.inference import MVGDPredictor

    torch.set_num_threads(a.threads)
    pred = MVGDPredictor.from_checkpoint(a.model, device="cpu", steps=1)
    seqs = load_set(a.set, a)
    scorer = Scorer(pred, tuple(pred.image_size))
    results = {}
    print(f"{'variant':44s} {'frames':>6s} {'obs':>4s} {'views':>5s}  AbsRel / δ1 observable   all frames   s")
    for (name, cfg), lag in ((v, k) for v in variants.items() for k in a.lookahead):
        t0 = time.time()
        name = name if a.lookahead == [0] else f"{name}, lookahead_frames={lag}"
        r = results[name] = {**run_variant(scorer, seqs, cfg, a, lag), "config": dataclasses.asdict(cfg), "lookahead_frames": lag}
        print(f"{name:44s} {r['frames']:6d} {r['observable']:4d} {r['mean_views']:5.2f}  {r['abs_rel_obs']:.3f} / {r['delta1_obs']:.3f}"
              f"        {r['abs_rel_all']:.3f} / {r['delta1_all']:.3f}  {time.time() - t0:4.0f}"
              + (f"  PSNR {r['psnr_all']:.2f} dB" if a.novel else ""), flush=True)
    out = Path(a.out or ROOT / "runs" / "tune_keyframes" / f"{a.set}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"set": a.set, "model": a.model, "command": " ".join(sys.argv), "variants": results}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
