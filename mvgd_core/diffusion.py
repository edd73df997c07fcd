"""Gaussian diffusion for MVGD: noise schedule, q_sample, preprocessing and training losses.

The network (model.py) and the noise process are separate objects (DiT / improved-diffusion
style): the trainer calls `diffusion.training_losses(model, batch, task)`; samplers
(sampler.py) read the schedule from here.

Model space: RGB [0, 1] -> [-1, 1]; depth (metres) -> SSN-normalized -> log-depth parameter
in [-1, 1] (ssn.depth_to_param), replicated over the 3 target channels (model.py).
Loss (paper): L2 on RGB, L1 on depth at valid GT pixels only, on the regression target
(v by default, epsilon as in the paper available: see DiffusionConfig.prediction_type).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from mvgd_core.data.types import MultiViewBatch
from mvgd_core.ssn import D_MAX, D_MIN, MIN_SCALE, depth_to_param, normalize_cameras, scale_features

TASK_RGB, TASK_DEPTH = 0, 1
TASKS = {"rgb": TASK_RGB, "depth": TASK_DEPTH}


@dataclass(frozen=True)
class DiffusionConfig:
    num_timesteps: int = 1000
    schedule: Literal["cosine", "linear"] = "cosine"
    # What the network outputs. The paper trains with noise ("epsilon") prediction. Epsilon gives
    # x0 = (x_t - sqrt(1 - a) eps) / sqrt(a), amplifying eps errors by 1/sqrt(a) at high noise,
    # and the log-depth parameter is unforgiving: 0.1 in P_D is a 46% depth error (2000^0.05).
    # Both epsilon and v (Salimans & Ho 2022) ask the network to reproduce the per-pixel noise,
    # which must cross the patch bottleneck (an 8x8x3 = 192-value patch becomes one 128-wide
    # token); "x0" asks for the clean target, which is smooth (depth) or low-dimensional, so
    # nothing noisy has to pass (Li & He 2025, "Back to Basics: Let Denoising Generative Models
    # Denoise"). Measured on the "small" preset after ~1300 steps of default.yaml (held-out
    # procedural, 10 DDIM steps): depth AbsRel at a conditioning view 5.0 with v, 2.2 with x0
    # (table in docs/ARCHITECTURE.md).
    prediction_type: Literal["epsilon", "v", "x0"] = "x0"
    d_min: float = D_MIN
    d_max: float = D_MAX
    ssn_min_scale: float = MIN_SCALE
    self_cond_prob: float = 0.5  # RIN: train with latent self-conditioning half of the time
    # Share of training samples at t = T - 1 (pure noise, zero SNR), the rest uniform in t. Every
    # sampler starts there, and there the answer must come from the conditioning views alone;
    # uniform t visits it 1/T of the time, so a young model learns to clean x_t long before it
    # learns to read the scene (measured: its first DDIM step was worse than a flat image, and
    # later steps copied that guess from x_t). Our choice; the paper samples t uniformly.
    terminal_prob: float = 0.25
    rgb_weight: float = 1.0
    depth_weight: float = 1.0
    # Issue 11 (defaults = the old training). match_weight: L1 on the cost volume's own soft-argmin
    # log-depth parameter at its resolution, for every sample with GT depth (MVSNet / SimpleRecon
    # supervise their volume directly; through the diffusion output alone it learns slowly).
    match_weight: float = 0.0
    # False: no depth loss for samples whose SSN scale was clamped (no baseline: depth is not
    # observable from the views, and the target would be a monocular guess in min_scale units).
    depth_loss_when_clamped: bool = True

    def __post_init__(self):
        if self.num_timesteps < 2:
            raise ValueError(f"DiffusionConfig.num_timesteps must be >= 2, got {self.num_timesteps}")
        if not 0 < self.d_min < self.d_max:
            raise ValueError(f"DiffusionConfig: need 0 < d_min < d_max, got {self.d_min}, {self.d_max}")
        if not 0.0 <= self.terminal_prob < 1.0:
            raise ValueError(f"DiffusionConfig.terminal_prob must be in [0, 1), got {self.terminal_prob}")
        if self.ssn_min_scale <= 0:
            raise ValueError(f"DiffusionConfig.ssn_min_scale must be positive, got {self.ssn_min_scale}")


# ---------------------------------------------------------------------- schedules (pure functions)


def cosine_alphas_cumprod(T: int, s: float = 0.008) -> np.ndarray:
    """Nichol & Dhariwal 2021, eq. 17: alpha_bar(t) = f(t) / f(0), f(t) = cos^2((t/T + s)/(1 + s) * pi/2).

    Betas are clipped at 0.999 (their Sec. 3.2) so the last step is not a singularity. (T,) float64.
    """
    steps = np.arange(T + 1, dtype=np.float64) / T
    f = np.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    betas = np.clip(1 - f[1:] / f[:-1], 0, 0.999)
    return np.cumprod(1 - betas)


def linear_alphas_cumprod(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """Ho et al. 2020 linear beta schedule, rescaled to T steps. (T,) float64."""
    scale = 1000 / T
    return np.cumprod(1 - np.linspace(scale * beta_start, scale * beta_end, T, dtype=np.float64))


# ---------------------------------------------------------------------- preprocessing


@dataclass
class ModelInputs:
    """Everything the network needs for one batch, in model space (see MVGD.forward)."""

    cond_rgb: torch.Tensor  # (B, N, 3, H, W) in [-1, 1]
    cond_K: torch.Tensor  # (B, N, 3, 3)
    cond_T: torch.Tensor  # (B, N, 4, 4) SSN-normalized
    tgt_K: torch.Tensor  # (B, 3, 3)
    tgt_T: torch.Tensor  # (B, 4, 4) identity after SSN
    scale: torch.Tensor  # (B,) SSN scale s (pose units per SSN unit)
    raw_scale: torch.Tensor | None = None  # (B,) s before the min_scale clamp
    scale_feats: torch.Tensor | None = None  # (B, 2) float32 ssn.scale_features: the model's scale input


def prepare_inputs(cond_rgb, cond_K, cond_T_wc, tgt_K, tgt_T_wc, min_scale: float = MIN_SCALE) -> ModelInputs:
    """RGB [0, 1] -> [-1, 1] and SSN on the cameras. Shapes as in MultiViewBatch."""
    cams = normalize_cameras(cond_T_wc, tgt_T_wc, min_scale)
    return ModelInputs(cond_rgb * 2 - 1, cond_K, cams.cond_T, tgt_K, cams.tgt_T, cams.scale, cams.raw_scale,
                       scale_features(cams.scale, cams.raw_scale, min_scale).to(cond_rgb.device))


def _masked_errors(err: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L1, L2) per sample (B,) of err (B, C, H, W) over mask's valid entries (at least 1)."""
    denom = (mask.sum(dim=(1, 2, 3)) * err.shape[1]).clamp_min(1.0)  # (B,) valid entries
    return (err.abs() * mask).sum(dim=(1, 2, 3)) / denom, (err.square() * mask).sum(dim=(1, 2, 3)) / denom


def target_x0(tgt_rgb, tgt_depth, scale, task, cfg: DiffusionConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean target in model space and its loss mask, per sample by task.

    tgt_rgb (B, 3, H, W) [0, 1]; tgt_depth (B, H, W) metres (0 = invalid); scale (B,); task (B,).
    Returns x0 (B, 3, H, W) in [-1, 1] and mask (B, 1, H, W): all ones for RGB samples,
    valid (finite, > 0) GT depth for depth samples.
    """
    valid = torch.isfinite(tgt_depth) & (tgt_depth > 0)  # (B, H, W)
    depth = torch.where(valid, tgt_depth, torch.zeros_like(tgt_depth)) / scale[:, None, None]
    p = depth_to_param(depth, cfg.d_min, cfg.d_max)
    p = torch.where(valid, p, torch.zeros_like(p))  # invalid pixels: mid-range filler, never in the loss
    is_depth = (task == TASK_DEPTH)[:, None, None, None]  # (B, 1, 1, 1)
    x0 = torch.where(is_depth, p[:, None].expand_as(tgt_rgb), tgt_rgb * 2 - 1)
    mask = torch.where(is_depth, valid[:, None].float(), torch.ones_like(valid[:, None], dtype=torch.float32))
    return x0, mask


# ---------------------------------------------------------------------- process


class GaussianDiffusion:
    def __init__(self, cfg: DiffusionConfig = DiffusionConfig()):
        self.cfg = cfg
        T = cfg.num_timesteps
        ac = cosine_alphas_cumprod(T) if cfg.schedule == "cosine" else linear_alphas_cumprod(T)
        self.alphas_cumprod = torch.tensor(ac, dtype=torch.float64)  # (T,)
        self.num_timesteps = T

    def _coef(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t)) shaped (B, 1, 1, 1) like `like`."""
        ac = self.alphas_cumprod.to(t.device)[t].to(like.dtype).view(-1, *([1] * (like.dim() - 1)))
        return ac.sqrt(), (1 - ac).sqrt()

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Forward process (DDPM eq. 4): x_t = sqrt(a_bar_t) x0 + sqrt(1 - a_bar_t) eps."""
        a, b = self._coef(t, x0)
        return a * x0 + b * noise

    def target(self, x0, t, noise) -> torch.Tensor:
        """What the network regresses: eps, x0, or v = sqrt(a_bar) eps - sqrt(1 - a_bar) x0."""
        if self.cfg.prediction_type == "epsilon":
            return noise
        if self.cfg.prediction_type == "x0":
            return x0
        a, b = self._coef(t, x0)
        return a * noise - b * x0

    def sample_timesteps(self, B: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B,) training timesteps: T - 1 with probability cfg.terminal_prob, else uniform in [0, T)."""
        t = torch.randint(0, self.num_timesteps, (B,), generator=generator)
        terminal = torch.rand(B, generator=generator) < self.cfg.terminal_prob
        return torch.where(terminal, torch.full_like(t, self.num_timesteps - 1), t)

    def training_losses(self, model, batch: MultiViewBatch, task: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Loss of `model` on `batch`, one task per sample (task (B,) long: 0 rgb, 1 depth).

        Returns {"loss": scalar to backprop, "loss_rgb", "loss_depth": per-task means (0 when the
        batch has no sample of that task), "t": (B,) timesteps used}.
        """
        cfg = self.cfg
        dev = batch.cond_rgb.device
        B = batch.cond_rgb.shape[0]
        task = task.to(dev).long()
        inp = prepare_inputs(batch.cond_rgb, batch.cond_K, batch.cond_T_wc, batch.tgt_K, batch.tgt_T_wc, cfg.ssn_min_scale)
        x0, mask = target_x0(batch.tgt_rgb, batch.tgt_depth, inp.scale, task, cfg)
        mask = self._unclamped_depth_mask(mask, inp, task)

        t = self.sample_timesteps(B, generator).to(dev)
        noise = torch.randn(x0.shape, generator=generator).to(dev)
        x_t = self.q_sample(x0, t, noise)
        args = (x_t, t, task, inp.cond_rgb, inp.cond_K, inp.cond_T, inp.tgt_K, inp.tgt_T)

        kw = self._scene_kwargs(model, inp)
        core = getattr(model, "module", model)  # a DDP wrapper's network
        want_ctx = cfg.match_weight > 0 and getattr(getattr(core, "cfg", None), "matching", False)
        latents_sc = None
        # Latent self-conditioning (RIN): half the time, a no-grad first pass supplies latents_sc.
        if cfg.self_cond_prob > 0 and torch.rand((), generator=generator).item() < cfg.self_cond_prob:
            with torch.no_grad():
                _, latents_sc = model(*args, latents_sc=None, **kw)
            latents_sc = latents_sc.detach()
        out = model(*args, latents_sc=latents_sc, **kw, **({"return_context": True} if want_ctx else {}))
        pred, ctx = out[0], (out[2] if want_ctx else None)  # the context forward used: also under DDP

        l1, l2 = _masked_errors(pred.float() - self.target(x0, t, noise), mask)
        is_depth = task == TASK_DEPTH
        per_sample = torch.where(is_depth, cfg.depth_weight * l1, cfg.rgb_weight * l2)  # (B,)
        zero = per_sample.sum() * 0
        loss = per_sample.mean()
        loss_match = zero
        if want_ctx and ctx is not None and ctx.match is not None:
            loss_match = self.match_loss(ctx.match.depth, batch.tgt_depth, inp.scale)
            loss = loss + cfg.match_weight * loss_match
        return {
            "loss": loss,
            "loss_rgb": l2[~is_depth].mean() if (~is_depth).any() else zero,
            "loss_depth": l1[is_depth].mean() if is_depth.any() else zero,
            "loss_match": loss_match,
            "t": t,
        }

    def _unclamped_depth_mask(self, mask: torch.Tensor, inp, task: torch.Tensor) -> torch.Tensor:
        """mask (B, C, H, W) with the depth samples whose SSN scale was clamped left out, unless
        cfg.depth_loss_when_clamped: their depth target is ill-posed (issue 11)."""
        if self.cfg.depth_loss_when_clamped or inp.raw_scale is None:
            return mask
        clamped = (inp.raw_scale < self.cfg.ssn_min_scale).to(mask.dtype)[:, None, None, None]  # (B, 1, 1, 1)
        return mask * (1 - clamped * (task == TASK_DEPTH).to(mask.dtype)[:, None, None, None])

    @staticmethod
    def _scene_kwargs(model, inp) -> dict:
        """The model's keyword inputs that do not depend on t, computed once for both passes (a DDP
        wrapper, which has no encode_scene, computes them inside its forward)."""
        kw = {"scale_feats": inp.scale_feats}
        if hasattr(model, "encode_scene"):
            kw["scene_tokens"] = model.encode_scene(inp.cond_rgb, inp.cond_K, inp.cond_T)
            if getattr(model.cfg, "decoder", False):
                kw["context"] = model.encode_context(inp.cond_rgb, inp.cond_K, inp.cond_T, inp.tgt_K)
        return kw

    def match_loss(self, match_depth: torch.Tensor, tgt_depth: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """L1 between the cost volume's depth (B, 1, h, w) SSN units and GT depth (B, H, W) metres,
        in the log-depth parameter, at the matching resolution (GT: nearest at cell centres)."""
        cfg = self.cfg
        h, w = match_depth.shape[-2:]
        gt = torch.nn.functional.interpolate(tgt_depth[:, None].float(), size=(h, w), mode="nearest")  # (B, 1, h, w)
        valid = torch.isfinite(gt) & (gt > 0)
        gt_p = depth_to_param(torch.where(valid, gt, torch.ones_like(gt)) / scale.view(-1, 1, 1, 1), cfg.d_min, cfg.d_max)
        err = (depth_to_param(match_depth.float(), cfg.d_min, cfg.d_max) - gt_p).abs() * valid
        return err.sum() / valid.sum().clamp_min(1)
