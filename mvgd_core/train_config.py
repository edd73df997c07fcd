"""The trainer's configuration: one frozen dataclass tree, read from YAML (`mvgd_core.config.load_config`).

`TrainConfig` is the single source of truth (improved-diffusion style): every top-level scalar
field is also a CLI flag of `mvgd-train`, any nested key is `--set section.key=value`. The
resolved config is written to the run dir and stored in every checkpoint.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from mvgd_core.config import from_dict, to_dict
from mvgd_core.data.sampler import DataConfig
from mvgd_core.diffusion import DiffusionConfig
from mvgd_core.model import PRESETS, ModelConfig


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
    keep_freed_memory: bool = True  # glibc keeps freed host memory for the next step (mvgd_core/allocator.py): ~25 % faster on CPU
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
