"""Raymaps: per-pixel ray origins and directions, Fourier encoding, one token per image patch.

Convention (see cameras.py): OpenCV optical cameras, camera-to-world poses T_wc (..., 4, 4)
expressed in a *reference frame* (after SSN: the target camera's frame, scene-scale units).
A pixel (u, v) has origin o = t (the camera centre) and direction r = R K^-1 [u, v, 1]^T,
normalized to unit length (the paper's r = (K R)^-1 [u, v, 1]^T written for camera-to-world R).

Patch tokens (our choice; the paper does not say how raymaps meet patch features): each patch
gets the Fourier encoding of its *centre* ray plus the raw unit directions of its four corner
pixels. The centre ray places the patch in space; the corner directions (12 numbers) tell the
output head how wide the patch's pixel footprint is (focal length, aspect) so it can place
p x p pixels inside it. Concatenating the encodings of all p*p pixels (8x8x(3+3)x(2*bands+1))
would cost ~20x more channels and, for a pinhole camera, carries the same information.
"""
from __future__ import annotations

import math

import torch


def pixel_rays(K: torch.Tensor, T_wc: torch.Tensor, uv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through pixel coordinates `uv` (M, 2) for cameras K (..., 3, 3), T_wc (..., 4, 4).

    Returns (origins (..., M, 3), unit directions (..., M, 3)) in the frame T_wc maps into.
    """
    uv1 = torch.cat([uv, torch.ones_like(uv[:, :1])], dim=-1).to(K.dtype)  # (M, 3)
    K_inv = torch.linalg.inv(K)  # (..., 3, 3)
    d_cam = uv1 @ K_inv.transpose(-1, -2)  # (..., M, 3), z = 1
    R, t = T_wc[..., :3, :3], T_wc[..., :3, 3]
    d = d_cam @ R.transpose(-1, -2)  # (..., M, 3) rotated into the reference frame
    d = d / d.norm(dim=-1, keepdim=True)
    o = t.unsqueeze(-2).expand_as(d)  # (..., M, 3): a pinhole has one centre
    return o, d


def ray_maps(K: torch.Tensor, T_wc: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense raymap: (origins (..., H, W, 3), unit directions (..., H, W, 3))."""
    v, u = torch.meshgrid(torch.arange(height, dtype=K.dtype, device=K.device),
                          torch.arange(width, dtype=K.dtype, device=K.device), indexing="ij")
    uv = torch.stack([u, v], dim=-1).reshape(-1, 2)  # (H*W, 2)
    o, d = pixel_rays(K, T_wc, uv)
    shape = (*o.shape[:-2], height, width, 3)
    return o.reshape(shape), d.reshape(shape)


def fourier_encode(x: torch.Tensor, num_bands: int, max_freq: float) -> torch.Tensor:
    """Perceiver-style Fourier features: [x, sin(pi f x), cos(pi f x)] for f in linspace(1, max_freq/2).

    x: (..., D) -> (..., D * (2 * num_bands + 1)). Inputs are expected roughly in [-1, 1]
    (SSN puts every camera centre there); the highest band resolves ~1/max_freq of that range.
    """
    freqs = torch.linspace(1.0, max_freq / 2, num_bands, device=x.device, dtype=x.dtype)  # (F,)
    xf = x.unsqueeze(-1) * freqs * math.pi  # (..., D, F)
    enc = torch.cat([xf.sin(), xf.cos()], dim=-1).flatten(-2)  # (..., D*2F)
    return torch.cat([x, enc], dim=-1)


def raymap_channels(origin_bands: int, dir_bands: int) -> int:
    """Channels of one patch token from `patch_raymap`."""
    return 3 * (2 * origin_bands + 1) + 3 * (2 * dir_bands + 1) + 12


def patch_uv(height: int, width: int, patch: int, device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates of patch centres (P, 2) and of patch corners (P, 4, 2), row-major patches.

    With pixel centres at integer coordinates, the centre of the patch covering pixels
    [j*p, (j+1)*p) is j*p + (p - 1) / 2; its corner pixels are j*p and j*p + p - 1.
    """
    gh, gw = height // patch, width // patch
    pv, pu = torch.meshgrid(torch.arange(gh, device=device, dtype=dtype), torch.arange(gw, device=device, dtype=dtype), indexing="ij")
    u0, v0 = (pu * patch).reshape(-1), (pv * patch).reshape(-1)  # (P,)
    c = (patch - 1) / 2
    centres = torch.stack([u0 + c, v0 + c], dim=-1)  # (P, 2)
    e = patch - 1
    corners = torch.stack([torch.stack([u0 + du, v0 + dv], -1) for du, dv in ((0, 0), (e, 0), (0, e), (e, e))], dim=1)  # (P, 4, 2)
    return centres, corners


def patch_raymap(K: torch.Tensor, T_wc: torch.Tensor, height: int, width: int, patch: int,
                 origin_bands: int, dir_bands: int, max_freq: float) -> torch.Tensor:
    """Raymap tokens aligned with the patch grid (row-major, like Conv2d patchify + flatten).

    K (..., 3, 3) for an image of (height, width); T_wc (..., 4, 4) in the reference frame.
    Returns (..., P, raymap_channels(origin_bands, dir_bands)) with P = (H/p) * (W/p).
    """
    centres, corners = patch_uv(height, width, patch, K.device, K.dtype)
    P = centres.shape[0]
    o, d = pixel_rays(K, T_wc, torch.cat([centres, corners.reshape(-1, 2)], dim=0))  # (..., 5P, 3)
    o_c, d_c = o[..., :P, :], d[..., :P, :]  # (..., P, 3) centre rays
    d_corner = d[..., P:, :].reshape(*d.shape[:-2], P, 12)  # (..., P, 4*3) corner directions
    return torch.cat([fourier_encode(o_c, origin_bands, max_freq), fourier_encode(d_c, dir_bands, max_freq), d_corner], dim=-1)
