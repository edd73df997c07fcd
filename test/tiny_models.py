"""Tiny models for tests: the shipped model's switches (matching path, decoder, scale input) at
16x32 with a few channels, so a forward pass takes milliseconds."""
import dataclasses

import torch

from mvgd_core.model import MVGD, PRESETS

TINY_MATCHING = dataclasses.replace(PRESETS["tiny"], image_size=(16, 32), scale_input=True, decoder=True, matching=True,
                                    match_channels=8, match_depths=8, match_width=16, match_out=8, decoder_width=8)


def tiny_matching_model(seed: int = 0, jitter: float = 0.05) -> MVGD:
    """A TINY_MATCHING model seeded with `seed`, its weights jittered by `jitter` x N(0, 1): a fresh
    model outputs exactly 0 everywhere, so tests of outputs want non-trivial weights (0: fresh)."""
    torch.manual_seed(seed)
    m = MVGD(TINY_MATCHING)
    if jitter:
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn_like(p) * jitter)
    return m
