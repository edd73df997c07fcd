"""Learning curve: does the matching path learn faster than the pure raymap design? (issue 11)

Same data, same CPU budget, one thread each: held-out median AbsRel and delta1 of depth in the
*observable* regime (mvgd_core.observability) against training CPU minutes.

    # once: render the shared train / held-out pools (cached under --out)
    nice -n 10 python training/learning_curve.py --out runs/learning_curve --prepare
    # one run per arm (run them one after the other, or at once on separate cores)
    nice -n 10 python training/learning_curve.py --out runs/learning_curve --arm match --cpu-minutes 12
    nice -n 10 python training/learning_curve.py --out runs/learning_curve --arm raymap --cpu-minutes 12
    # table + plot of whatever arms have finished
    python training/learning_curve.py --out runs/learning_curve --plot

Arms (ModelConfig of the "match" preset, 96x128, 16x16 patches; only the switch differs):
    match        matching path on (cost volume, learned features), aux matching loss
    match_zncc   as match, plus the fixed ZNCC cost as an input (best live-camera depth at 12 min)
    match_zncc_s2  as match_zncc with the cost volume and decoder at 1/2 resolution (48x64)
    raymap       matching off (decoder, own-view features and scale input stay): the paper's
                 raymap-only conditioning at the same resolution and token count
Data: procedural "forward" and "wide" trajectories (real parallax), 3 conditioning views,
half the targets are a conditioning view; training samples are kept only when their target
depth is observable (>= 50 % of pixels move >= 1 px), held-out likewise (seeds 3_000_000+,
never used for training). CPU time is time.process_time() of the training steps only
(evaluation excluded), one torch thread. A compact loop (not mvgd_core/train.py, which was
being changed at the time): AdamW, warm-up then constant lr, batch 8, raw weights, 1 DDIM step
(the node's default) for evaluation.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mvgd_core import charts
from mvgd_core.data.render import ProceduralConfig, render_sequence
from mvgd_core.data.sampler import ViewSamplingConfig, make_sample, select_views
from mvgd_core.data.types import collate_samples
from mvgd_core.diffusion import TASK_DEPTH, TASK_RGB, DiffusionConfig, GaussianDiffusion
from mvgd_core.refine import RefineConfig
from mvgd_core.view_synthesis import SynthesisConfig
from mvgd_core.inference import MVGDPredictor
from mvgd_core.metrics import depth_metrics
from mvgd_core.model import MVGD, PRESETS
from mvgd_core.observability import OBSERVABLE_MIN, sample_observability
from mvgd_core.sparsification import sparsification_curve

ARMS = {
    "match": dict(matching=True, match_zncc=False),
    "match_zncc": dict(matching=True, match_zncc=True),
    "raymap": dict(matching=False),
    # stop 10: finer matching (cost volume and decoder at 1/2, 48x64, instead of 1/4): does it
    # pay for its ~4x cost-volume compute at equal CPU? (MODEL_CARD "What it still gets wrong")
    "match_zncc_s2": dict(matching=True, match_zncc=True, match_stride=2),
}
HW = (96, 128)
NUM_VIEWS = 3
TRAIN_SEED, HELD_SEED = 0, 3_000_000
DIFFUSION = dict(prediction_type="x0", match_weight=1.0, depth_loss_when_clamped=False)


def arm_config(arm: str):
    return dataclasses.replace(PRESETS["match"], **ARMS[arm])


def make_pool(num: int, seed: int, samples_per_scene: int = 4, frames: int = 10) -> list:
    """`num` observable samples from forward/wide procedural sequences, deterministic from seed."""
    proc = ProceduralConfig(trajectories=("forward", "wide"))
    sampling = ViewSamplingConfig(min_views=NUM_VIEWS, max_views=NUM_VIEWS, p_target_in_cond=0.5)
    out, scene, tried = [], 0, 0
    while len(out) < num:
        frames_ = render_sequence(seed * 1000 + scene, frames, *HW, cfg=proc)
        rng = np.random.default_rng([seed, scene])
        for _ in range(samples_per_scene):
            tried += 1
            cond, tgt = select_views(frames_, NUM_VIEWS, rng, sampling)
            s = make_sample(frames_, cond, tgt)
            frac = float(s.observability[0]) if getattr(s, "observability", None) is not None else sample_observability(s, model_hw=None).frac
            if frac >= OBSERVABLE_MIN:
                out.append(s)
        scene += 1
    print(f"pool seed {seed}: {len(out)} observable of {tried} drawn", file=sys.stderr)
    return out[:num]


def is_cond_target(s) -> bool:
    return bool(((s.cond_T_wc - s.tgt_T_wc[None]).abs().flatten(1).amax(1) <= 1e-5).any())


def evaluate(model: MVGD, dcfg: DiffusionConfig, held: list) -> dict:
    """Median / mean over held-out samples of per-sample depth AbsRel and delta1 (1 DDIM step), per set."""
    pred = MVGDPredictor(model, dcfg, device="cpu", steps=1, refine=RefineConfig(enabled=False),
                         synthesis=SynthesisConfig(enabled=False))  # the network alone
    rows = {"cond": [], "novel": []}
    spars = []
    for i in range(0, len(held), 8):
        chunk = held[i : i + 8]
        depth, conf = pred.predict_batch(collate_samples(chunk), "depth", steps=1, seed=i, return_confidence=True)
        for j, s in enumerate(chunk):
            m = depth_metrics(depth[j], s.tgt_depth)
            rows["cond" if is_cond_target(s) else "novel"].append((m["abs_rel"], m["delta1"]))
            if conf is not None:
                spars.append(sparsification_curve(depth[j], s.tgt_depth, conf[j])["abs_rel"])
    model.train()
    out = {}
    for name, r in rows.items():
        a = np.array(r, dtype=np.float64)
        out[name] = {"n": len(r), "abs_rel_median": float(np.nanmedian(a[:, 0])), "abs_rel_mean": float(np.nanmean(a[:, 0])),
                     "delta1_median": float(np.nanmedian(a[:, 1])), "delta1_mean": float(np.nanmean(a[:, 1]))}
    if spars:
        out["sparsification_abs_rel_mean"] = np.nanmean(np.array(spars), axis=0).tolist()  # at 25/50/75/100 %
    return out


def train_arm(arm: str, out: Path, cpu_minutes: float, eval_every_min: float, batch: int, lr: float, seed: int) -> dict:
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    pools = torch.load(out / "pools.pt", weights_only=False)
    train, held = pools["train"], pools["held"]
    cfg = arm_config(arm)
    dcfg = DiffusionConfig(**DIFFUSION)
    model = MVGD(cfg).train()
    diffusion = GaussianDiffusion(dcfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.99))
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    n_params = sum(p.numel() for p in model.parameters())
    log = {"arm": arm, "model": dataclasses.asdict(cfg), "diffusion": DIFFUSION, "params": n_params, "batch": batch, "lr": lr,
           "train_pool": len(train), "held": len(held), "points": []}
    print(f"{arm}: {n_params / 1e6:.2f} M parameters, {len(train)} train / {len(held)} held-out samples", file=sys.stderr)

    def record(step, cpu_s, loss):
        t0 = time.time()
        ev = evaluate(model, dcfg, held)
        pt = {"step": step, "cpu_min": cpu_s / 60, "loss": loss, **ev}
        log["points"].append(pt)
        (out / f"{arm}.json").write_text(json.dumps(log, indent=1))
        print(f"{arm} step {step} cpu {cpu_s / 60:.1f} min loss {loss:.4f} | cond AbsRel med {ev['cond']['abs_rel_median']:.3f} "
              f"d1 {ev['cond']['delta1_median']:.3f} | novel AbsRel med {ev['novel']['abs_rel_median']:.3f} "
              f"d1 {ev['novel']['delta1_median']:.3f} (eval {time.time() - t0:.0f} s)", file=sys.stderr, flush=True)

    cpu, step, next_eval, losses = 0.0, 0, 0.0, []
    while True:
        if cpu >= next_eval * 60:
            record(step, cpu, float(np.mean(losses)) if losses else float("nan"))
            losses = []
            next_eval += eval_every_min
        if cpu >= cpu_minutes * 60:
            break
        c0 = time.process_time()
        idx = rng.choice(len(train), size=batch, replace=False)
        b = collate_samples([train[i] for i in idx])
        cond_tgt = ((b.cond_T_wc - b.tgt_T_wc[:, None]).abs().flatten(2).amax(-1) <= 1e-5).any(1)
        task = torch.where(cond_tgt | (torch.rand(batch, generator=gen) < 0.5), TASK_DEPTH, TASK_RGB)
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / 100)
        loss = diffusion.training_losses(model, b, task, generator=gen)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        step += 1
        cpu += time.process_time() - c0
    from mvgd_core.checkpoint import make_state, save_checkpoint

    save_checkpoint(out / f"{arm}.pt", make_state(model, dcfg, step=step))  # raw weights, loadable by MVGDPredictor
    return log


COLOURS = {"match": (31, 119, 180), "match_zncc": (44, 160, 44), "raymap": (214, 39, 40), "match_zncc_s2": (148, 103, 189)}
PANELS = [("cond", "abs_rel_median"), ("cond", "delta1_median"), ("novel", "abs_rel_median"), ("novel", "delta1_median")]


def _panel(draw, box, title, series, font):
    """One line chart in box (x0, y0, x1, y1) of PIL ImageDraw: series {arm: [(x, y)]}."""
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for x, y in pts if np.isfinite(y) and x > 0]  # the untrained point is clipped
    xmax = max(xs) if xs else 1.0
    ylo, yhi = (min(ys), max(ys)) if ys else (0.0, 1.0)
    pad = 0.05 * (yhi - ylo or 1.0)
    ticks = list(range(0, int(xmax) + 1, max(1, int(xmax) // 6 or 1)))
    X, Y = charts.axes(draw, box, title, font, "training CPU minutes (1 thread)", (0.0, xmax or 1.0), (max(0.0, ylo - pad), yhi + pad), ticks, "{:.0f}")
    for arm, pts in series.items():
        charts.polyline(draw, X, Y, [x for x, _ in pts], [y for _, y in pts], COLOURS.get(arm, (0, 0, 0)))


def plot(out: Path) -> None:
    """learning_curve.png (PIL: no plotting package needed) and table.md of the finished arms."""
    from PIL import Image, ImageDraw, ImageFont

    logs = {a: json.loads((out / f"{a}.json").read_text()) for a in ARMS if (out / f"{a}.json").exists()}
    W, H = 1400, 380
    img = Image.new("RGB", (W, H), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    draw.text((8, 4), f"held-out procedural, observable regime, 96x128, {NUM_VIEWS} views, 1 DDIM step, median over samples", fill=(0, 0, 0), font=font)
    for i, (arm, log) in enumerate(logs.items()):
        draw.text((700 + 190 * i, 4), f"-- {arm} ({log['params'] / 1e6:.2f} M)", fill=COLOURS.get(arm, (0, 0, 0)), font=font)
    for k, (sset, m) in enumerate(PANELS):
        series = {arm: [(p["cpu_min"], p[sset][m]) for p in log["points"]] for arm, log in logs.items()}
        _panel(draw, (k * W // 4, 20, (k + 1) * W // 4, H), f"{sset} target: {m.replace('_', ' ')}", series, font)
    img.save(out / "learning_curve.png")
    rows = ["| arm | params | steps | CPU min | cond AbsRel median | cond δ1 median | novel AbsRel median | novel δ1 median | sparsification (AbsRel at 25/50/75/100 % most confident) |",
            "|---|---|---|---|---|---|---|---|---|"]
    for arm, log in logs.items():
        p = log["points"][-1]
        sp = "/".join(f"{v:.3f}" for v in p.get("sparsification_abs_rel_mean", [])) or "–"
        rows.append(f"| {arm} | {log['params'] / 1e6:.2f} M | {p['step']} | {p['cpu_min']:.1f} | {p['cond']['abs_rel_median']:.3f} | "
                    f"{p['cond']['delta1_median']:.3f} | {p['novel']['abs_rel_median']:.3f} | {p['novel']['delta1_median']:.3f} | {sp} |")
    (out / "table.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/learning_curve")
    ap.add_argument("--prepare", action="store_true", help="render the train / held-out pools")
    ap.add_argument("--train-pool", type=int, default=600)
    ap.add_argument("--held", type=int, default=48)
    ap.add_argument("--arm", choices=sorted(ARMS))
    ap.add_argument("--cpu-minutes", type=float, default=12.0)
    ap.add_argument("--eval-every", type=float, default=2.0, help="CPU minutes between evaluations")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", action="store_true")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.prepare:
        t0 = time.process_time()
        pools = {"train": make_pool(a.train_pool, TRAIN_SEED), "held": make_pool(a.held, HELD_SEED)}
        torch.save(pools, out / "pools.pt")
        print(f"pools written in {(time.process_time() - t0) / 60:.1f} CPU min", file=sys.stderr)
    if a.arm:
        train_arm(a.arm, out, a.cpu_minutes, a.eval_every, a.batch, a.lr, a.seed)
    if a.plot:
        plot(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
