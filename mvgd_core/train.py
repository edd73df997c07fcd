"""MVGD trainer: one YAML config -> model + diffusion + data mixture -> resumable training run.

    python training/train.py --config training/configs/default.yaml --set optim.lr=1e-4
    torchrun --nproc_per_node=2 training/train.py --config ...          # DDP (gloo on CPU, nccl on CUDA)
    python training/train.py --config training/configs/finetune_tum.yaml --init-from models/mvgd_default.pt
    python training/train.py --config ... --init-from small.pt --grow-latents 128   # incremental fine-tuning

Single source of truth (improved-diffusion style): `TrainConfig` (mvgd_core/train_config.py).
Every top-level scalar field is also a CLI flag (`--run-dir`, `--steps`, `--init-from`, ...);
any nested key is `--set section.key=value` (value parsed as YAML). The resolved config is
written to the run dir and stored in every checkpoint.

This module is the loop, validation and the command line; the rest of the trainer is one module
per concept: train_config (configs, LR schedule), train_data (mixture, batch stream, task
choice), train_state (RNG states, checkpoint, resume, export), distributed (torchrun set-up),
metrics_log (CSV / TensorBoard).

Loop (nanoGPT style): warm-up + cosine LR set by hand each step, gradient accumulation,
clipping, AdamW, EMA; bf16 autocast on CUDA only. Tasks are mixed per sample: depth with
probability `depth_ratio`, RGB otherwise; a target that is also a conditioning view always
trains depth (its RGB is an input, a copy task), a target without valid depth always RGB
(`train_data.choose_tasks`).

Run dir: config.yaml, checkpoint.pt (full state, atomic, every few minutes and at the end),
metrics.csv (+ TensorBoard events when `tensorboard` is installed), val.csv, val/step*.png.
Resume is exact: model, optimizer, LR step, EMA, torch/numpy/python RNGs, the noise generator
and the data position (micro-batches consumed) are restored; N steps straight and N/2 + resume
+ N/2 give bit-identical weights on CPU (test/test_train.py).
"""
from __future__ import annotations

import argparse
import dataclasses
import random
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml

from mvgd_core.allocator import keep_freed_memory
from mvgd_core.checkpoint import CheckpointError, configs_from_checkpoint, load_checkpoint, model_from_checkpoint, save_checkpoint
from mvgd_core.config import ConfigError, load_config, to_dict
from mvgd_core.data.types import MultiViewBatch
from mvgd_core.diffusion import TASK_DEPTH, TASK_RGB, DiffusionConfig, GaussianDiffusion
from mvgd_core.distributed import any_rank, setup_distributed
from mvgd_core.ema import EMA, unwrap
from mvgd_core.metrics_log import MetricsLog
from mvgd_core.model import MVGD, ModelConfig, grow_latents
from mvgd_core.train_config import OptimConfig, TrainConfig, lr_at, model_config_for
from mvgd_core.train_data import batch_stream, build_train_dataset, choose_tasks, training_depth_median
from mvgd_core.train_state import RunState, checkpoint_state, export_model, gather_rngs, load_resume, state_digest

CHECKPOINT = "checkpoint.pt"


# --------------------------------------------------------------------------- training


def build_model(cfg: TrainConfig) -> tuple[MVGD, ModelConfig, DiffusionConfig]:
    """Fresh model from the config, or initialised from cfg.init_from (+ grow_latents).

    With init_from the checkpoint defines the architecture and the diffusion process (its
    weights only make sense with the parameterization they were trained with).
    """
    if not cfg.init_from:
        mcfg = model_config_for(cfg)
        return MVGD(mcfg), mcfg, cfg.diffusion
    ckpt = load_checkpoint(cfg.init_from)
    _, dcfg = configs_from_checkpoint(ckpt)
    model = model_from_checkpoint(ckpt, use_ema=True)
    if cfg.grow_latents:
        model = grow_latents(model, cfg.grow_latents, generator=torch.Generator().manual_seed(cfg.seed))
    return model, model.cfg, dcfg


def check_run_dir(run_dir) -> None:
    """ConfigError unless run_dir is a folder or can become one (not a file, nor under one)."""
    p = Path(run_dir)
    for q in (p, *p.parents):
        if q.exists() and not q.is_dir():
            raise ConfigError(f"run_dir {run_dir!r}: {q} is a file, not a folder; choose another run_dir")
        if q.exists():
            break


def _seed_everything(seed: int, rank: int) -> torch.Generator:
    """Identical model init on every rank; returns this rank's own noise generator."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    return torch.Generator().manual_seed(seed * 1_000_003 + rank)


def _resolve(cfg: TrainConfig, mcfg: ModelConfig, dcfg: DiffusionConfig, rank: int) -> TrainConfig:
    """cfg with the diffusion process and image size the model really has (init_from wins)."""
    if dcfg != cfg.diffusion:
        if rank == 0 and cfg.diffusion != DiffusionConfig():
            print(f"note: diffusion config taken from {cfg.init_from}: {to_dict(dcfg)}", file=sys.stderr)
        cfg = dataclasses.replace(cfg, diffusion=dcfg)
    if tuple(cfg.data.image_hw) != tuple(mcfg.image_size):
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, image_hw=tuple(mcfg.image_size)))
    return cfg


def make_optimizer(model: torch.nn.Module, o: OptimConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases, norms and the learned latents."""
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (decay if p.dim() >= 2 and n != "latents" else no_decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                             lr=o.lr, betas=o.betas)


def _resume_path(cfg: TrainConfig, ckpt_path: Path) -> Path | None:
    if cfg.resume == "auto":
        return ckpt_path if ckpt_path.exists() else None
    return None if cfg.resume == "never" else Path(cfg.resume)


def _open_run_dir(run_dir: Path, cfg: TrainConfig, step: int) -> tuple["MetricsLog", "MetricsLog"]:
    """Create the run dir, drop temp files of a killed save, write config.yaml; (metrics, val) logs."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for tmp in run_dir.glob(f".{CHECKPOINT}.*.tmp"):  # left by a save that was killed mid-write
        tmp.unlink(missing_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return MetricsLog(run_dir / "metrics.csv", step, run_dir / "tb"), MetricsLog(run_dir / "val.csv", step, None)


def _catch_stop_signals(stop: dict) -> dict:
    """SIGTERM (kill, timeout, schedulers) and SIGINT (Ctrl-C) set stop["signal"], so training
    stops at the next step boundary with a checkpoint; returns the old handlers.
    DataLoader workers ignore both (sampler.worker_init_fn)."""
    def _on_term(signum, frame):
        stop["signal"] = signal.Signals(signum).name

    return {sig: signal.signal(sig, _on_term) for sig in (signal.SIGTERM, signal.SIGINT)}


class _Window:
    """Loss / grad-norm sums between two log rows."""

    KEYS = ("loss", "n", "loss_rgb", "n_rgb", "loss_depth", "n_depth", "gn")

    def __init__(self):
        self.v = dict.fromkeys(self.KEYS, 0.0)
        self.samples = 0

    def add_micro(self, out: dict, task: torch.Tensor) -> None:
        self.v["loss"] += out["loss"].item()
        self.v["n"] += 1
        for t_id, key in ((TASK_RGB, "loss_rgb"), (TASK_DEPTH, "loss_depth")):
            if (task == t_id).any():
                self.v[key] += out[key].item()
                self.v["n_" + key[5:]] += 1

    def row(self, step: int, lr: float, world: int, device, ddp: bool, nsteps: int, dt: float, seen: int, elapsed: float) -> dict:
        """The metrics.csv row (losses averaged over ranks), then reset."""
        stats = torch.tensor([self.v[k] for k in self.KEYS], dtype=torch.float64)
        if ddp:
            stats = stats.to(device)
            dist.all_reduce(stats)
            stats = stats.cpu()
        row = {"step": step, "loss": stats[0].item() / max(stats[1].item(), 1),
               "loss_rgb": stats[2].item() / stats[3].item() if stats[3] else float("nan"),
               "loss_depth": stats[4].item() / stats[5].item() if stats[5] else float("nan"),
               "grad_norm": stats[6].item() / world / nsteps, "lr": lr,
               "samples_per_s": self.samples / max(dt, 1e-9), "samples_seen": seen, "elapsed_s": round(elapsed, 1)}
        self.__init__()
        return row


def accumulate_gradients(net, diffusion: GaussianDiffusion, stream, cfg: TrainConfig, noise_gen, device, ddp: bool, amp, win: _Window, step: int) -> int:
    """One optimizer step's forward/backward passes (cfg.grad_accum micro-batches); returns
    how many micro-batches it consumed. DDP syncs gradients on the last one only."""
    for k in range(cfg.grad_accum):
        batch = next(stream).to(device)
        task = choose_tasks(batch, cfg.depth_ratio, cfg.rgb_on_cond_targets, noise_gen, cfg.data.sampling).to(device)
        sync = not ddp or k == cfg.grad_accum - 1
        with (net.no_sync() if not sync else _null()), amp:
            out = diffusion.training_losses(net, batch, task, generator=noise_gen)
            loss = out["loss"] / cfg.grad_accum
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at step {step}; lower optim.lr or check the data")
        with (net.no_sync() if not sync else _null()):
            loss.backward()
        win.add_micro(out, task)
    return cfg.grad_accum


def _stop_reason(stop: dict, cfg: TrainConfig, elapsed_s: float, step: int, stop_after: int | None) -> str:
    """Why to stop after this step ("" = keep going): a signal, max_minutes or stop_after."""
    if stop["signal"]:
        return stop["signal"]
    if stop_after is not None and step >= stop_after:
        return "stop_after"
    if cfg.max_minutes > 0 and elapsed_s >= 60 * cfg.max_minutes:
        return "max_minutes"
    return ""


@dataclass
class _Run:
    """One process's training run, as `_set_up` builds it: configs, model and its training state."""

    cfg: TrainConfig  # resolved (`_resolve`)
    rank: int
    world: int
    device: torch.device
    ckpt_path: Path
    noise_gen: torch.Generator  # this rank's diffusion-noise / task stream
    model: MVGD
    mcfg: ModelConfig
    dcfg: DiffusionConfig
    diffusion: GaussianDiffusion
    ema: EMA
    opt: torch.optim.AdamW
    st: RunState
    net: torch.nn.Module  # the model, or its DDP wrapper
    stream: Iterator[MultiViewBatch]  # batch_stream: from the data position on, endless
    log: MetricsLog | None  # rank 0 only
    val_log: MetricsLog | None  # rank 0 only

    @property
    def ddp(self) -> bool:
        return self.world > 1


@dataclass
class _Loop:
    """The step loop's own state: autocast, clipped parameters, clocks, log window, progress bar."""

    amp: torch.autocast
    params: list
    per_step: int  # samples per optimizer step, all ranks
    t_start: float  # wall clock at the loop's start (this process)
    t_ckpt: float  # ... at the last checkpoint (ckpt_minutes)
    t_log: float  # ... at the last log row, shifted past validation (samples_per_s)
    win: _Window
    pbar: object | None  # tqdm on rank 0 with progress


def _set_up(cfg: TrainConfig) -> _Run:
    """Seeds, model, EMA, optimizer, resume state, data stream and run dir, in that order (the
    order fixes which RNG draws each consumes, so a resumed run matches a straight one)."""
    check_run_dir(cfg.run_dir)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    if cfg.keep_freed_memory:  # the trainer owns its process (and its DataLoader workers, forked after this)
        keep_freed_memory()
    rank, world, device = setup_distributed(cfg.device)
    run_dir = Path(cfg.run_dir)
    ckpt_path = run_dir / CHECKPOINT
    noise_gen = _seed_everything(cfg.seed, rank)

    model, mcfg, dcfg = build_model(cfg)
    cfg = _resolve(cfg, mcfg, dcfg, rank)
    diffusion = GaussianDiffusion(dcfg)
    model.to(device)
    ema = EMA(model, cfg.optim.ema_decay)
    opt = make_optimizer(model, cfg.optim)
    resume_from = _resume_path(cfg, ckpt_path)
    st = RunState() if resume_from is None else load_resume(resume_from, model, ema, opt, noise_gen, mcfg, dcfg, cfg, rank, world)

    ddp = world > 1
    net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if ddp else model
    ds = build_train_dataset(cfg.data, cfg.scene_reuse)
    if st.depth_median is None and rank == 0:
        st.depth_median = training_depth_median(ds)
    stream = batch_stream(ds, cfg, st.micro, rank, world)
    log = val_log = None
    if rank == 0:
        log, val_log = _open_run_dir(run_dir, cfg, st.step)
    return _Run(cfg, rank, world, device, ckpt_path, noise_gen, model, mcfg, dcfg, diffusion, ema, opt, st, net, stream, log, val_log)


def _start_loop(run: _Run, progress: bool) -> _Loop:
    """The loop state, clocks started now; a tqdm bar on rank 0 when `progress`."""
    cfg = run.cfg
    amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp and run.device.type == "cuda")
    params = [p for p in run.model.parameters() if p.requires_grad]
    t_start = time.time()
    pbar = None
    if run.rank == 0 and progress:
        from tqdm import tqdm
        pbar = tqdm(total=cfg.steps, initial=run.st.step, dynamic_ncols=True, mininterval=2.0, desc="train")
    return _Loop(amp, params, cfg.batch_size * cfg.grad_accum * run.world, t_start, t_start, t_start, _Window(), pbar)


def _optimizer_step(run: _Run, loop: _Loop) -> float:
    """One training step: LR, forward/backward over the micro-batches, clip, AdamW, EMA; returns the LR."""
    cfg, st = run.cfg, run.st
    lr = lr_at(st.step, cfg.optim, cfg.steps)
    for g in run.opt.param_groups:
        g["lr"] = lr
    st.micro += accumulate_gradients(run.net, run.diffusion, run.stream, cfg, run.noise_gen, run.device, run.ddp, loop.amp, loop.win, st.step)
    gn = torch.nn.utils.clip_grad_norm_(loop.params, cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf"))
    loop.win.v["gn"] += float(gn)
    run.opt.step()
    run.opt.zero_grad(set_to_none=True)
    run.ema.update(run.model, st.step)
    st.step += 1
    st.seen += loop.per_step
    loop.win.samples += loop.per_step
    return lr


def _log_step(run: _Run, loop: _Loop, lr: float, summary: dict) -> None:
    """A metrics.csv row every cfg.log_every steps and at the last one (into summary too); progress bar."""
    cfg, st = run.cfg, run.st
    if st.step % cfg.log_every == 0 or st.step == cfg.steps:
        now = time.time()
        nsteps = max(1, st.step - (summary.get("logged_step", st.step - cfg.log_every)))
        row = loop.win.row(st.step, lr, run.world, run.device, run.ddp, nsteps, now - loop.t_log, st.seen, st.elapsed0 + now - loop.t_start)
        summary.update(row, logged_step=st.step)
        loop.t_log = now
        if run.rank == 0:
            run.log.write(row)
            if loop.pbar is not None:
                loop.pbar.set_postfix(loss=f"{row['loss']:.4f}", sps=f"{row['samples_per_s']:.1f}", lr=f"{lr:.1e}", refresh=False)
    if loop.pbar is not None:
        loop.pbar.update(1)


def _maybe_validate(run: _Run, loop: _Loop, summary: dict) -> None:
    """Validation every cfg.val.every steps on rank 0 (the others wait); its time is not training time."""
    if run.cfg.val.every and run.st.step % run.cfg.val.every == 0:
        t_val = time.time()
        if run.rank == 0:
            vrow = validate(run.model, run.ema, run.dcfg, run.cfg, run.st.step, run.device, run.st.depth_median)
            run.val_log.write(vrow, prefix="val/")
            summary["val"] = vrow
            _print_val(vrow, loop.pbar)
        if run.ddp:
            dist.barrier()
        loop.t_log += time.time() - t_val  # throughput counts training time only


def _save(run: _Run, loop: _Loop) -> None:
    """The training checkpoint (rank 0 writes; every rank contributes its RNG state)."""
    rngs = gather_rngs(run.noise_gen, run.world)
    if run.rank == 0:
        state = checkpoint_state(run.cfg, run.mcfg, run.dcfg, run.model, run.ema, run.opt, run.st, rngs, run.world,
                                 run.st.elapsed0 + time.time() - loop.t_start)
        save_checkpoint(run.ckpt_path, state)
    if run.world > 1:
        dist.barrier()


def _checkpoint_or_stop(run: _Run, loop: _Loop, stop: dict, stop_after: int | None) -> bool:
    """Save when due (steps, minutes, the last step or a stop); True when every rank stops here."""
    cfg, st = run.cfg, run.st
    now = time.time()
    why = _stop_reason(stop, cfg, now - loop.t_start, st.step, stop_after)
    want_stop = any_rank(bool(why), run.world, run.device)  # every rank stops at the same step
    due = (cfg.ckpt_every and st.step % cfg.ckpt_every == 0) or (cfg.ckpt_minutes > 0 and now - loop.t_ckpt >= 60 * cfg.ckpt_minutes)
    if any_rank(bool(due), run.world, run.device) or want_stop or st.step == cfg.steps:
        _save(run, loop)
        loop.t_ckpt = time.time()
    if want_stop and run.rank == 0:
        print(f"\nstopping at step {st.step} ({why or 'another rank'}); resume with the same command", file=sys.stderr)
    return want_stop


def _close(run: _Run, loop: _Loop, old_handlers: dict) -> None:
    """Progress bar closed, signal handlers restored, TensorBoard writer closed."""
    if loop.pbar is not None:
        loop.pbar.close()
    for sig, handler in old_handlers.items():
        signal.signal(sig, handler)
    if run.log is not None and run.log.tb is not None:
        run.log.tb.close()


def train(cfg: TrainConfig, progress: bool = True, stop_after: int | None = None) -> dict:
    """Run (or resume) training to cfg.steps. Returns a summary dict (rank 0's view).

    stop_after: stop (with a checkpoint) once this many steps are done in total, keeping
    cfg.steps as the schedule horizon (tests: N/2 steps, resume, N/2 steps).
    """
    run = _set_up(cfg)
    stop = {"signal": None}  # name of the signal that asked for a graceful stop
    old_handlers = _catch_stop_signals(stop) if run.rank == 0 or not run.ddp else {}
    loop = _start_loop(run, progress)
    run.net.train()
    summary = {}
    try:
        while run.st.step < run.cfg.steps:
            lr = _optimizer_step(run, loop)
            _log_step(run, loop, lr, summary)
            _maybe_validate(run, loop, summary)
            if _checkpoint_or_stop(run, loop, stop, stop_after):
                break
    finally:
        _close(run, loop, old_handlers)
    st = run.st
    summary.update(step=st.step, samples_seen=st.seen, rank=run.rank, world_size=run.world, checkpoint=str(run.ckpt_path),
                   train_depth_median=st.depth_median,
                   weights_sha256=state_digest(unwrap(run.model).state_dict()), ema_sha256=state_digest(run.ema.shadow))
    return summary


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def validate(model: MVGD, ema: EMA, dcfg: DiffusionConfig, cfg: TrainConfig, step: int, device, train_median: float | None = None) -> dict:
    """EMA weights on held-out procedural scenes -> metrics row; grid PNG in run_dir/val/.

    The row holds mvgd_core.model_eval.flat_summary: per set ("cond", "novel") the mean and
    median over samples of AbsRel, RMSE and delta1, overall and per observability regime, for
    MVGD, the constant references (true median; training median when known) and, with
    val.baselines, mvs / plane sweep / reprojection on the same targets.
    Runs under fork_rng and its own generators: training RNG streams are untouched.
    """
    from mvgd_core.inference import MVGDPredictor
    from mvgd_core.model_eval import evaluate_samples, held_out_samples, save_grid
    from mvgd_core.refine import RefineConfig
    from mvgd_core.view_depth_fusion import FusionConfig
    from mvgd_core.view_synthesis import SynthesisConfig

    eval_model = MVGD(unwrap(model).cfg)
    ema.copy_to(eval_model)
    with torch.random.fork_rng(devices=[]):
        # the network's own output: the inference-only stages (refinement, view synthesis, fusion) would hide what training changed
        pred = MVGDPredictor(eval_model, dcfg, device=device, steps=cfg.val.sample_steps, refine=RefineConfig(enabled=False),
                             synthesis=SynthesisConfig(enabled=False), fusion=FusionConfig(enabled=False))
        v = cfg.val
        sets = {"cond": held_out_samples(cfg.data, v.num_samples, v.seed, v.num_views, "cond"),
                "novel": held_out_samples(cfg.data, v.num_samples, v.seed + 1, v.num_views, "novel")}
        res = evaluate_samples(pred, sets, steps=v.sample_steps, baselines=v.baselines, train_median=train_median)
    row = {"step": step, **res["summary"]}
    save_grid(Path(cfg.run_dir) / "val" / f"step{step:07d}.png", res, v.grid_samples)
    return row


def _print_val(row: dict, pbar=None) -> None:
    """One console line per validation: the observable regime first (the headline), medians."""
    def g(k):
        x = row.get(k, float("nan"))
        return "–" if x != x else f"{x:.3f}"

    parts = []
    for s in ("cond", "novel"):
        n = int(row.get(f"{s}/observable/n", 0))
        parts.append(f"{s}: observable n={n} AbsRel med {g(f'{s}/observable/mvgd/abs_rel_median')} "
                     f"δ1 med {g(f'{s}/observable/mvgd/delta1_median')} (GT-median const {g(f'{s}/observable/const_gt_median/abs_rel_median')}); "
                     f"all AbsRel med {g(f'{s}/mvgd/abs_rel_median')}")
    line = f"val step {row['step']}: " + " | ".join(parts)
    if pbar is not None:
        pbar.write(line, file=sys.stderr)
    else:
        print(line, file=sys.stderr)


# --------------------------------------------------------------------------- CLI


_SCALARS = {int: int, float: float, str: str, bool: bool}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mvgd-train", description="Train or fine-tune MVGD (see docs/TRAINING.md).")
    p.add_argument("--config", required=True, help="YAML TrainConfig (training/configs/*.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, dotted, value parsed as YAML (e.g. optim.lr=1e-4, data.sampling.max_views=5)")
    p.add_argument("--export", metavar="OUT.pt", help="after training, write the shipped EMA model (no optimizer) here")
    p.add_argument("--export-half", action="store_true", help="store the exported weights as float16 (half the file; how the shipped models are stored)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    hints = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    for name, tp in hints.items():  # every top-level scalar is a flag (improved-diffusion's add_dict_to_argparser)
        if tp in ("int", "float", "str", "bool"):
            p.add_argument("--" + name.replace("_", "-"), dest="cfg_" + name, default=None, metavar=tp.upper(),
                           help=f"config key {name} (default {getattr(TrainConfig, name, None) if not callable(getattr(TrainConfig, name, None)) else ''})")
    return p


def _yaml_value(item: str, val: str):
    try:
        return yaml.safe_load(val)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{item!r}: value is not valid YAML: {exc}") from exc


def overrides_from_args(args) -> dict:
    """Nested overrides from --set KEY=VALUE (dotted keys, YAML values) and the scalar flags."""
    out: dict = {}
    for item in args.set:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        key, val = item.split("=", 1)
        d = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            d = d.setdefault(part, {})
            if not isinstance(d, dict):
                raise ConfigError(f"--set {item!r}: {part} was given a value and sub-keys")
        d[parts[-1]] = _yaml_value(f"--set {item}", val)
    for k, v in vars(args).items():
        if k.startswith("cfg_") and v is not None:
            out[k[4:]] = _yaml_value(f"--{k[4:].replace('_', '-')} {v}", v)
            if k[4:] in ("run_dir", "init_from", "resume", "device"):
                out[k[4:]] = str(v)
    return out


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(TrainConfig, args.config, overrides_from_args(args))
        check_run_dir(cfg.run_dir)
    except ConfigError as exc:
        print(f"mvgd-train: config error: {exc}", file=sys.stderr)
        return 2
    try:
        summary = train(cfg, progress=not args.no_progress)
    except ConfigError as exc:
        print(f"mvgd-train: config error: {exc}", file=sys.stderr)
        return 2
    except CheckpointError as exc:
        print(f"mvgd-train: checkpoint error: {exc}", file=sys.stderr)
        return 3
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if summary.get("rank", 0) == 0:
        print(f"done: step {summary['step']}, checkpoint {summary['checkpoint']}")
        if args.export:
            print(f"exported {export_model(summary['checkpoint'], args.export, half=args.export_half)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
