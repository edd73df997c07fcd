"""Exponential moving average of model weights (the weights we ship and sample with).

    ema = EMA(model, decay=0.999)
    ...optimizer.step(); ema.update(model, step)
    ema.copy_to(eval_model)                  # sample with the averaged weights
    state = ema.state_dict(); ema.load_state_dict(state)

The effective decay warms up as min(decay, (1 + step) / (10 + step)) so the average is not
dominated by the random initialisation early on (as in DDPM/ADM's EMA handling). Buffers are
copied, not averaged. Pure functions of (weights, step): bit-reproducible across resumes.
"""
from __future__ import annotations

import torch
from torch import nn


def ema_decay_at(step: int, decay: float) -> float:
    """Decay used for the update after optimizer step `step` (0-based)."""
    return min(decay, (1.0 + step) / (10.0 + step))


def unwrap(model: nn.Module) -> nn.Module:
    """The bare module of a DDP/compiled wrapper."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


class EMA:
    """Shadow copy (float32) of a model's parameters and buffers."""

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() for k, v in unwrap(model).state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = ema_decay_at(step, self.decay)
        for k, v in unwrap(model).state_dict().items():
            s = self.shadow[k]
            if v.dtype.is_floating_point:
                s.mul_(d).add_(v.detach().float(), alpha=1.0 - d)  # s = d s + (1 - d) v
            else:
                s.copy_(v)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> nn.Module:
        """Load the averaged weights into `model` (same architecture); returns it."""
        unwrap(model).load_state_dict({k: v.clone() for k, v in self.shadow.items()})
        return model

    def state_dict(self) -> dict:
        return {k: v.clone() for k, v in self.shadow.items()}

    def load_state_dict(self, state: dict) -> None:
        missing = sorted(set(self.shadow) - set(state))
        unexpected = sorted(set(state) - set(self.shadow))
        if missing or unexpected:
            raise KeyError(f"EMA state does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
        for k, v in state.items():
            if tuple(v.shape) != tuple(self.shadow[k].shape):
                raise ValueError(f"EMA state {k}: shape {tuple(v.shape)} != model {tuple(self.shadow[k].shape)}")
            self.shadow[k].copy_(v)
