"""Procedural solid textures for the scene renderer (torch, vectorized over hit points).

Textures are functions of a 3D point in the primitive's own frame, so a surface point has the
same albedo from every viewpoint: rendered views are exactly multi-view consistent. Noise is a
lookup in a fixed random lattice (seeded once), so textures are identical across runs.

Texture kinds (`TEX_*`): flat colour, checker, stripes, value-noise (fBm) blend, and "marble"
(stripes warped by noise). Each material row is
    [a_r, a_g, a_b, b_r, b_g, b_b, kind, scale, dir_x, dir_y, dir_z, seed]  (MAT_DIM = 12)
with colours in [0, 1], scale in metres (period of the pattern), dir a unit vector (stripes).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

TEX_FLAT, TEX_CHECKER, TEX_STRIPES, TEX_NOISE, TEX_MARBLE = 0, 1, 2, 3, 4
NUM_TEX = 5
MAT_DIM = 12

_RES = 32  # lattice period of the noise volume


def _noise_volume() -> torch.Tensor:
    """(1, 1, RES+1, RES+1, RES+1) random lattice values, periodic (last slice = first), fixed seed."""
    v = np.random.default_rng(20250118).random((_RES, _RES, _RES)).astype(np.float32)
    v = np.pad(v, ((0, 1), (0, 1), (0, 1)), mode="wrap")
    return torch.from_numpy(v)[None, None]


_VOLUME = _noise_volume()
_GOLDEN = torch.tensor([0.6180339887, 0.7548776662, 0.5698402910])  # per-seed lattice offsets (R2/R3 sequence)


def value_noise(p: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """Smooth 3D value noise in [0, 1]: trilinear lookup in a fixed periodic random lattice.

    p: (N, 3) lattice-unit coordinates; seed: (N,) per-point seeds shifting the lattice so
    materials get different patterns. One grid_sample call: far cheaper than hashing corners.
    """
    off = torch.frac(seed.to(torch.float32)[:, None] * _GOLDEN) * _RES
    q = torch.remainder(p + off, _RES) * (2.0 / _RES) - 1.0  # [-1, 1): align_corners maps +-1 to slices 0 and RES
    out = F.grid_sample(_VOLUME, q.view(1, 1, 1, -1, 3), mode="bilinear", padding_mode="border", align_corners=True)
    return out.view(-1)


def fbm(p: torch.Tensor, seed: torch.Tensor, octaves: int = 3) -> torch.Tensor:
    """Fractal sum of value noise, normalized to [0, 1]. p: (N, 3); seed: (N,) float seeds."""
    total, amp, norm = torch.zeros_like(p[:, 0]), 1.0, 0.0
    for o in range(octaves):
        total = total + amp * value_noise(p * (2.0**o), seed + o)
        norm += amp
        amp *= 0.5
    return total / norm


def albedo(points: torch.Tensor, mats: torch.Tensor) -> torch.Tensor:
    """Albedo (N, 3) in [0, 1] of surface points (N, 3) (primitive frame, metres) with materials (N, MAT_DIM)."""
    a, b = mats[:, 0:3], mats[:, 3:6]
    kind = mats[:, 6].round()
    scale = mats[:, 7:8].clamp_min(1e-3)
    direction = mats[:, 8:11]
    seed = mats[:, 11]
    q = points / scale  # (N, 3) in pattern periods

    # One shared noise field gives fBm blends, marble warping and a fine grain on every kind.
    n = fbm(q * 2.0, seed, octaves=2)  # (N,)
    checker = torch.remainder(torch.floor(q).sum(-1), 2.0)
    phase = (q * direction).sum(-1)
    stripes = (torch.sin(2 * np.pi * phase) > 0).to(points.dtype)
    marble = 0.5 + 0.5 * torch.sin(2 * np.pi * (phase + 1.5 * n))

    mix = torch.zeros_like(n)
    mix = torch.where(kind == TEX_CHECKER, checker, mix)
    mix = torch.where(kind == TEX_STRIPES, stripes, mix)
    mix = torch.where(kind == TEX_NOISE, n.clamp(0.2, 0.8).sub(0.2).div(0.6), mix)
    mix = torch.where(kind == TEX_MARBLE, marble, mix)
    col = a + (b - a) * mix.unsqueeze(-1)
    grain = 0.85 + 0.3 * n.unsqueeze(-1)  # subtle texture everywhere, so flat faces are not blank
    return (col * grain).clamp(0.0, 1.0)


def random_material(rng: np.random.Generator, kinds=(TEX_FLAT, TEX_CHECKER, TEX_STRIPES, TEX_NOISE, TEX_MARBLE), scale=(0.1, 1.0)) -> np.ndarray:
    """One random material row (MAT_DIM,) from a numpy Generator: two colours, a kind, a scale."""
    a = rng.uniform(0.05, 0.95, 3)
    # second colour: a contrasting variant (shifted hue/brightness) so patterns are visible
    delta = rng.uniform(-0.6, 0.6, 3)
    delta *= max(1.0, 0.3 / max(np.abs(delta).mean(), 1e-6))  # at least ~0.3 mean contrast
    b = np.clip(a + delta, 0.02, 0.98)
    kind = float(rng.choice(kinds))
    s = float(np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1]))))
    d = rng.normal(size=3)
    d = d / np.linalg.norm(d)
    return np.concatenate([a, b, [kind, s], d, [float(rng.integers(0, 2**20))]])
