"""Procedural solid textures for the scene renderer (torch, vectorized over hit points).

Textures are functions of a 3D point in the primitive's own frame, so a surface point has the
same albedo from every viewpoint: rendered views are exactly multi-view consistent. Hashing is
done on integer lattice coordinates (int64 arithmetic), so values are bit-exact across runs.

Texture kinds (`TEX_*`): flat colour, checker, stripes, value-noise (fBm) blend, and "marble"
(stripes warped by noise). Each material row is
    [a_r, a_g, a_b, b_r, b_g, b_b, kind, scale, dir_x, dir_y, dir_z, seed]  (MAT_DIM = 12)
with colours in [0, 1], scale in metres (period of the pattern), dir a unit vector (stripes).
"""
from __future__ import annotations

import numpy as np
import torch

TEX_FLAT, TEX_CHECKER, TEX_STRIPES, TEX_NOISE, TEX_MARBLE = 0, 1, 2, 3, 4
NUM_TEX = 5
MAT_DIM = 12

_MASK31 = 0x7FFFFFFF


def _hash3(ix: torch.Tensor, iy: torch.Tensor, iz: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """Uniform [0, 1] value per integer lattice point (int64 tensors, broadcastable)."""
    # Multiply-xorshift mixing; masking to 31 bits keeps every product inside int64.
    h = ((ix * 73856093) ^ (iy * 19349663) ^ (iz * 83492791) ^ (seed * 2654435761)) & _MASK31
    h = ((h ^ (h >> 13)) * 1274126177) & _MASK31
    h = h ^ (h >> 16)
    return (h & 0xFFFF).to(torch.float32) / 65535.0


def value_noise(p: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """Smooth 3D value noise in [0, 1]. p: (N, 3) lattice-unit coordinates; seed: (N,) int64."""
    f = torch.floor(p)
    i = f.to(torch.int64)
    w = p - f
    w = w * w * (3.0 - 2.0 * w)  # smoothstep: C1-continuous across cells
    ix, iy, iz = i.unbind(-1)
    wx, wy, wz = w.unbind(-1)
    out = torch.zeros_like(wx)
    for dx in (0, 1):
        fx = wx if dx else 1.0 - wx
        for dy in (0, 1):
            fy = wy if dy else 1.0 - wy
            for dz in (0, 1):
                fz = wz if dz else 1.0 - wz
                out = out + fx * fy * fz * _hash3(ix + dx, iy + dy, iz + dz, seed)
    return out


def fbm(p: torch.Tensor, seed: torch.Tensor, octaves: int = 3) -> torch.Tensor:
    """Fractal sum of value noise, normalized to [0, 1]. p: (N, 3); seed: (N,) int64."""
    total, amp, norm = torch.zeros_like(p[:, 0]), 1.0, 0.0
    for o in range(octaves):
        total = total + amp * value_noise(p * (2.0**o), seed + o)
        norm += amp
        amp *= 0.5
    return total / norm


def albedo(points: torch.Tensor, mats: torch.Tensor) -> torch.Tensor:
    """Albedo (N, 3) in [0, 1] of surface points (N, 3) (primitive frame, metres) with materials (N, MAT_DIM)."""
    a, b = mats[:, 0:3], mats[:, 3:6]
    kind = mats[:, 6].round().to(torch.int64)
    scale = mats[:, 7:8].clamp_min(1e-3)
    direction = mats[:, 8:11]
    seed = mats[:, 11].round().to(torch.int64)
    q = points / scale  # (N, 3) in pattern periods

    # One shared noise field gives fBm blends, marble warping and a fine grain on every kind.
    n = fbm(q * 2.0, seed)  # (N,)
    checker = (torch.floor(q).to(torch.int64).sum(-1) % 2).to(points.dtype)
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
