"""Spread the photometric refinement's corrections to the pixels it could not check.

Why (stop 15, a departure from the paper like the refinement itself; switch:
`RefineConfig.propagate_radius = 0`): the refinement replaces the network's depth only where a
window has texture and the sources agree (8-56 % of the pixels on our tuning sets). Its corrections there are
smooth across the image: the network's errors are mostly low-frequency (a surface a few per cent
too far, a wall tilted), not per-pixel noise. So the correction measured at the matched pixels is
a good guess for their untextured neighbours on the same surface, where the network's depth was
kept as it was.

How: a joint bilateral filter of the log-depth correction c = log(refined / net), known at the
matched pixels only (joint bilateral upsampling, Kopf et al., SIGGRAPH 2007, used to fill gaps;
normalised convolution, Knutsson & Westin, CVPR 1993). Per pixel p,

    spread(p) = sum_q a(q) w_s(p, q) w_c(p, q) c_cell(q) / (sum_q a(q) w_s w_c + prior)

over a disc of taps q `dilation` px apart, up to `radius` taps from p. Each tap stands for its
own dilation-wide cell, so a sparse match between taps is not missed: a(q) is the cell's matched
share and c_cell(q) its mean correction, both over the cell's pixels of q's colour. w_s is a
Gaussian in image distance, w_c one in colour distance to p (a colour edge usually is a depth
edge: no correction crosses it; at a novel view there is no image, so no colour term); `prior`
keeps the network's depth where few matches are near. Output: the refined depth on the matched
pixels, net * exp(spread) elsewhere. Spreading the correction, not the depth, keeps the
network's shape (a slanted floor stays slanted).

Settings chosen on tuning data the evaluation never uses (MODEL_CARD "Spreading the refinement's
corrections"). Shapes: depth (H, W) in pose units (0 = invalid), accepted (H, W) bool, guide
(3, H, W) in [0, 1] or None.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _gather(values: torch.Tensor, guide: torch.Tensor | None, weight: torch.Tensor, radius: int, dilation: int,
            sigma_colour: float, sigma_space: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted sums over the taps `dilation` px apart around every pixel, within `radius` taps
    (a disc, or the whole (2 radius + 1)^2 square when sigma_space is None):
    (sum w * values, sum w), each (H, W), with w = weight at the tap * a Gaussian of the tap's image
    distance (none when sigma_space is None) * a Gaussian of its colour distance to the pixel (none
    without a guide). Zero outside the image. One tap at a time over shifted views: materialising
    every tap (`F.unfold`) cost 5-9x more on the CPU, a row of taps as strided views 2x more."""
    H, W = values.shape
    pad = radius * dilation
    v = F.pad(values[None], (pad, pad, pad, pad))[0]
    a = F.pad(weight[None], (pad, pad, pad, pad))[0]
    g = None if guide is None else F.pad(guide[None], (pad, pad, pad, pad))[0]
    num, den = torch.zeros_like(values), torch.zeros_like(values)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if sigma_space is not None and dy * dy + dx * dx > radius * radius:  # a disc: the square's corners weigh little
                continue
            ys, xs = pad + dy * dilation, pad + dx * dilation
            w = a[ys : ys + H, xs : xs + W]
            if g is not None:
                w = (g[:, ys : ys + H, xs : xs + W] - guide).square_().sum(0).mul_(-0.5 / sigma_colour ** 2).exp_().mul_(w)
            if sigma_space is not None:
                w = w * math.exp(-((dy * dilation) ** 2 + (dx * dilation) ** 2) / (2 * sigma_space ** 2))
            den += w
            num.addcmul_(w, v[ys : ys + H, xs : xs + W])
    return num, den


def propagate_correction(net: torch.Tensor, refined: torch.Tensor, accepted: torch.Tensor, guide: torch.Tensor | None,
                         radius: int, dilation: int, sigma_colour: float, prior: float) -> torch.Tensor:
    """Depth (H, W): `refined` where `accepted`, elsewhere `net` times the spread correction (module doc).

    radius 0 returns `refined` unchanged (the switch). Pixels whose network depth is invalid
    (<= 0 or not finite) stay as they are and lend nothing."""
    if radius == 0 or not bool(accepted.any()):
        return refined
    ok = (net > 0) & torch.isfinite(net)
    src = accepted & ok & (refined > 0)
    corr = torch.where(src, torch.log(refined.clamp_min(1e-12) / net.where(ok, torch.ones_like(net))), torch.zeros_like(net))
    g = None if guide is None else guide.to(net.dtype)
    # 1. Every pixel first gathers the matches of its own (2 (dilation // 2) + 1)^2 cell, same
    # colour only, so the wide taps of step 2 (dilation px apart) miss no sparse match between them
    # and a cell does not carry a correction across a colour edge.
    r1 = dilation // 2
    num, den = _gather(corr, g, src.to(net.dtype), r1, 1, sigma_colour, None)
    share = den / (2 * r1 + 1) ** 2  # the cell's (colour-weighted) matched share
    cell = num / den.clamp_min(1e-12)
    # 2. A normalised convolution (Knutsson & Westin, CVPR 1993) of the cells' corrections over
    # the wide grid, weighted by share, image distance and colour; the outermost taps weigh
    # exp(-1.125) of the centre.
    num, den = _gather(cell, g, share, radius, dilation, sigma_colour, radius * dilation / 1.5)
    return torch.where(src | ~ok, refined, net * (num / (den + prior)).exp())
