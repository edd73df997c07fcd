"""Where the depth error lives: pixels another view can match against, and the rest (issue 11).

    python benchmarks/check_error_by_pixel.py [--model models/mvgd_default.pt] [--num 96] [--hololens-num 64] [--views 3]
                                              [--targets cond|novel] [--refine-net] [--mvs] [--figure PNG] [--out JSON]

The held-out tables (training/evaluate_model.py) score a target over all its valid pixels. A pixel's
depth can come from geometry only where some *other* conditioning view sees the same surface point
with parallax; elsewhere (out of every other view, hidden behind something nearer there, or no
parallax) only a prior can give it. This script splits each target's pixels that way, with the
ground truth of the views (an oracle test the model never sees):

- *matchable*: in some other view the point at its true depth lands inside the image, in front of
  the camera, is not hidden there (the view's own true depth at that pixel is within 5 % of the
  point's), and moves >= 1 px at 96x128 when its depth changes by 25 %
  (`mvgd_core.observability.matchable_map`).
- *prior only*: every other valid pixel.
The matchable pixels are split again by texture: a photometric match needs some (the refinement's
test: grey-level std over its 7x7 window >= RefineConfig.min_texture); on a flat one only the
neighbours or a prior can say where the surface is.

For the same targets as evaluate_model (procedural seed 2,000,000, the HoloLens held-out quarter at
seed 4,000,000; live-camera targets; observable regime, the headline), it prints the median over
targets of: the matchable share of pixels, AbsRel on each class, and the target's AbsRel were either
class exact (which class the remaining error is in), and its AbsRel with the depth rescaled by
the target's true median ratio (what one right scale per target would leave: shape error). Rows: MVGD (what the node publishes) and the
network alone. `--targets novel`: the tables' novel-view targets (seeds 2,000,001 / 4,000,001), their
depth with the views' own live depth fused in as the node does; there a pixel counts as matchable
when some view sees it unhidden at all (no parallax test: that view's own depth can give it).
At live cameras (stop 37) a third table: the pixels whose truth lies outside the refinement's band
around the network's depth, which no later stage reads, their classes, and whether the network's
own full-range matching volume holds their truth (`band_scores`); `--mvs` adds classical MVS there.
JSON: benchmarks/results/check_error_by_pixel.json. CPU, ~30 s with 2 threads (novel: ~1 min; --mvs: +0.5 s per target).
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "training"))
sys.path.insert(0, str(ROOT))

from evaluate_model import _first_existing, real_sets  # noqa: E402
from mvgd_core.checkpoint import load_checkpoint  # noqa: E402
from mvgd_core.config import from_dict  # noqa: E402
from mvgd_core.data.sampler import DataConfig  # noqa: E402
from mvgd_core.data.types import collate_samples  # noqa: E402
from mvgd_core.inference import MVGDPredictor, views_from_tensor  # noqa: E402
from mvgd_core.model_eval import held_out_samples  # noqa: E402
from mvgd_core.mvs import luma  # noqa: E402
from mvgd_core.observability import MIN_DISPARITY_PX, matchable_map, sample_observability  # noqa: E402
from mvgd_core.refine import textured as refine_textured  # noqa: E402


def split_scores(depth: torch.Tensor, gt: torch.Tensor, match: torch.Tensor, textured: torch.Tensor, replaced: torch.Tensor) -> dict:
    """One target's AbsRel split by pixel class (module doc); NaN where a class is empty. The
    "if ... exact" entries: the target's AbsRel over all its pixels with that class's error removed.
    replaced: where the refinement's photometric match replaced the network's depth."""
    valid = torch.isfinite(gt) & (gt > 0)
    err = torch.where(valid, (depth.float() - gt).abs() / gt.clamp_min(1e-9), torch.zeros_like(gt))
    n, m, o = int(valid.sum()), valid & match, valid & ~match
    mt, mf = m & textured, m & ~textured
    mean = lambda k: float(err[k].mean()) if k.any() else float("nan")  # noqa: E731
    rest = lambda k: float(err[valid & ~k].sum()) / n  # noqa: E731
    d = depth.float()[valid]
    ok = d > 0
    scale = float((gt[valid][ok] / d[ok]).median()) if ok.any() else float("nan")  # the oracle's one scale for the target
    return {"matchable_share": int(m.sum()) / n, "matchable_textured_share": int(mt.sum()) / n,
            "replaced_share_of_matchable_textured": float(replaced[mt].float().mean()) if mt.any() else float("nan"),
            "abs_rel_matchable_textured_replaced": mean(mt & replaced), "abs_rel_matchable_textured_kept": mean(mt & ~replaced),
            "abs_rel": mean(valid), "abs_rel_matchable_textured": mean(mt), "abs_rel_matchable_flat": mean(mf), "abs_rel_prior_only": mean(o),
            "abs_rel_if_matchable_textured_exact": rest(mt), "abs_rel_if_matchable_exact": rest(m), "abs_rel_if_prior_only_exact": rest(o),
            "abs_rel_oracle_scale": float(((d * scale - gt[valid]).abs() / gt[valid]).mean()) if ok.any() else float("nan")}


def two_peaks(prob: torch.Tensor, hyp: torch.Tensor) -> torch.Tensor:
    """(2, H, W) depths of the two most probable local maxima of prob (D, H, W) over the hypotheses
    hyp (D,) (the highest twice where there is one peak; the global maximum always is one)."""
    pad = torch.nn.functional.pad(prob[None, None], (0, 0, 0, 0, 1, 1), value=-1.0)[0, 0]
    left, right = pad[:-2], pad[2:]
    peak = (prob >= left) & (prob >= right) & ((prob > left) | (prob > right))  # a flat run (e.g. zeros) is no peak
    idx = torch.where(peak, prob, torch.full_like(prob, -1.0)).topk(2, dim=0).indices
    idx[1] = torch.where(peak.gather(0, idx[1:]).squeeze(0), idx[1], idx[0])
    return hyp[idx]


def out_of_band(net: torch.Tensor, gt: torch.Tensor, span: float) -> torch.Tensor:
    """(H, W) bool: valid GT pixels whose truth lies outside the refinement's band [net / span, net * span]."""
    return torch.isfinite(gt) & (gt > 0) & ((gt > net * span) | (gt < net / span))


def band_scores(net: torch.Tensor, depth: torch.Tensor, gt: torch.Tensor, matchable: torch.Tensor, textured: torch.Tensor,
                prob: torch.Tensor, hyp: torch.Tensor, span: float) -> dict:
    """Pixels whose truth lies outside the refinement's band [net / span, net * span] (neither it nor
    the learned stage reads depths there): their share, how many could be matched (the oracle's
    classes above), the published AbsRel on them, and whether the network's own matching volume
    (prob (D, H, W) over hyp (D,) depths, full range) holds their truth: the AbsRel of the better
    of its two highest peaks (an oracle pick) and its probability mass within 25 % of the truth,
    out of the band and inside it. NaN where a class is empty."""
    valid = torch.isfinite(gt) & (gt > 0)
    out = out_of_band(net, gt, span)
    rel = lambda d, k: float(((d.float() - gt).abs() / gt.clamp_min(1e-9))[k].mean()) if k.any() else float("nan")  # noqa: E731
    med = lambda x, k: float(x[k].median()) if k.any() else float("nan")  # noqa: E731
    peaks = two_peaks(prob.float(), hyp)
    best = torch.where((peaks[0] - gt).abs() <= (peaks[1] - gt).abs(), peaks[0], peaks[1])
    near = (torch.log(hyp)[:, None, None] - torch.log(gt.clamp_min(1e-9))).abs() < math.log(1.25)
    mass = (prob.float() * near).sum(0)
    n_out, n = int(out.sum()), max(int(valid.sum()), 1)
    err_in_band = float(((depth.float() - gt).abs() / gt.clamp_min(1e-9))[valid & ~out].sum())
    return {"out_of_band_share": n_out / n,
            "out_of_band_matchable_share": int((out & matchable).sum()) / n_out if n_out else float("nan"),
            "out_of_band_matchable_textured_share": int((out & matchable & textured).sum()) / n_out if n_out else float("nan"),
            "abs_rel_out_of_band": rel(depth, out), "abs_rel_out_of_band_network": rel(net, out),
            "abs_rel_if_out_of_band_exact": err_in_band / n,
            "abs_rel_out_of_band_volume_best_peak": rel(best, out),
            "volume_mass_near_truth_out_of_band": med(mass, out), "volume_mass_near_truth_in_band": med(mass, valid & ~out)}


def mvs_out_of_band(sample, net: torch.Tensor, depth: torch.Tensor, span: float) -> dict:
    """Classical full-range MVS (`mvgd_core.mvs`, the tables' `mvs` row) on the pixels outside the
    band: the share where it keeps a depth, its AbsRel there and the published AbsRel on the same
    pixels (can a photometric matcher over the whole range reach them?). ~0.5 s per target."""
    from mvgd_core.cost_volume import relative_reference
    from mvgd_core.mvs import mvs_at_view

    s = sample
    ref = int(relative_reference(s.cond_K[None], s.cond_T_wc[None], s.tgt_K[None], s.tgt_T_wc[None])[2][0])
    r = mvs_at_view(s.cond_rgb, s.cond_K, s.cond_T_wc, ref)
    gt = s.tgt_depth
    out = out_of_band(net, gt, span)
    kept = out & r.valid
    rel = lambda d: float(((d.float() - gt).abs() / gt.clamp_min(1e-9))[kept].mean()) if kept.any() else float("nan")  # noqa: E731
    return {"out_of_band_mvs_kept_share": int(kept.sum()) / int(out.sum()) if out.any() else float("nan"),
            "abs_rel_out_of_band_mvs_kept": rel(r.depth), "abs_rel_out_of_band_published_where_mvs_kept": rel(depth)}


def volume_in_pixels(match, scale: torch.Tensor, hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's matching volume at the model's resolution: (prob (B, D, H, W) float16,
    hypothesis depths (B, D) in pose units)."""
    prob = torch.nn.functional.interpolate(match.prob.float().cpu(), size=hw, mode="bilinear", align_corners=False)
    return prob.half(), match.hyp.float().cpu()[None] * scale[:, None]


def predict(pred: MVGDPredictor, samples: list, novel: bool, volumes: bool, batch_size: int = 8):
    """(network depth (S, H, W), published depth (S, H, W), replaced (S, H, W) bool, volume) at the
    model's resolution, 1 DDIM step, as evaluate_model predicts them (`model_eval._predict`): the
    photometric refinement, and at novel targets the views' own live depth fused in. volume: a
    (prob, hypotheses) pair per target (`volume_in_pixels`) with `volumes`, else (or for a model
    without matching) None."""
    nets, outs, reps, vols = [], [], [], []
    for i in range(0, len(samples), batch_size):
        b = collate_samples(samples[i : i + batch_size])
        with torch.no_grad():
            views = views_from_tensor(pred.view_depths(b, 1, i), b.cond_K) if novel else None
            x0, scale, match = pred.sample(b.cond_rgb, b.cond_K, b.cond_T_wc, b.tgt_K, b.tgt_T_wc, "depth", 1, i, return_match=True)
            net = pred.to_depth(x0, scale)
            out, rep = pred.refined(net, b.cond_rgb, b.cond_K, b.cond_T_wc, b.tgt_K, b.tgt_T_wc, match=match)
            if novel:
                out = pred.fused(out, b.cond_K, b.cond_T_wc, b.tgt_K, b.tgt_T_wc, views)[0]
        nets.append(net)
        outs.append(out)
        reps.append(torch.zeros_like(out, dtype=torch.bool) if rep is None else rep)
        with_volume = volumes and match is not None
        vols += list(zip(*volume_in_pixels(match, scale, tuple(net.shape[-2:])))) if with_volume else [None] * len(net)
    return torch.cat(nets), torch.cat(outs), torch.cat(reps), vols


CLASS_COLOURS = np.array([[0, 0, 0], [60, 180, 75], [255, 225, 25], [230, 25, 75]], np.uint8)  # invalid, matchable textured, flat, prior only


def class_image(valid: torch.Tensor, match: torch.Tensor, textured: torch.Tensor, replaced: torch.Tensor) -> np.ndarray:
    """(H, W, 3) uint8: green matchable textured, yellow matchable flat, red prior only, black no
    ground truth; the pixels whose depth the refinement replaced drawn darker."""
    cls = torch.where(~valid, 0, torch.where(~match, 3, torch.where(textured, 1, 2)))
    img = CLASS_COLOURS[cls.numpy()].astype(np.float32)
    img[replaced.numpy()] *= 0.55
    return img.astype(np.uint8)


def evaluate_set(pred: MVGDPredictor, samples: list, novel: bool, picks: list | None = None, with_mvs: bool = False) -> dict:
    """Median split scores over the observable targets; `picks` (if a list) gets (sample, depth,
    classes image) of each of them, in order, for the figure; with_mvs: classical MVS on the
    pixels outside the band too (`mvs_out_of_band`)."""
    net, depth, replaced, volume = predict(pred, samples, novel, volumes=not novel and pred.refine.enabled)  # the band: live cameras
    rows = {"mvgd": [], "network": []}
    with_band = volume[0] is not None
    for j, s in enumerate(samples):
        if sample_observability(s).regime != "observable":
            continue
        match = matchable_map(s.tgt_depth, s.tgt_K, s.tgt_T_wc, s.cond_depth, s.cond_K, s.cond_T_wc, tuple(s.tgt_depth.shape),
                              min_parallax_px=0.0 if novel else MIN_DISPARITY_PX)
        textured = refine_textured(luma(s.tgt_rgb))
        band = band_scores(net[j], depth[j], s.tgt_depth, match, textured, *volume[j], pred.refine.span) if with_band else {}
        if with_band and with_mvs:
            band |= mvs_out_of_band(s, net[j], depth[j], pred.refine.span)
        rows["mvgd"].append(split_scores(depth[j], s.tgt_depth, match, textured, replaced[j]) | band)
        rows["network"].append(split_scores(net[j], s.tgt_depth, match, textured, replaced[j]))
        if picks is not None:
            picks.append((s, depth[j], class_image(s.tgt_depth > 0, match, textured, replaced[j])))
    return {name: {"targets": len(r), **{k: _median([x[k] for x in r]) for k in r[0]}} for name, r in rows.items() if r}


def _median(values: list[float]) -> float:
    """Median over the targets where the value exists (a class can be empty); NaN if none."""
    v = [x for x in values if np.isfinite(x)]
    return float(np.median(v)) if v else float("nan")


def save_figure(path, picks: list, rows: int = 4) -> Path:
    """The first `rows` observable targets of a set (not chosen by result): image, GT depth, MVGD's
    depth (one colour scale), its error, and the pixel classes."""
    from mvgd_core import viz
    from mvgd_core.metrics import depth_scores

    grid, labels = [], []
    for s, d, classes in picks[:rows]:
        lo, hi = viz.depth_range(s.tgt_depth, d)
        grid.append([s.tgt_rgb, viz.colorize_depth(s.tgt_depth, lo, hi), viz.colorize_depth(d, lo, hi),
                     viz.colorize_error(d, s.tgt_depth), classes])
        labels.append(["image", f"GT {lo:.1f}-{hi:.1f} m", f"MVGD AbsRel {depth_scores(d, s.tgt_depth)['abs_rel']:.3f}",
                       "error (0-50 %)", "matchable textured/flat, prior only"])
    return viz.save_png(path, viz.make_grid(grid, labels, cell_hw=viz.legible_cell(picks[0][0].tgt_depth.shape[-2:])))


def print_band(res: dict) -> None:
    """The out-of-band table (live-camera targets of a matching model with the refinement on)."""
    rows = [(k, v["mvgd"]) for k, v in res.items() if v and "out_of_band_share" in v["mvgd"]]
    if not rows:
        return
    print("\nPixels whose truth is outside the refinement's band (/span to x span around the network's depth), medians over targets")
    print("| set | share of pixels | of them matchable (textured) | AbsRel there: network | published | "
          "volume's better of two peaks (oracle) | volume mass within 25 % of truth: out of band | in band | all, were these exact |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, m in rows:
        print(f"| {name} | {m['out_of_band_share']:.2f} | {m['out_of_band_matchable_share']:.2f} "
              f"({m['out_of_band_matchable_textured_share']:.2f}) | {m['abs_rel_out_of_band_network']:.3f} | {m['abs_rel_out_of_band']:.3f} | "
              f"{m['abs_rel_out_of_band_volume_best_peak']:.3f} | "
              f"{m['volume_mass_near_truth_out_of_band']:.2f} | {m['volume_mass_near_truth_in_band']:.2f} | "
              f"{m['abs_rel_if_out_of_band_exact']:.3f} |")
    if "out_of_band_mvs_kept_share" in rows[0][1]:
        print("\nClassical MVS (full range, consistency-checked) on the same pixels, where it keeps a depth")
        print("| set | kept share | AbsRel there: mvs | published |")
        print("|---|---|---|---|")
        for name, m in rows:
            print(f"| {name} | {m['out_of_band_mvs_kept_share']:.2f} | {m['abs_rel_out_of_band_mvs_kept']:.3f} | "
                  f"{m['abs_rel_out_of_band_published_where_mvs_kept']:.3f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(ROOT / "models" / "mvgd_default.pt"))
    ap.add_argument("--num", type=int, default=96, help="procedural live-camera targets (seed 2,000,000, as evaluate_model)")
    ap.add_argument("--hololens-num", type=int, default=64)
    ap.add_argument("--hololens", default="data/hololens_office|../shared/data/hololens_office")
    ap.add_argument("--views", type=int, default=3)
    ap.add_argument("--targets", choices=("cond", "novel"), default="cond",
                    help="live-camera targets (the default) or novel views (seeds 2,000,001 / 4,000,001, as evaluate_model)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "check_error_by_pixel.json"))
    ap.add_argument("--refine-net", action=argparse.BooleanOptionalAction, default=False,
                    help="the published depth through the checkpoint's learned second stage (the node's default since stop 31; off "
                         "here so that the stop-30 split of the refinement's own errors reruns as it was)")
    ap.add_argument("--mvs", action="store_true",
                    help="also run classical MVS on the pixels outside the refinement's band (live targets; ~0.5 s per target)")
    ap.add_argument("--figure", default="", help="also draw the first 4 observable procedural targets with their pixel classes (PNG/JPEG)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    pred = MVGDPredictor.from_checkpoint(a.model, device="cpu", steps=1)
    pred.use_refine_net = a.refine_net
    hw = pred.image_size
    train_data = (load_checkpoint(a.model)["config"].get("train") or {}).get("data") or {}
    data = from_dict(DataConfig, {**train_data, "image_hw": list(hw)}, where="checkpoint.config.train.data")
    novel = a.targets == "novel"
    sets = {"procedural": held_out_samples(data, a.num, 2_000_000 + novel, a.views, a.targets)}
    path = _first_existing(a.hololens)
    if path is not None:
        from mvgd_core.data.deepvideomvs import list_images, read_deepvideomvs
        from mvgd_core.data.splits import hololens_split

        _, held = hololens_split(len(list_images(path)))
        sets["hololens"] = real_sets(read_deepvideomvs(path, indices=held), hw, a.hololens_num, 4_000_000, a.views)[a.targets]
    res = {}
    print(f"{a.views} views, {'novel-view' if novel else 'live-camera'} targets, observable regime; medians over targets"
          + ("; 'matchable' = seen by a view, unhidden, without the parallax test" if novel else ""))
    print("| set | row | targets | matchable share (textured) | AbsRel all | matchable textured | matchable flat | prior only | "
          "all, were these exact: matchable textured | matchable | prior only | all, oracle scale |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, samples in sets.items():
        picks = [] if (a.figure and name == "procedural") else None
        res[name] = evaluate_set(pred, samples, novel, picks, with_mvs=a.mvs)
        if picks:
            print(f"figure: {save_figure(a.figure, picks)}", flush=True)
        if not res[name]:
            print(f"| {name} | no target in the observable regime (raise the target count) |")
        for row, r in res[name].items():
            print(f"| {name} | {row} | {r['targets']} | {r['matchable_share']:.2f} ({r['matchable_textured_share']:.2f}) | {r['abs_rel']:.3f} | "
                  f"{r['abs_rel_matchable_textured']:.3f} | {r['abs_rel_matchable_flat']:.3f} | {r['abs_rel_prior_only']:.3f} | "
                  f"{r['abs_rel_if_matchable_textured_exact']:.3f} | {r['abs_rel_if_matchable_exact']:.3f} | {r['abs_rel_if_prior_only_exact']:.3f} | "
                  f"{r['abs_rel_oracle_scale']:.3f} |",
                  flush=True)
    print("\nMatchable textured pixels: where the refinement replaced the network's depth, medians over targets")
    print("| set | replaced share | AbsRel replaced (published) | AbsRel kept: network | published |")
    print("|---|---|---|---|---|")
    for name, r in ((k, v) for k, v in res.items() if v):
        m, n = r["mvgd"], r["network"]
        print(f"| {name} | {m['replaced_share_of_matchable_textured']:.2f} | {m['abs_rel_matchable_textured_replaced']:.3f} | "
              f"{n['abs_rel_matchable_textured_kept']:.3f} | {m['abs_rel_matchable_textured_kept']:.3f} |")
    print_band(res)
    cmd = "python benchmarks/check_error_by_pixel.py " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"command": cmd, "model": a.model, "views": a.views, "targets": a.targets, "sets": res}, indent=2))
    print(f"JSON: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
