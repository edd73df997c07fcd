"""DDIM (and DDPM) sampling, diffusers style: the scheduler lives apart from the model.

    sampler = DDIMSampler(diffusion, eta=0.0)
    sampler.set_timesteps(10)
    x0 = sampler.sample(model_fn, (B, 3, H, W), generator=torch.Generator().manual_seed(0))

`model_fn(x_t, t, latents_sc) -> (model_output, latents)` wraps the network (inference.py
binds the scene tokens); passing the previous step's latents back in is RIN's latent
self-conditioning. DDIM and DDPM differ only in `step`.

References: DDIM = Song, Meng, Ermon, "Denoising Diffusion Implicit Models", ICLR 2021;
DDPM = Ho, Jain, Abbeel, NeurIPS 2020.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from mvgd_core.diffusion import GaussianDiffusion

ModelFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], "tuple[torch.Tensor, torch.Tensor | None]"]


@dataclass
class StepOutput:
    prev_sample: torch.Tensor  # x_{t_prev} (B, C, H, W)
    pred_original_sample: torch.Tensor  # x0 estimate (B, C, H, W)


def _randn(shape, generator: torch.Generator | None, device, dtype) -> torch.Tensor:
    """Noise drawn on the generator's device, then moved: a CPU generator gives the same
    numbers whatever device the model runs on."""
    gen_dev = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(shape, generator=generator, device=gen_dev, dtype=torch.float32).to(device=device, dtype=dtype)


class DDIMSampler:
    def __init__(self, diffusion: GaussianDiffusion, eta: float = 0.0, clip_sample: bool = True):
        self.alphas_cumprod = diffusion.alphas_cumprod  # (T,) float64
        self.num_train_timesteps = diffusion.num_timesteps
        self.prediction_type = diffusion.cfg.prediction_type
        self.eta = eta
        self.clip_sample = clip_sample  # model space is [-1, 1] for both RGB and log-depth
        self.set_timesteps(min(50, self.num_train_timesteps))

    def set_timesteps(self, num_inference_steps: int) -> None:
        """Evenly spaced timesteps, "trailing" spacing (Lin et al. 2024, Table 2): the first step
        is t = T - 1, so sampling starts from the pure-noise level the model was trained on."""
        T = self.num_train_timesteps
        if not 1 <= num_inference_steps <= T:
            raise ValueError(f"num_inference_steps must be in [1, {T}], got {num_inference_steps}")
        ts = torch.round(torch.arange(T, 0, -T / num_inference_steps, dtype=torch.float64)).long() - 1
        self.timesteps = ts[:num_inference_steps]  # descending, e.g. [999, 899, ..., 99]
        self.num_inference_steps = num_inference_steps
        self._prev = {int(a): int(b) for a, b in zip(self.timesteps, torch.cat([self.timesteps[1:], torch.tensor([-1])]))}

    def _alphas(self, t: int) -> tuple[float, float, int]:
        prev_t = self._prev[int(t)]
        a_t = float(self.alphas_cumprod[t])
        a_prev = float(self.alphas_cumprod[prev_t]) if prev_t >= 0 else 1.0  # "set_alpha_to_one"
        return a_t, a_prev, prev_t

    def _x0_eps(self, model_output, t: int, x_t):
        """x0 and eps from the network output (epsilon, v or x0 prediction); x0 clipped to [-1, 1]."""
        a_t = float(self.alphas_cumprod[t])
        sa, sb = a_t ** 0.5, (1 - a_t) ** 0.5
        if self.prediction_type == "epsilon":
            x0 = (x_t - sb * model_output) / sa  # DDIM eq. 12, "predicted x0" term (eq. 9 inverted)
        elif self.prediction_type == "v":
            x0 = sa * x_t - sb * model_output  # v-prediction (Salimans & Ho 2022, Sec. 4)
        else:
            x0 = model_output  # x0-prediction: the network's output is the clean target
        if self.clip_sample:
            x0 = x0.clamp(-1, 1)
        eps = (x_t - sa * x0) / sb  # re-derived from the (clipped) x0 so x_prev stays consistent with it
        return x0, eps

    def step(self, model_output: torch.Tensor, t: int, x_t: torch.Tensor, generator: torch.Generator | None = None) -> StepOutput:
        """One DDIM update x_t -> x_{t_prev} (Song et al. 2021):
        1. x0 = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)                               (eq. 12, first term)
        2. sigma_t = eta * sqrt((1 - a_prev) / (1 - a_t)) * sqrt(1 - a_t / a_prev)  (eq. 16)
        3. x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma_t^2) eps + sigma_t z  (eq. 12)
        eta = 0 is the deterministic DDIM; eta = 1 matches DDPM's posterior variance.
        """
        a_t, a_prev, _ = self._alphas(t)
        x0, eps = self._x0_eps(model_output, t, x_t)
        sigma = self.eta * ((1 - a_prev) / (1 - a_t)) ** 0.5 * (1 - a_t / a_prev) ** 0.5
        x_prev = a_prev ** 0.5 * x0 + max(1 - a_prev - sigma ** 2, 0.0) ** 0.5 * eps
        if sigma > 0:
            x_prev = x_prev + sigma * _randn(x_t.shape, generator, x_t.device, x_t.dtype)
        return StepOutput(x_prev, x0)

    @torch.no_grad()
    def sample(self, model_fn: ModelFn, shape: tuple[int, ...], generator: torch.Generator | None = None,
               device="cpu", dtype=torch.float32, num_inference_steps: int | None = None,
               self_condition: bool = True) -> torch.Tensor:
        """Full reverse process from x_T ~ N(0, I) to x0 (B, C, H, W), float32.

        Deterministic for a seeded `generator` (and eta = 0: the only randomness is x_T).
        """
        if num_inference_steps is not None:
            self.set_timesteps(num_inference_steps)
        x = _randn(shape, generator, device, dtype)
        latents = None  # no self-conditioning at the first step (RIN)
        for t in self.timesteps.tolist():
            tt = torch.full((shape[0],), t, device=device, dtype=torch.long)
            out, lat = model_fn(x, tt, latents if self_condition else None)
            latents = lat
            x = self.step(out.to(x.dtype), t, x, generator).prev_sample
        return x.float()


class DDPMSampler(DDIMSampler):
    """Ancestral sampling (DDPM), generalized to strided timesteps: only `step` differs."""

    def step(self, model_output: torch.Tensor, t: int, x_t: torch.Tensor, generator: torch.Generator | None = None) -> StepOutput:
        """Sample the posterior q(x_prev | x_t, x0) (Ho et al. 2020, eqs. 6-7), with
        beta = 1 - a_t / a_prev the effective beta of the (possibly strided) step."""
        a_t, a_prev, prev_t = self._alphas(t)
        x0, _ = self._x0_eps(model_output, t, x_t)
        beta = 1 - a_t / a_prev
        mean = (a_prev ** 0.5 * beta / (1 - a_t)) * x0 + ((1 - beta) ** 0.5 * (1 - a_prev) / (1 - a_t)) * x_t  # eq. 7
        if prev_t < 0:
            return StepOutput(mean, x0)
        var = (1 - a_prev) / (1 - a_t) * beta  # eq. 7, beta tilde
        return StepOutput(mean + var ** 0.5 * _randn(x_t.shape, generator, x_t.device, x_t.dtype), x0)
