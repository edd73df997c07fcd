"""MVGD trainer: one YAML config -> model + diffusion + data mixture -> resumable training run.

    python training/train.py --config training/configs/default.yaml --set optim.lr=1e-4
    torchrun --nproc_per_node=2 training/train.py --config ...          # DDP (gloo on CPU, nccl on CUDA)
    python training/train.py --config training/configs/finetune_tum.yaml --init-from models/mvgd_default.pt
    python training/train.py --config ... --init-from small.pt --grow-latents 128   # incremental fine-tuning

Single source of truth (improved-diffusion style): `TrainConfig` below. Every top-level scalar
field is also a CLI flag (`--run-dir`, `--steps`, `--init-from`, ...); any nested key is
`--set section.key=value` (value parsed as YAML). The resolved config is written to the run
dir and stored in every checkpoint.

Loop (nanoGPT style): warm-up + cosine LR set by hand each step, gradient accumulation,
clipping, AdamW, EMA; bf16 autocast on CUDA only. Tasks are mixed per sample: depth with
probability `depth_ratio`, RGB otherwise; a target that is also a conditioning view always
trains depth (its RGB is an input, a copy task), a target without valid depth always RGB.

Run dir: config.yaml, checkpoint.pt (full state, atomic, every few minutes and at the end),
metrics.csv (+ TensorBoard events when `tensorboard` is installed), val.csv, val/step*.png.
Resume is exact: model, optimizer, LR step, EMA, torch/numpy/python RNGs, the noise generator
and the data position (micro-batches consumed) are restored; N steps straight and N/2 + resume
+ N/2 give bit-identical weights on CPU (test/test_train.py).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import os
import random
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch.utils.data import DataLoader, Dataset, Sampler

from mvgd_core.checkpoint import (CheckpointError, configs_from_checkpoint, half_weights, load_checkpoint, model_from_checkpoint,
                                  save_checkpoint)
from mvgd_core.config import ConfigError, from_dict, load_config, to_dict
from mvgd_core.data.render import render_sequence
from mvgd_core.data.augment import AugmentConfig, pre_crop_hw
from mvgd_core.data.sampler import (DataConfig, MixtureDataset, ProceduralDataset, SequenceDataset, ViewCountBatchSampler, augment_rng,
                                    augmented_sample, depth_target_allowed, load_source_frames, select_views, worker_init_fn, _item)
from mvgd_core.data.types import MultiViewBatch, collate_samples
from mvgd_core.diffusion import TASK_DEPTH, TASK_RGB, DiffusionConfig, GaussianDiffusion
from mvgd_core.ema import EMA, unwrap
from mvgd_core.model import MVGD, PRESETS, ModelConfig, grow_latents

CHECKPOINT = "checkpoint.pt"


# --------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up to `lr`, then cosine decay to `min_lr` at TrainConfig.steps."""

    lr: float = 3e-4
    min_lr: float = 3e-5
    warmup_steps: int = 300
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0  # max global grad norm; 0 = no clipping
    ema_decay: float = 0.999

    def __post_init__(self):
        def bad(name, v, ok):
            if not (math.isfinite(v) and ok):
                raise ValueError(f"optim.{name} = {v} is out of range")
        bad("lr", self.lr, self.lr > 0)
        bad("min_lr", self.min_lr, 0 <= self.min_lr <= self.lr)
        bad("weight_decay", self.weight_decay, self.weight_decay >= 0)
        bad("grad_clip", self.grad_clip, self.grad_clip >= 0)
        bad("ema_decay", self.ema_decay, 0 <= self.ema_decay < 1)
        if self.warmup_steps < 0 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"optim.warmup_steps must be >= 0 and betas in [0, 1), got {self.warmup_steps}, {self.betas}")


@dataclass(frozen=True)
class ValConfig:
    """Periodic validation on held-out procedural scenes (seed disjoint from every training seed).

    Each check scores `num_samples` depth targets that are conditioning views, and as many novel
    targets (depth and RGB), with the EMA weights and `sample_steps` DDIM steps.
    """

    every: int = 1000  # optimizer steps; 0 = never
    num_samples: int = 8
    num_views: int = 3
    seed: int = 1_000_000
    sample_steps: int = 10
    grid_samples: int = 3  # rows written to val/step*.png
    baselines: bool = True  # also score mvs / plane sweep / reprojection on the same targets (a few seconds per check)


@dataclass(frozen=True)
class TrainConfig:
    model_preset: str = "small"  # mvgd_core.model.PRESETS
    model: dict = field(default_factory=dict)  # ModelConfig field overrides of the preset
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    data: DataConfig = field(default_factory=DataConfig)  # image_hw is taken from the model
    optim: OptimConfig = field(default_factory=OptimConfig)
    val: ValConfig = field(default_factory=ValConfig)
    run_dir: str = "runs/default"
    steps: int = 10_000  # total optimizer steps (the cosine horizon)
    max_minutes: float = 0.0  # stop (with a checkpoint) after this much wall time in this process; 0 = off
    batch_size: int = 16  # per rank and micro-step
    grad_accum: int = 1
    depth_ratio: float = 0.5  # P(depth) for novel targets; targets that are conditioning views always train depth
    rgb_on_cond_targets: bool = False  # also let targets that are conditioning views train RGB
    scene_reuse: int = 1  # >1: each rendered procedural scene serves this many consecutive items (batches unshuffled)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # bf16 autocast (CUDA only; CPU always float32)
    threads: int = 0  # torch intra-op threads; 0 = leave torch's default
    num_workers: int = 1  # DataLoader workers per rank
    log_every: int = 25
    ckpt_every: int = 0  # steps; 0 = time-based only
    ckpt_minutes: float = 5.0
    resume: str = "auto"  # auto (run_dir/checkpoint.pt if present) | never | <path>
    init_from: str = ""  # checkpoint to initialise weights from (fresh optimizer): fine-tuning
    grow_latents: int = 0  # with init_from: grow the model to this many latents first

    def __post_init__(self):
        if self.model_preset not in PRESETS:
            raise ValueError(f"model_preset {self.model_preset!r} unknown; choose from {sorted(PRESETS)}")
        if self.steps < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("steps, batch_size and grad_accum must be >= 1")
        if not 0.0 <= self.depth_ratio <= 1.0:
            raise ValueError(f"depth_ratio must be in [0, 1], got {self.depth_ratio}")
        if self.grow_latents and not self.init_from:
            raise ValueError("grow_latents needs init_from (the smaller model to grow)")
        train_seeds = {self.data.seed + i for i in range(len(self.data.sources))}
        if self.val.every and self.val.seed in train_seeds:
            raise ValueError(f"val.seed {self.val.seed} collides with a training data seed {sorted(train_seeds)}")


def model_config_for(cfg: TrainConfig) -> ModelConfig:
    """The preset with cfg.model overrides applied (keys and types checked)."""
    return from_dict(ModelConfig, {**to_dict(PRESETS[cfg.model_preset]), **cfg.model}, where="model")


def lr_at(step: int, o: OptimConfig, total: int) -> float:
    """Linear warm-up over warmup_steps, then cosine from lr to min_lr at `total` (pure function)."""
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    frac = min(1.0, (step - o.warmup_steps) / max(1, total - o.warmup_steps))
    return o.min_lr + 0.5 * (o.lr - o.min_lr) * (1.0 + math.cos(math.pi * frac))


# --------------------------------------------------------------------------- data


class SceneReuseDataset(Dataset):
    """Procedural items with each rendered scene shared by `reuse` consecutive indices.

    Rendering costs about as much as a training step of the small model on CPU; drawing several
    (conditioning set, target) pairs from one longer rendered sequence roughly halves data cost.
    Deterministic per index: the scene depends on (seed, index // reuse), the views and the
    augmentation (default off; scenes rendered at pre_crop_hw when it crops) on (seed, index).
    """

    def __init__(self, image_hw, sampling, procedural, length: int, seed: int, frames_per_scene: int, reuse: int,
                 augment: AugmentConfig = AugmentConfig()):
        self.image_hw, self.sampling, self.procedural = tuple(image_hw), sampling, procedural
        self.length, self.seed, self.reuse, self.augment = length, seed, reuse, augment
        self.frames = max(frames_per_scene, sampling.max_views + 2)
        self._cache: dict[int, list] = {}

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, item):
        idx, n, rng = _item(item, self.seed, self.sampling.min_views, self.sampling.max_views)
        sid = idx // self.reuse
        if sid not in self._cache:
            if len(self._cache) >= 8:
                self._cache.pop(next(iter(self._cache)))
            scene_seed = int(np.random.default_rng([self.seed, sid, 7]).integers(2**62))
            self._cache[sid] = render_sequence(scene_seed, self.frames, *pre_crop_hw(self.image_hw, self.augment), cfg=self.procedural)
        frames = self._cache[sid]
        cond, tgt = select_views(frames, n, rng, self.sampling)
        return augmented_sample(frames, cond, tgt, self.image_hw, self.augment, augment_rng(self.seed, idx))


def build_train_dataset(d: DataConfig, scene_reuse: int = 1) -> Dataset:
    """mvgd_core.data.sampler.build_dataset, with SceneReuseDataset for procedural sources when scene_reuse > 1."""
    datasets = []
    for i, src in enumerate(d.sources):
        if src.kind == "procedural" and scene_reuse > 1:
            datasets.append(SceneReuseDataset(d.image_hw, d.sampling, d.procedural, d.length, d.seed + i, d.frames_per_scene, scene_reuse, d.augment))
        elif src.kind == "procedural":
            datasets.append(ProceduralDataset(d.image_hw, d.sampling, d.procedural, d.length, d.seed + i, d.frames_per_scene, d.augment))
        else:
            datasets.append(SequenceDataset(load_source_frames(src), d.image_hw, d.sampling, d.length, d.seed + i, d.crop_to_aspect, d.augment))
    return datasets[0] if len(datasets) == 1 else MixtureDataset(datasets, [s.weight for s in d.sources], d.length, d.seed)


class _SkipFirst(Sampler):
    """The batches of `batch_sampler` after the first `skip` (resume mid-epoch without loading them)."""

    def __init__(self, batch_sampler, skip: int):
        self.bs, self.skip = batch_sampler, skip

    def __len__(self):
        return len(self.bs) - self.skip

    def __iter__(self):
        it = iter(self.bs)
        for _ in range(self.skip):
            next(it)
        yield from it


def batch_stream(ds: Dataset, cfg: TrainConfig, start: int, rank: int, world: int):
    """Endless MultiViewBatches for this rank, starting after `start` micro-batches (the data position).

    Ranks take disjoint batches (ViewCountBatchSampler rank/world_size); each item is a pure function
    of (seed, index), so worker scheduling never changes the data. The DataLoader gets its own
    generator so creating iterators never consumes the global torch RNG.
    """
    bs = ViewCountBatchSampler(len(ds), cfg.batch_size, cfg.data.sampling.min_views, cfg.data.sampling.max_views,
                               seed=cfg.seed, shuffle=cfg.scene_reuse <= 1, rank=rank, world_size=world)
    epoch, offset = divmod(start, len(bs))
    while True:
        bs.set_epoch(epoch)
        dl = DataLoader(ds, batch_sampler=_SkipFirst(bs, offset), collate_fn=collate_samples, num_workers=cfg.num_workers,
                        worker_init_fn=worker_init_fn, generator=torch.Generator().manual_seed(cfg.seed),
                        prefetch_factor=4 if cfg.num_workers else None, persistent_workers=False)
        yield from dl
        epoch, offset = epoch + 1, 0


def target_is_conditioning(batch: MultiViewBatch, tol: float = 1e-5) -> torch.Tensor:
    """(B,) bool: the target pose equals one of the conditioning poses."""
    diff = (batch.cond_T_wc - batch.tgt_T_wc[:, None]).abs().flatten(2).amax(-1)  # (B, N)
    return diff.amin(-1) <= tol


def choose_tasks(batch: MultiViewBatch, depth_ratio: float, rgb_on_cond_targets: bool, gen: torch.Generator, sampling=None) -> torch.Tensor:
    """(B,) long task per sample (see module docstring); draws from `gen` only.

    sampling: the data's ViewSamplingConfig; its observability control (min_observable_frac,
    monocular_share) turns unobservable depth targets into RGB (data.sampler.depth_target_allowed).
    """
    B = batch.tgt_rgb.shape[0]
    task = torch.where(torch.rand(B, generator=gen) < depth_ratio, TASK_DEPTH, TASK_RGB)
    if not rgb_on_cond_targets:
        task = torch.where(target_is_conditioning(batch).cpu(), TASK_DEPTH, task)
    has_depth = (batch.tgt_depth > 0).flatten(1).any(1).cpu()
    allowed = None if sampling is None else depth_target_allowed(batch.observability, sampling, gen, (task == TASK_DEPTH) & has_depth)
    if allowed is not None:
        has_depth = has_depth & allowed
    return torch.where(has_depth, task, TASK_RGB).long()


# --------------------------------------------------------------------------- state


def rng_state(noise_gen: torch.Generator) -> dict:
    """All RNG states as tensors / plain types (checkpoints load with weights_only=True)."""
    np_state = np.random.get_state()
    py = random.getstate()
    st = {"torch": torch.get_rng_state(), "noise": noise_gen.get_state(),
          "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
          "python": [py[0], list(py[1]), py[2]]}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict, noise_gen: torch.Generator) -> None:
    torch.set_rng_state(st["torch"])
    noise_gen.set_state(st["noise"])
    n = st["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))
    random.setstate((st["python"][0], tuple(st["python"][1]), st["python"][2]))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def export_model(ckpt_path, out_path, use_ema: bool = True, half: bool = False) -> Path:
    """Ship a checkpoint: EMA weights as "model", no optimizer/RNG/EMA copy (about 1/4 the size);
    `half`: weights stored as float16 (checkpoint.half_weights; another half of the size)."""
    ckpt = load_checkpoint(ckpt_path)
    weights = ckpt["ema"] if use_ema and isinstance(ckpt.get("ema"), dict) else ckpt["model"]
    train = dict(ckpt["config"].get("train") or {})
    state = {"config": {"model": ckpt["config"]["model"], "diffusion": ckpt["config"].get("diffusion") or {}, "train": train},
             "model": {k: v.clone() for k, v in weights.items()}, "step": int(ckpt.get("step", 0)),
             "weights": "ema" if weights is ckpt.get("ema") else "model",
             "elapsed_s": float(ckpt.get("elapsed_s", 0.0)), "samples_seen": int(ckpt.get("samples_seen", 0))}
    if ckpt.get("train_depth_median") is not None:  # the const_train_median reference of every evaluation
        state["train_depth_median"] = float(ckpt["train_depth_median"])
    if half:
        state = half_weights(state)
    model_from_checkpoint(state)  # refuses to ship weights that do not match the config
    save_checkpoint(out_path, state)
    os.chmod(out_path, 0o644)  # a shipped file, readable by the node's user
    return Path(out_path)


# --------------------------------------------------------------------------- distributed


def setup_distributed(device: str) -> tuple[int, int, torch.device]:
    """(rank, world_size, device). torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    want_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if want_cuda and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} requested but CUDA is not available")
    if world > 1:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if want_cuda:
            torch.cuda.set_device(local)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if want_cuda else "gloo")
        rank = dist.get_rank()
        dev = torch.device("cuda", local) if want_cuda else torch.device("cpu")
        return rank, dist.get_world_size(), dev
    dev = torch.device(device if device != "auto" else ("cuda" if want_cuda else "cpu"))
    return 0, 1, dev


def _all_true(flag: bool, world: int, device) -> bool:
    """Any rank's flag, agreed by all ranks (so they stop at the same step)."""
    if world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


# --------------------------------------------------------------------------- logging


class MetricsLog:
    """CSV (rank 0) with rows after a resumed step dropped, plus TensorBoard when importable."""

    def __init__(self, path: Path, resume_step: int, tb_dir: Path | None):
        self.path, self.fields, self.tb = path, None, None
        if path.exists():
            rows = list(csv.DictReader(path.open()))
            keep = [r for r in rows if int(float(r.get("step", 0))) <= resume_step]
            if keep or rows:
                self.fields = list(rows[0].keys()) if rows else None
                with path.open("w", newline="") as f:
                    if self.fields:
                        w = csv.DictWriter(f, self.fields)
                        w.writeheader()
                        w.writerows(keep)
        if tb_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(tb_dir))
            except Exception:  # tensorboard not installed: CSV only
                self.tb = None

    def write(self, row: dict, prefix: str = "") -> None:
        if self.fields is None:
            self.fields = list(row)
            with self.path.open("w", newline="") as f:
                csv.DictWriter(f, self.fields).writeheader()
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.fields, extrasaction="ignore").writerow(row)
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(prefix + k, v, row["step"])
            self.tb.flush()


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


def _check_resume(ckpt: dict, path, mcfg: ModelConfig, dcfg: DiffusionConfig, cfg: TrainConfig, world: int) -> list[str]:
    """CheckpointError when the checkpoint cannot continue this run; warnings for inexact resumes."""
    stored_m, stored_d = configs_from_checkpoint(ckpt)
    if stored_m != mcfg:
        new = to_dict(mcfg)
        diff = {k: (v, new[k]) for k, v in to_dict(stored_m).items() if new[k] != v}
        raise CheckpointError(f"{path}: model config does not match this run (checkpoint vs config: {diff}); "
                              f"use a new run_dir, or --init-from to fine-tune from it")
    if stored_d != dcfg:
        raise CheckpointError(f"{path}: diffusion config does not match this run: {to_dict(stored_d)} vs {to_dict(dcfg)}")
    for key in ("optimizer", "ema", "rng", "data"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: has no {key!r} state; it is an exported model, not a training checkpoint "
                                  f"(use --init-from to fine-tune from it)")
    warn = []
    old = ckpt["config"].get("train") or {}
    for k in ("batch_size", "grad_accum", "seed", "scene_reuse", "data"):
        if k in old and old[k] != to_dict(cfg)[k]:
            warn.append(f"{k} changed since the checkpoint: the resumed run is not an exact continuation")
    if ckpt["data"].get("world_size", 1) != world:
        warn.append(f"world size {ckpt['data'].get('world_size')} -> {world}: data order differs from a straight run")
    return warn


def state_digest(state: dict) -> str:
    """sha256 over a state dict's tensors (bitwise identity of weights across ranks / runs)."""
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(state.items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


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


@dataclass
class RunState:
    """What a checkpoint carries besides weights: progress counters and the training data's
    median depth (the const_train_median reference row of every evaluation)."""

    step: int = 0
    micro: int = 0  # micro-batches consumed (the data position)
    elapsed0: float = 0.0  # wall seconds of earlier processes of this run
    seen: int = 0  # samples seen
    depth_median: float | None = None


def load_resume(path: Path, model, ema, opt, noise_gen, mcfg, dcfg, cfg: TrainConfig, rank: int, world: int) -> RunState:
    """Restore model, EMA, optimizer and this rank's RNG streams from a training checkpoint."""
    ckpt = load_checkpoint(path)
    for w in _check_resume(ckpt, path, mcfg, dcfg, cfg, world):
        if rank == 0:
            print(f"warning: {w}", file=sys.stderr)
    model.load_state_dict(ckpt["model"])
    ema.load_state_dict(ckpt["ema"])
    try:
        opt.load_state_dict(ckpt["optimizer"])
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: optimizer state does not match the model: {exc}") from exc
    rng = ckpt["rng"]
    set_rng_state(rng[rank] if isinstance(rng, list) and rank < len(rng) else (rng[0] if isinstance(rng, list) else rng), noise_gen)
    return RunState(int(ckpt["step"]), int(ckpt["data"]["micro_batches"]), float(ckpt.get("elapsed_s", 0.0)),
                    int(ckpt.get("samples_seen", 0)), ckpt.get("train_depth_median"))


def training_depth_median(ds: Dataset, num: int = 48) -> float | None:
    """Median valid depth of the first `num` training items (mvgd_core.model_eval.dataset_depth_median),
    with every global RNG restored afterwards so training is bit-identical with or without it."""
    from mvgd_core.model_eval import dataset_depth_median

    gen = torch.Generator()
    saved = rng_state(gen)
    try:
        return dataset_depth_median(ds, min(num, len(ds)))
    except ValueError:  # no depth in the data
        return None
    finally:
        set_rng_state(saved, gen)


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


def _gather_rngs(noise_gen: torch.Generator, world: int) -> list:
    """This rank's RNG states, or every rank's under DDP (so a resume restores each noise stream)."""
    rngs = [rng_state(noise_gen)]
    if world > 1:
        gathered = [None] * world
        dist.all_gather_object(gathered, rngs[0])
        rngs = gathered
    return rngs


def checkpoint_state(cfg: TrainConfig, mcfg: ModelConfig, dcfg: DiffusionConfig, model, ema: EMA, opt, st: RunState,
                     rngs: list, world: int, elapsed_s: float) -> dict:
    """The full training checkpoint (exact resume): weights, EMA, optimizer, RNGs, data position."""
    state = {"config": {"model": to_dict(mcfg), "diffusion": to_dict(dcfg), "train": to_dict(cfg)},
             "model": unwrap(model).state_dict(), "ema": ema.state_dict(), "step": st.step,
             "optimizer": opt.state_dict(), "scheduler": {"kind": "warmup_cosine", "step": st.step},
             "rng": rngs if world > 1 else rngs[0], "data": {"micro_batches": st.micro, "world_size": world},
             "elapsed_s": elapsed_s, "samples_seen": st.seen}
    if st.depth_median is not None:
        state["train_depth_median"] = float(st.depth_median)
    return state


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
    rngs = _gather_rngs(run.noise_gen, run.world)
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
    want_stop = _all_true(bool(why), run.world, run.device)  # every rank stops at the same step
    due = (cfg.ckpt_every and st.step % cfg.ckpt_every == 0) or (cfg.ckpt_minutes > 0 and now - loop.t_ckpt >= 60 * cfg.ckpt_minutes)
    if _all_true(bool(due), run.world, run.device) or want_stop or st.step == cfg.steps:
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
