"""Does the matching path's hypothesis range fit real data? (issue 11, MODEL_CARD "What it still gets wrong")

    python benchmarks/check_match_range.py [--model models/mvgd_default.pt] [--num 24] [--zncc-num 32]

Part 1, the shipped model on HoloLens held-out live-camera targets (3 views, as evaluate_model):
the SSN scale, the GT depth in SSN units against the hypothesis range, the share of pixels whose
cost-volume peak sits at the last hypothesis, and the AbsRel of the volume's own depth and of
the final output on those pixels and the rest.
Part 2, training-free: winner-take-all depth from the fixed ZNCC cost alone
(`cost_volume.fixed_zncc_cost`) at matching stride 4 / 2 / 1 and two hypothesis ranges, on
HoloLens held-out and procedural held-out targets: does a finer matching grid or a wider range help?
Prints tables; JSON: benchmarks/results/check_match_range.json. CPU, one thread, ~3 min.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "training"))
sys.path.insert(0, str(ROOT))

from evaluate_model import _first_existing, real_sets  # noqa: E402
from mvgd_core.cost_volume import depth_hypotheses, fixed_zncc_cost  # noqa: E402
from mvgd_core.data.deepvideomvs import list_images, read_deepvideomvs  # noqa: E402
from mvgd_core.data.sampler import DataConfig  # noqa: E402
from mvgd_core.data.splits import hololens_split  # noqa: E402
from mvgd_core.data.types import collate_samples  # noqa: E402
from mvgd_core.diffusion import prepare_inputs  # noqa: E402
from mvgd_core.inference import MVGDPredictor  # noqa: E402
from mvgd_core.model_eval import held_out_samples  # noqa: E402


def hololens_cond(hw, num: int) -> list:
    path = _first_existing("data/hololens_office|../shared/data/hololens_office")
    if path is None:
        raise SystemExit("no HoloLens folder (data/hololens_office or ../shared/data/hololens_office)")
    _, held = hololens_split(len(list_images(path)))
    return real_sets(read_deepvideomvs(path, indices=held), hw, num, 4_000_000, 3)["cond"]  # evaluate_model's seed


def _inputs(batch, min_scale: float):
    return prepare_inputs(batch.cond_rgb, batch.cond_K, batch.cond_T_wc.double(), batch.tgt_K, batch.tgt_T_wc.double(), min_scale=min_scale)


def model_part(pred: MVGDPredictor, samples) -> dict:
    """Where the shipped cost volume peaks, against GT depth in SSN units."""
    b = collate_samples(samples)
    inp = _inputs(b, pred.diffusion.cfg.ssn_min_scale)
    with torch.no_grad():
        match = pred.model.encode_context(inp.cond_rgb.float(), inp.cond_K.float(), inp.cond_T.float(), inp.tgt_K.float()).match
        x0, scale = pred.sample(b.cond_rgb, b.cond_K, b.cond_T_wc, b.tgt_K, b.tgt_T_wc, "depth", steps=1)
    D, (h, w) = match.prob.shape[1], match.prob.shape[-2:]
    s = inp.scale.view(-1, 1, 1).float()
    gt = F.interpolate(b.tgt_depth[:, None].float(), size=(h, w), mode="nearest")[:, 0] / s  # SSN units at 1/4
    valid = torch.isfinite(gt) & (gt > 0)
    edge = (match.prob.argmax(1) == D - 1) & valid
    vol_err = (match.depth[:, 0] - gt).abs() / gt
    final = pred.to_depth(x0, scale)
    gt_full = b.tgt_depth.float()
    v_full = torch.isfinite(gt_full) & (gt_full > 0)
    edge_full = F.interpolate(edge[:, None].float(), size=gt_full.shape[-2:], mode="nearest")[:, 0].bool() & v_full
    fin_err = (final - gt_full).abs() / gt_full
    q = lambda x, p: float(np.quantile(x.numpy(), p))  # noqa: E731
    return {"targets": len(samples), "ssn_scale_m": [float(x) for x in inp.scale.flatten()],
            "hypotheses_ssn": [float(match.hyp[0]), float(match.hyp[-1])],
            "gt_ssn_depth_q05_q50_q95": [q(gt[valid], p) for p in (0.05, 0.5, 0.95)],
            "share_beyond_range": float((gt[valid] > match.hyp[-1]).float().mean()),
            "share_peak_at_last": float(edge.sum() / valid.sum()),
            "gt_ssn_depth_at_peak_last_q05_q50_q95": [q(gt[edge], p) for p in (0.05, 0.5, 0.95)] if edge.any() else None,
            "volume_abs_rel_median": {"peak_at_last": float(vol_err[edge].median()) if edge.any() else None, "other": float(vol_err[valid & ~edge].median())},
            "output_abs_rel_median": {"peak_at_last": float(fin_err[edge_full].median()) if edge_full.any() else None, "other": float(fin_err[v_full & ~edge_full].median())}}


def zncc_part(sets: dict) -> list[dict]:
    """Winner-take-all depth of the fixed ZNCC cost, per set, range and stride (median over targets)."""
    rows = []
    for name, samples in sets.items():
        b = collate_samples(samples)
        inp = _inputs(b, 0.1)
        s, gt = inp.scale.view(-1, 1, 1).float(), b.tgt_depth.float()
        v = torch.isfinite(gt) & (gt > 0)
        for lo, hi, D in ((0.1, 30.0, 32), (0.3, 100.0, 32), (0.3, 100.0, 64)):
            hyp = depth_hypotheses(D, lo, hi)
            for stride in (4, 2, 1):
                with torch.no_grad():
                    cost = fixed_zncc_cost(inp.cond_rgb.float(), inp.cond_K.float(), inp.cond_T.float(), inp.tgt_K.float(), hyp, stride)
                d = F.interpolate(hyp[cost.argmax(1)][:, None], size=gt.shape[-2:], mode="nearest")[:, 0] * s
                ratio = torch.maximum(d / gt, gt / d)
                abs_rel = [float(((d[i] - gt[i]).abs() / gt[i])[v[i]].mean()) for i in range(len(samples))]
                d1 = [float((ratio[i][v[i]] < 1.25).float().mean()) for i in range(len(samples))]
                rows.append({"set": name, "range": [lo, hi], "hypotheses": D, "stride": stride,
                             "abs_rel_median": float(np.median(abs_rel)), "delta1_median": float(np.median(d1))})
                print(f"  {name:10s} [{lo:g}, {hi:g}] D={D:2d} stride {stride}: AbsRel {rows[-1]['abs_rel_median']:.3f}  δ1 {rows[-1]['delta1_median']:.3f}", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(ROOT / "models" / "mvgd_default.pt"))
    ap.add_argument("--num", type=int, default=24, help="HoloLens targets for part 1")
    ap.add_argument("--zncc-num", type=int, default=32, help="targets per set for part 2")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    pred = MVGDPredictor.from_checkpoint(a.model, device="cpu", steps=1)
    if pred.model.cfg.matching is False:
        raise SystemExit(f"{a.model} has no matching path")
    hw = pred.image_size
    print("Part 1: the shipped cost volume on HoloLens held-out live-camera targets", flush=True)
    part1 = model_part(pred, hololens_cond(hw, a.num))
    for k, v in part1.items():
        if k != "ssn_scale_m":
            print(f"  {k}: {v}")
    print("Part 2: fixed ZNCC cost alone (winner-take-all), median over targets", flush=True)
    sets = {"hololens": hololens_cond(hw, a.zncc_num),
            "procedural": held_out_samples(DataConfig(image_hw=hw), a.zncc_num, seed=2_000_000, num_views=3, mode="cond")}
    part2 = zncc_part(sets)
    out = ROOT / "benchmarks" / "results" / "check_match_range.json"
    out.write_text(json.dumps({"command": "python benchmarks/check_match_range.py " + " ".join(argv or sys.argv[1:]),
                               "model": a.model, "model_part": part1, "zncc_part": part2}, indent=2))
    print(f"JSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
