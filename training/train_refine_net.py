#!/usr/bin/env python3
"""Train the learned second stage (mvgd_core/refine_net.py) on a frozen model's live-camera outputs.

The first stage (network + photometric refinement) is frozen, so its outputs are gathered once
and the small U-Net trains on them in CPU-minutes:

    # 1. gather (one process per source; they can run side by side, one thread each)
    python training/train_refine_net.py gather --model models/mvgd_default.pt --source procedural \\
        --num 4000 --seed 8000000 --out runs/refine_net/procedural.pt
    python training/train_refine_net.py gather --model models/mvgd_default.pt --source hololens_train \\
        --num 1500 --seed 8100000 --out runs/refine_net/hololens.pt
    # 2. train, and store the stage in a copy of the checkpoint (OUT may be IN)
    python training/train_refine_net.py train --model models/mvgd_default.pt \\
        --data runs/refine_net/procedural.pt runs/refine_net/hololens.pt --steps 3000 --write runs/refine_net/model.pt
    # 3. before / after on any gathered set (e.g. --source procedural --seed 6000000: tuning seeds)
    python training/train_refine_net.py eval --model runs/refine_net/model.pt --data runs/refine_net/val.pt --figure stage.png

Training data: procedural scenes at seeds 8,000,000+ and the HoloLens walk's training frames
(first three quarters), live targets with 2-6 views. Never the evaluation's seeds (1,000,000-
2,000,001 procedural, 2,100,000+ sequences), the HoloLens held-out quarter or the tabletop set.
Two kinds of target: views sampled around each (`--source procedural | hololens_train`, as the
tables sample them), or the node's own live inputs (`--source replay_procedural | replay_hololens | replay_tum`,
stop 31): whole training sequences replayed through its keyframe policy and lag
(`evaluate_sequences.answers`), so the views trail the camera as on a robot; `train --weights`
sets each set's share of the batches and `--init-stage` fine-tunes a stage already trained.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "training"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from evaluate_model import REAL_SAMPLING, _first_existing  # noqa: E402
from mvgd_core.allocator import keep_freed_memory  # noqa: E402
from mvgd_core.calibration import match_confidence  # noqa: E402
from mvgd_core.checkpoint import load_checkpoint, refine_net_from_checkpoint, save_checkpoint  # noqa: E402
from mvgd_core.config import from_dict, settings_arg  # noqa: E402
from mvgd_core.data.sampler import DataConfig  # noqa: E402
from mvgd_core.data.types import collate_samples  # noqa: E402
from mvgd_core.inference import MVGDPredictor  # noqa: E402
from mvgd_core.metrics import depth_metrics  # noqa: E402
from mvgd_core.model_eval import held_out_samples, sequence_samples  # noqa: E402
from mvgd_core.observability import observability_with_mask  # noqa: E402
from mvgd_core.refine import RefineConfig, refine_batch  # noqa: E402
from mvgd_core.refine_net import (CHECKPOINT_KEY, BandCost, RefineNet, RefineNetConfig, net_inputs, refine_net_to_dict,  # noqa: E402
                                  with_uncertainty)
from mvgd_core.sparsification import FRACTIONS, sparsification_curve  # noqa: E402

TENSORS = ("rgb", "net", "ref", "acc", "conf", "gt", "cost", "agg", "checked")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- gather

def source_samples(args, data: DataConfig, hw, views: int, seed: int) -> list:
    """Live-camera samples with `views` views from --source."""
    num = args.num // len(args.views)
    if args.source == "procedural":
        return held_out_samples(data, num, seed, views, "cond")
    path = _first_existing(args.hololens)
    if path is None:
        raise SystemExit(f"train_refine_net: none of {args.hololens} exists")
    from mvgd_core.data.deepvideomvs import list_images, read_deepvideomvs
    from mvgd_core.data.splits import hololens_split

    train, _ = hololens_split(len(list_images(path)))
    return sequence_samples([read_deepvideomvs(path, indices=train)], hw, num, seed, views, "cond", REAL_SAMPLING)


def first_stage(pred: MVGDPredictor, samples: list, seed: int) -> dict:
    """The frozen first stage's outputs for one batch of live samples (what `MVGDPredictor.refined`
    hands the learned stage), with GT and regime."""
    b = collate_samples(samples)
    x0, scale, match = pred.sample(b.cond_rgb, b.cond_K, b.cond_T_wc, b.tgt_K, b.tgt_T_wc, "depth", 1, seed, return_match=True)
    net = pred.to_depth(x0, scale)
    ref, acc, band = refine_batch(b.cond_rgb, b.cond_K, b.cond_T_wc, b.tgt_K, b.tgt_T_wc, net, pred.refine, bands=True)
    if any(x is None for x in band):
        raise RuntimeError("train_refine_net: a live sample got no band (fewer than 2 views?)")
    hw = tuple(net.shape[-2:])
    out = {"rgb": b.tgt_rgb.half(), "net": net.float(), "ref": ref.float(), "acc": acc, "gt": b.tgt_depth.reshape(net.shape).float(),
           "conf": match_confidence(match, hw)[0].half(), "cost": torch.stack([x.cost.clamp(max=2.0) for x in band]).half(),
           "agg": torch.stack([x.agg for x in band]).half(), "checked": torch.stack([x.checked for x in band])}
    out["regime"] = [observability_with_mask(s.tgt_depth, s.tgt_K, s.tgt_T_wc, s.cond_K, s.cond_T_wc, hw, hw)[0].regime for s in samples]
    return out


def replay_sequences(args) -> list[list]:
    """The training sequences a `replay_*` source replays through the node's keyframe policy:
    the HoloLens walk's training frames or the shipped TUM fr1/rpy frames (in the network's
    training data too) at each of --strides (every offset: a camera thinned as a node might get
    it), or procedural sequences like the demo bag at --seed + k, --sequences of each
    --trajectories kind."""
    if args.source == "replay_procedural":
        from mvgd_core.data.make_bag import PROCEDURAL as BAG
        from mvgd_core.data.render import ProceduralConfig, render_sequence

        return [render_sequence(args.seed + 1000 * t + k, BAG["num_frames"], BAG["height"], BAG["width"], ProceduralConfig(p_indoor=1.0),
                                trajectory=kind) for t, kind in enumerate(args.trajectories) for k in range(args.sequences)]
    if args.source == "replay_tum":
        from mvgd_core.data.tum import read_tum

        frames = read_tum(ROOT / "data" / "tum_fr1_rpy_small")
    else:
        path = _first_existing(args.hololens)
        if path is None:
            raise SystemExit(f"train_refine_net: none of {args.hololens} exists")
        from mvgd_core.data.deepvideomvs import list_images, read_deepvideomvs
        from mvgd_core.data.splits import hololens_split

        frames = read_deepvideomvs(path, indices=hololens_split(len(list_images(path)))[0])
    return [frames[o::k] for k in args.strides for o in range(k)]


def replay_parts(args, pred: MVGDPredictor) -> list[dict]:
    """The learned stage's inputs at every live answer the node publishes on `replay_sequences`
    (its keyframe sets and lag, `evaluate_sequences.answers`), with GT in the model's camera."""
    from evaluate_sequences import answers
    from sequence_replay import Scorer
    from mvgd_core.cameras import resize_intrinsics
    from mvgd_ros.eval_scoring import in_camera
    from mvgd_ros.lookahead import refine_sources

    seqs = replay_sequences(args)
    pred.refine_net = RefineNet(RefineNetConfig(span=pred.refine.span))  # untrained: the identity, so outputs are the refinement's
    pred.use_refine_net = True
    taps: list = []
    pred.stage_input_tap = lambda *a: taps.append(a)
    scorer, hw, parts = Scorer(pred, pred.image_size), pred.image_size, []
    jobs = [(lag, job) for lag in args.lookahead for job in answers(seqs, lag)]
    for lag, (s, i, window) in tqdm(jobs, desc=f"gather {args.source}", unit="target"):
        taps.clear()
        r = scorer.score(s, seqs[s], i, window, "depth", refine_sources(lag))
        if r is None or not taps:  # no GT, or a single view (no band)
            continue
        rgb, net, ref, acc, conf, band = taps[0]
        _, K, out_hw = scorer.output_camera(seqs[s][i])
        gt = in_camera(seqs[s][i], resize_intrinsics(torch.as_tensor(K, dtype=torch.float32), out_hw, hw).numpy(), hw).depth
        parts.append({"rgb": rgb.half(), "net": net, "ref": ref, "acc": acc, "gt": torch.as_tensor(gt, dtype=torch.float32)[None],
                      "conf": conf.half(), "cost": torch.stack([x.cost.clamp(max=2.0) for x in band]).half(),
                      "agg": torch.stack([x.agg for x in band]).half(), "checked": torch.stack([x.checked for x in band]),
                      "regime": [r["regime"]]})
    return parts


def sampled_parts(args, pred: MVGDPredictor, data: DataConfig) -> list[dict]:
    """The first stage's outputs at live targets with --views views sampled around each (`source_samples`)."""
    parts = []
    with tqdm(total=args.num // len(args.views) * len(args.views), desc=f"gather {args.source}", unit="target") as bar:
        for i, v in enumerate(args.views):
            samples = source_samples(args, data, pred.image_size, v, args.seed + i * 10007)
            for j in range(0, len(samples), args.batch):
                parts.append(first_stage(pred, samples[j:j + args.batch], j))
                bar.update(len(samples[j:j + args.batch]))
    return parts


def gather(args) -> None:
    ckpt = load_checkpoint(args.model)
    pred = MVGDPredictor.from_checkpoint(args.model, device="cpu", steps=1, refine=args.refine_settings)
    pred.use_refine_net = False
    data = from_dict(DataConfig, {**((ckpt["config"].get("train") or {}).get("data") or {}), "image_hw": list(pred.image_size)})
    parts = replay_parts(args, pred) if args.source.startswith("replay_") else sampled_parts(args, pred, data)
    if not parts:
        raise SystemExit(f"train_refine_net: {args.source} gave no live target with a band")
    rec = {k: torch.cat([p[k] for p in parts]) for k in TENSORS}
    rec["regime"] = sum((p["regime"] for p in parts), [])
    rec["meta"] = {"model": str(args.model), "source": args.source, "seed": args.seed, "views": list(args.views),
                   "lookahead": list(args.lookahead), "strides": list(args.strides), "trajectories": list(args.trajectories),
                   "sequences": args.sequences, "refine_settings": dataclasses.asdict(pred.refine)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(rec, args.out)
    log(f"wrote {args.out}: {len(rec['regime'])} targets, {sum(r == 'observable' for r in rec['regime'])} observable")


# --------------------------------------------------------------------------- train

def band_span(meta: dict) -> float:
    """The refinement's band span a set was gathered with (sets from before stop 36: the default's)."""
    return float((meta.get("refine_settings") or {}).get("span", RefineConfig().span))


def load_sets(paths: list[str]) -> dict:
    sets = [torch.load(p) for p in paths]
    spans = {band_span(s.get("meta") or {}) for s in sets}
    if len(spans) > 1:  # one stage reads one band: mixed spans would be other depths in the same channels
        raise SystemExit(f"train_refine_net: {', '.join(paths)} were gathered with different band spans {sorted(spans)}")
    out = {k: torch.cat([s.pop(k) for s in sets]) for k in TENSORS}  # pop: one tensor kind held twice at a time, not all
    out["regime"] = sum((s["regime"] for s in sets), [])
    out["sizes"] = [len(s["regime"]) for s in sets]
    out["span"] = spans.pop()
    return out


def draw_targets(sizes: list[int], weights: list[float] | None, batch: int) -> list[int]:
    """batch target indices into the concatenated sets: each draw picks a set with probability
    proportional to its weight, then a target in it; weights None: every target alike (the draw
    stop 26's shipped stage was trained with)."""
    if weights is None:
        return torch.randint(0, sum(sizes), (batch,)).tolist()
    w = torch.tensor(weights, dtype=torch.float64)
    start = [sum(sizes[:k]) for k in range(len(sizes))]
    return [start[k] + int(torch.randint(0, sizes[k], ())) for k in torch.multinomial(w, batch, replacement=True).tolist()]


def batch_inputs(d: dict, idx, cfg: RefineNetConfig):
    """(x, log refined depth, GT) for targets idx of a gathered set (as `MVGDPredictor.refined` builds them)."""
    band = [BandCost(d["cost"][i].float(), d["agg"][i].float(), d["checked"][i]) for i in idx]
    x, log_ref = net_inputs(d["rgb"][idx].float(), d["net"][idx], d["ref"][idx], d["acc"][idx], d["conf"][idx].float(), band, cfg)
    return x, log_ref, d["gt"][idx]


def _log_error(pred_log: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(|log depth error|, valid GT pixels), both shaped like gt."""
    return (pred_log - torch.log(gt.clamp_min(1e-3))).abs(), (gt > 0) & torch.isfinite(gt)


def log_l1(pred_log: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mean |log depth error| over valid GT pixels."""
    err, ok = _log_error(pred_log, gt)
    return (err * ok).sum() / ok.sum().clamp_min(1)


def laplace_nll(pred_log: torch.Tensor, log_scale: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood (up to log 2) of the detached |log depth error| under a Laplace
    of scale exp(log_scale), over valid GT pixels: minimised where exp(log_scale) = E|error|."""
    err, ok = _log_error(pred_log.detach(), gt)
    return ((err * torch.exp(-log_scale) + log_scale) * ok).sum() / ok.sum().clamp_min(1)


def stage_config(args, span: float) -> RefineNetConfig:
    """A new stage's config for sets gathered with band `span`: the defaults, or --channels (a
    capacity ablation) / --hypotheses (the band depths it reads, for a band gathered with more)."""
    base = RefineNetConfig()
    return RefineNetConfig(channels=tuple(args.channels or base.channels), hypotheses=args.hypotheses or base.hypotheses, span=span,
                           uncertainty=args.uncertainty)


def observable_median(d: dict, model: RefineNet | None) -> tuple[float, float]:
    """Median AbsRel / delta1 over the observable targets of a gathered set (all when none is)."""
    obs = np.array([r == "observable" for r in d["regime"]])
    a, b = per_target(d, model)
    m = obs if obs.any() else np.ones_like(obs)
    return float(np.median(a[m])), float(np.median(b[m]))


def train_stage(d: dict, args, start: RefineNet | None = None, curve_sets: dict | None = None) -> tuple[RefineNet, list]:
    """The stage trained on gathered sets d, from the identity or (start) from a stage already trained;
    with args.curve_every, also its learning curve on curve_sets: [{step, train_s, set: [AbsRel, delta1]}]
    (train_s: seconds spent on training steps so far, measurements excluded)."""
    torch.manual_seed(args.seed)
    model = RefineNet(stage_config(args, d["span"]))  # built either way: the same random stream follows
    if start is not None:  # fine-tune (e.g. on the node's own keyframe sets)
        if not math.isclose(start.cfg.span, d["span"]):
            raise SystemExit(f"train_refine_net: the stage to fine-tune read a band of span {start.cfg.span}, the sets have {d['span']}")
        model = (with_uncertainty(start) if args.uncertainty else start).train()
    curve, measuring_s, t0 = [], 0.0, time.time()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=1e-4)
    bar = tqdm(range(args.steps), desc="train refine_net", unit="step")
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        x, log_ref, gt = batch_inputs(d, draw_targets(d["sizes"], args.weights, args.batch), model.cfg)
        if torch.rand(()) < 0.5:  # mirror: the band's cost is per pixel, so flipping is exact
            x, log_ref, gt = x.flip(-1), log_ref.flip(-1), gt.flip(-1)
        corr, log_scale = model.outputs(x)
        loss = log_l1(log_ref + corr, gt) if corr.requires_grad else corr.new_zeros(())  # a frozen stage (--init-stage --uncertainty)
        if log_scale is not None:
            loss = loss + laplace_nll(log_ref + corr, log_scale, gt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if args.curve_every and curve_sets and ((step + 1) % args.curve_every == 0 or step + 1 == args.steps):
            t1 = time.time()
            point = {"step": step + 1, "train_s": round(t1 - t0 - measuring_s, 1)}
            curve.append(point | {k: observable_median(v, model.eval()) for k, v in curve_sets.items()})
            model.train()
            measuring_s += time.time() - t1
            log(f"step {step + 1} ({point['train_s']:.0f} s): " + ", ".join(f"{k} {a:.3f} / {b:.3f}" for k, (a, b) in list(curve[-1].items())[2:]))
    return model.eval(), curve


@torch.no_grad()
def per_target(d: dict, model: RefineNet | None, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Per target AbsRel and delta1 of the refined depth (model None) or the stage's."""
    cfg = RefineNetConfig() if model is None else model.cfg
    if model is not None and not math.isclose(model.cfg.span, d["span"]):
        raise SystemExit(f"train_refine_net: the stage read a band of span {model.cfg.span}, this set has {d['span']}")
    absrel, d1 = [], []
    for i in range(0, len(d["regime"]), batch):
        idx = list(range(i, min(i + batch, len(d["regime"]))))
        x, log_ref, gt = batch_inputs(d, idx, cfg)
        pred = torch.exp(log_ref if model is None else log_ref + model(x))
        for p, g in zip(pred, gt):
            m = depth_metrics(p, g)
            absrel.append(m["abs_rel"])
            d1.append(m["delta1"])
    return np.array(absrel), np.array(d1)


@torch.no_grad()
def sparsification(d: dict, model: RefineNet, batch: int = 32) -> dict[str, dict]:
    """Sparsification curves of the stage's depth over the observable targets' pixels (pooled; all
    targets when none is observable), ranked by the network's peak mass (the raw score the shipped
    calibration maps), by the stage's own uncertainty (-log scale) where it has one, and the oracle."""
    obs = [i for i, r in enumerate(d["regime"]) if r == "observable"] or list(range(len(d["regime"])))
    preds, gts, stage_conf = [], [], []
    for i in range(0, len(obs), batch):
        idx = obs[i:i + batch]
        x, log_ref, gt = batch_inputs(d, idx, model.cfg)
        corr, log_scale = model.outputs(x)
        preds.append(torch.exp(log_ref + corr))
        gts.append(gt)
        if log_scale is not None:
            stage_conf.append(-log_scale)
    pred, gt = torch.cat(preds), torch.cat(gts)
    out = {"peak mass": sparsification_curve(pred, gt, d["conf"][obs].float())}
    if stage_conf:
        out["stage uncertainty"] = sparsification_curve(pred, gt, torch.cat(stage_conf))
    return out


def report(d: dict, model: RefineNet, name: str) -> None:
    obs = np.array([r == "observable" for r in d["regime"]])
    a0, b0 = per_target(d, None)
    a1, b1 = per_target(d, model)
    for label, m in (("observable", obs), ("all", np.ones_like(obs))):
        if m.any():
            log(f"{name} {label} (n={int(m.sum())}): median AbsRel / delta1 refined {np.median(a0[m]):.3f} / {np.median(b0[m]):.3f}"
                f" -> stage {np.median(a1[m]):.3f} / {np.median(b1[m]):.3f}")
    curves = sparsification(d, model)
    fr = " / ".join(f"{round(100 * f)}" for f in FRACTIONS)
    ranks = {k: c["abs_rel"] for k, c in curves.items()} | {"oracle": curves["peak mass"]["oracle"]}
    for k, values in ranks.items():
        log(f"{name} sparsification {fr} % by {k}: " + " / ".join(f"{v:.3f}" for v in values))


def train(args) -> None:
    if args.weights is not None and (len(args.weights) != len(args.data) or min(args.weights) < 0 or sum(args.weights) <= 0):
        raise SystemExit(f"train_refine_net: --weights needs one non-negative weight per --data set, got {args.weights}")
    if args.init_stage and (args.channels or args.hypotheses):
        raise SystemExit("train_refine_net: --channels / --hypotheses build a new stage; --init-stage keeps the model's own")
    if args.curve_every and not args.report:
        raise SystemExit("train_refine_net: --curve-every needs --report sets to measure on")
    ckpt = load_checkpoint(args.model)
    start = refine_net_from_checkpoint(ckpt) if args.init_stage else None
    if args.init_stage and start is None:  # before the sets load: they take minutes and gigabytes
        raise SystemExit(f"train_refine_net: --init-stage, but {args.model} has no {CHECKPOINT_KEY!r} entry")
    d = load_sets(args.data)
    log(f"{len(d['regime'])} targets from {', '.join(args.data)}")
    report_sets = {p: load_sets([p]) for p in args.report}  # loaded once: for the curve and the report after
    t0 = time.time()
    model, curve = train_stage(d, args, start, report_sets)
    minutes = (time.time() - t0) / 60
    cmd = "python training/train_refine_net.py train " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    meta = {"steps": args.steps, "batch": args.batch, "lr": args.lr, "init_stage": args.init_stage, "weights": args.weights,
            "targets": len(d["regime"]), "data": list(args.data),
            "cpu_minutes": round(minutes * args.threads, 1), "threads": args.threads, "command": cmd,
            "channels": list(model.cfg.channels), "hypotheses": model.cfg.hypotheses, "uncertainty": model.cfg.uncertainty, "curve": curve}
    if args.init_stage:  # keep the provenance of the stage it started from
        meta["started_from"] = ckpt[CHECKPOINT_KEY].get("meta", {})
    save_checkpoint(args.write, {**ckpt, CHECKPOINT_KEY: refine_net_to_dict(model, meta)})
    check = MVGDPredictor.from_checkpoint(args.write, device="cpu", steps=1)
    if check.refine_net is None:
        raise SystemExit(f"train_refine_net: {args.write} reloads without the stage")
    log(f"wrote {args.write} ({args.steps} steps in {minutes:.1f} min on {args.threads} thread(s))")
    for path, rd in report_sets.items():
        report(rd, check.refine_net, Path(path).name)


@torch.no_grad()
def save_figure(path, d: dict, model: RefineNet, rows: int) -> Path:
    """The first `rows` observable targets (in gathered order, not picked by outcome; any targets
    when none is observable): image, GT, refined and stage depth on one scale, their AbsRel error maps."""
    from mvgd_core import viz

    idx = [i for i, r in enumerate(d["regime"]) if r == "observable"][:rows] or list(range(min(rows, len(d["regime"]))))
    x, log_ref, gt = batch_inputs(d, idx, model.cfg)
    ref, stage = torch.exp(log_ref), torch.exp(log_ref + model(x))
    picked = {k: v[idx] for k, v in d.items() if torch.is_tensor(v)} | {"regime": [d["regime"][i] for i in idx], "span": d["span"]}
    a0, _ = per_target(picked, None)
    a1, _ = per_target(picked, model)
    cells, labels = [], []
    for k in range(len(idx)):
        row, lab = viz.method_depth_row(gt[k], {f"refined {a0[k]:.3f}": ref[k], f"stage {a1[k]:.3f}": stage[k]})
        cells.append([d["rgb"][idx[k]].float()] + row)
        labels.append(["image"] + lab)
    return viz.save_png(path, viz.make_grid(cells, labels, cell_hw=viz.legible_cell(tuple(gt.shape[-2:]))))


def evaluate(args) -> None:
    stage = MVGDPredictor.from_checkpoint(args.model, device="cpu", steps=1).refine_net
    if stage is None:
        raise SystemExit(f"train_refine_net: {args.model} has no {CHECKPOINT_KEY!r} entry")
    for path in args.data:
        report(load_sets([path]), stage, Path(path).name)
    if args.figure:
        log(f"wrote {save_figure(args.figure, load_sets(args.data[:1]), stage, args.rows)}")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gather", help="the frozen first stage's live-camera outputs -> a .pt set")
    g.add_argument("--model", required=True)
    g.add_argument("--source", choices=("procedural", "hololens_train", "replay_procedural", "replay_hololens", "replay_tum"), required=True,
                   help="views sampled around each target, or (replay_*) the node's own keyframe sets on sequences")
    g.add_argument("--num", type=int, default=1000, help="targets, split evenly over --views")
    g.add_argument("--seed", type=int, required=True, help="procedural: 8,000,000+ for training, 6,000,000+ for tuning")
    g.add_argument("--views", type=int, nargs="+", default=[2, 3, 4, 5, 6])
    g.add_argument("--hololens", default="data/hololens_office|../shared/data/hololens_office", help="first existing wins")
    g.add_argument("--batch", type=int, default=8)
    g.add_argument("--lookahead", type=int, nargs="+", default=[0, 2], help="replay_*: the node's lookahead_frames values")
    g.add_argument("--strides", type=int, nargs="+", default=[1, 2, 3], help="replay_hololens / replay_tum: frame strides, every offset")
    g.add_argument("--trajectories", nargs="+", default=["forward", "wide", "handheld"], help="replay_procedural: kinds")
    g.add_argument("--sequences", type=int, default=4, help="replay_procedural: sequences of each kind")
    g.add_argument("--refine-settings", type=settings_arg(RefineConfig), default=RefineConfig(), metavar="KEY=VALUE[,...]",
                   help="the refinement whose band is gathered, e.g. span=3,hypotheses=15 (a wider band; default: the shipped one)")
    g.add_argument("--out", required=True)
    t = sub.add_parser("train", help="train the stage on gathered sets and store it in a checkpoint copy")
    t.add_argument("--model", required=True)
    t.add_argument("--data", nargs="+", required=True)
    t.add_argument("--steps", type=int, default=3000)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--weights", type=float, nargs="+", help="sampling weight of each --data set (default: by its size)")
    t.add_argument("--init-stage", action="store_true", help="start from --model's stage instead of the identity")
    t.add_argument("--write", required=True, help="checkpoint to write (may be --model)")
    t.add_argument("--report", nargs="*", default=[], help="gathered sets to report before / after on")
    t.add_argument("--channels", type=int, nargs="+", help="a new stage's U-Net widths, finest first (default: RefineNetConfig's)")
    t.add_argument("--uncertainty", action="store_true", help="the stage also learns the log scale of its depth's error (its own "
                   "confidence); with --init-stage, only that head trains: the model's stage gets it and keeps its depth")
    t.add_argument("--hypotheses", type=int, help="band depths a new stage reads (default: RefineNetConfig's; a band of another size is resampled)")
    t.add_argument("--curve-every", type=int, default=0, help="also measure on the --report sets every N steps (a learning curve, "
                   "stored in the stage's meta with the training seconds of each point)")
    e = sub.add_parser("eval", help="before / after the stage on gathered sets")
    e.add_argument("--model", required=True)
    e.add_argument("--data", nargs="+", required=True)
    e.add_argument("--figure", default="", help="PNG of the first --rows observable targets of the first --data set ('' = none)")
    e.add_argument("--rows", type=int, default=4)
    for p in (g, t, e):
        p.add_argument("--threads", type=int, default=1)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "gather" and args.num < len(args.views):
        raise SystemExit("train_refine_net: --num must be >= the number of --views")
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # this script owns its process: freed buffers stay for the next step (~25 % faster on CPU)
    {"gather": gather, "train": train, "eval": evaluate}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
