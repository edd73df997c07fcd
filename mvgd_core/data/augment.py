"""Training-time augmentation of multi-view samples: colour, crop + rescale, view order.

Everything is off by default (`AugmentConfig()`), so configs without an `augment:` section
and the shipped model's recipe produce bit-identical samples. Pure functions; the caller
passes a numpy Generator that depends on (seed, index) only (sampler.augment_rng), so samples
stay deterministic and independent of DataLoader worker assignment.

Per sample (mvgd_core.data.sampler.augmented_sample), after view selection:
1. view order: the conditioning views are permuted (a target that is also a conditioning view
   moves with its copy; the trainer finds it by pose, train.py).
2. crop + rescale: each distinct selected frame gets its own random window (zoom-in, scale
   jitter), resized to the sample size; K follows exactly (cameras.crop_intrinsics, then
   cameras.resize_intrinsics); depth is resampled nearest at the exact pixel centres: each
   value is a real measurement from within half a source pixel of the new pixel's ray, never
   a mix of foreground and background.
3. colour: brightness, contrast, saturation, hue, gamma per view (float RGB in [0, 1]).
Observability is measured by make_sample on the augmented (cropped) views.

No horizontal flip: flipping one image breaks its pose (the mirrored image is not a view of
the same world from that camera). Flipping *all* views is consistent only if every pose is
conjugated by the reflection (world mirrored too: R' = S R S, t' = S t, cx' = W - 1 - cx);
not needed here and easy to get subtly wrong (poses, stored sequences, node conventions), so
it is left out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from mvgd_core.cameras import crop_intrinsics, resize_intrinsics
from mvgd_core.data.types import Frame

_LUMA = torch.tensor([0.299, 0.587, 0.114])  # ITU-R 601 luma weights (as torchvision rgb_to_grayscale)
# RGB <-> YIQ: a hue rotation is a rotation of the (I, Q) chroma plane that keeps luma Y.
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float64)
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation (every field at its default = off).

    Colour (each range r >= 0 gives a per-view value v in [-r, r], see `draw_colour`):
    brightness: RGB scaled by 1 + v (r < 1). contrast: blend with the image's mean luma,
    factor 1 + v (r < 1). saturation: blend with the pixel's luma, factor 1 + v (r <= 1).
    hue: chroma rotated by v of a full turn (r <= 0.5). gamma: RGB ** exp(v).
    per_view: how much each view's values may differ from the sample's shared draw: 0 = all
    views of a sample get identical colour changes, 1 = independent per view. Small values
    keep views photometrically consistent so matching stays possible, while teaching the
    robustness to auto-exposure / white-balance changes between real frames.
    crop_scale: (lo, hi) side of the crop window as a fraction of the pre-crop frame
    (`pre_crop_hw`: the sample size / lo, so a lo-crop is taken at native resolution);
    (1, 1) = off. Every selected frame draws its own scale and position.
    permute_views: shuffle the order of the conditioning views.
    """

    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    gamma: float = 0.0
    per_view: float = 0.0
    crop_scale: tuple[float, float] = (1.0, 1.0)
    permute_views: bool = False

    def __post_init__(self):
        limits = {"brightness": 1.0, "contrast": 1.0, "saturation": 1.0, "hue": 0.5, "gamma": 2.0, "per_view": 1.0}
        for name, hi in limits.items():
            v = getattr(self, name)
            if not (math.isfinite(v) and 0.0 <= v <= hi) or (name in ("brightness", "contrast") and v >= 1.0):
                bound = f"[0, {hi})" if name in ("brightness", "contrast") else f"[0, {hi}]"
                raise ValueError(f"AugmentConfig.{name} must be in {bound}, got {v}")
        if len(self.crop_scale) != 2:
            raise ValueError(f"AugmentConfig.crop_scale must be (lo, hi), got {self.crop_scale}")
        lo, hi = self.crop_scale
        if not 0.25 <= lo <= hi <= 1.0:
            raise ValueError(f"AugmentConfig.crop_scale must satisfy 0.25 <= lo <= hi <= 1, got {tuple(self.crop_scale)}")

    @property
    def colour_on(self) -> bool:
        return any(getattr(self, n) > 0 for n in ("brightness", "contrast", "saturation", "hue", "gamma"))

    @property
    def crop_on(self) -> bool:
        return tuple(self.crop_scale) != (1.0, 1.0)

    @property
    def enabled(self) -> bool:
        return self.colour_on or self.crop_on or self.permute_views


# --------------------------------------------------------------------------- crop + rescale


def pre_crop_hw(image_hw: tuple[int, int], cfg: AugmentConfig) -> tuple[int, int]:
    """(H, W) at which frames are rendered / stored before cropping: image_hw / crop_scale[0]
    (so the smallest crop needs no upsampling); image_hw itself when cropping is off."""
    H, W = image_hw
    if not cfg.crop_on:
        return (int(H), int(W))
    lo = cfg.crop_scale[0]
    return (int(math.ceil(H / lo - 1e-9)), int(math.ceil(W / lo - 1e-9)))


def draw_crop(rng: np.random.Generator, src_hw: tuple[int, int], cfg: AugmentConfig) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a random window in an image of size src_hw: side fraction
    s ~ U(crop_scale) (same s for both sides: aspect kept up to rounding), uniform position."""
    H, W = src_hw
    s = float(rng.uniform(*cfg.crop_scale))
    ch, cw = max(1, min(H, int(round(s * H)))), max(1, min(W, int(round(s * W))))
    top, left = int(rng.integers(H - ch + 1)), int(rng.integers(W - cw + 1))
    return top, left, ch, cw


def _nearest_index(n_out: int, n_in: int) -> np.ndarray:
    """Source index of each output pixel centre when resizing n_in -> n_out (centres at integers):
    u_in = (u_out + 0.5) * n_in / n_out - 0.5, rounded (the pixel whose area holds the centre)."""
    return np.minimum(np.floor((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.int64), n_in - 1)


def crop_resize_frame(frame: Frame, box: tuple[int, int, int, int], out_hw: tuple[int, int]) -> Frame:
    """The window box = (top, left, h, w) of `frame`, resized to out_hw = (H, W), K adjusted.

    RGB: cv2 INTER_AREA when shrinking, INTER_LINEAR when enlarging (both sample at the
    centre-aligned positions that resize_intrinsics assumes). Depth: nearest at the exact
    centres (cv2's INTER_NEAREST is offset by up to half a source pixel), never mixed.
    """
    top, left, h, w = box
    H, W = out_hw
    if not (0 <= top and 0 <= left and h >= 1 and w >= 1 and top + h <= frame.height and left + w <= frame.width):
        raise ValueError(f"crop_resize_frame: box {box} outside the {frame.height}x{frame.width} image")
    rgb = frame.rgb[top : top + h, left : left + w]
    K = crop_intrinsics(torch.as_tensor(frame.K), top, left)
    depth = None if frame.depth is None else frame.depth[top : top + h, left : left + w]
    if (h, w) != (H, W):
        interp = cv2.INTER_AREA if h * w >= H * W else cv2.INTER_LINEAR
        rgb = cv2.resize(np.ascontiguousarray(rgb), (W, H), interpolation=interp)
        if depth is not None:
            depth = depth[_nearest_index(H, h)[:, None], _nearest_index(W, w)[None, :]]
        K = resize_intrinsics(K, (h, w), (H, W))
    return Frame(rgb=np.ascontiguousarray(rgb), K=K.numpy(), T_wc=frame.T_wc,
                 depth=None if depth is None else np.ascontiguousarray(depth), stamp=frame.stamp, frame_id=frame.frame_id)


def augment_views(frames: list[Frame], cond: list[int], tgt: int, out_hw: tuple[int, int], cfg: AugmentConfig,
                  rng: np.random.Generator) -> tuple[list[Frame], list[int], int]:
    """View order and crops of one sample: (frames', cond', tgt') for make_sample.

    frames' holds each distinct selected frame once (a target that is also a conditioning view
    shares its crop, so the two stay identical), cond'/tgt' index into it. The conditioning
    order is permuted when cfg.permute_views. Draw order is fixed (permutation, then one crop
    per distinct frame in sorted frame order) so results depend on rng alone.
    """
    if cfg.permute_views:
        cond = [cond[i] for i in rng.permutation(len(cond))]
    used = sorted({*cond, tgt})
    pos = {f: k for k, f in enumerate(used)}
    out = []
    for f in used:
        fr = frames[f]
        if cfg.crop_on:
            fr = crop_resize_frame(fr, draw_crop(rng, (fr.height, fr.width), cfg), out_hw)
        elif (fr.height, fr.width) != tuple(out_hw):
            raise ValueError(f"augment_views: frame is {fr.height}x{fr.width}, expected {tuple(out_hw)} with cropping off")
        out.append(fr)
    return out, [pos[c] for c in cond], pos[tgt]


# --------------------------------------------------------------------------- colour


def draw_colour(rng: np.random.Generator, cfg: AugmentConfig, num_views: int, own: np.ndarray | None = None) -> np.ndarray:
    """(V, 5) per-view values [brightness, contrast, saturation, hue, gamma], each in [-r, r].

    value = r * ((1 - p) * u_sample + p * u_view), u ~ U(-1, 1), p = cfg.per_view: one shared
    draw per sample plus a small per-view deviation. own (V,) bool: views that get their
    deviation (default all); the others get the shared value r * u_sample (a novel target: its
    colours stay predictable from the conditioning views, whose deviations average out). Shared because the matching path compares
    views pixel by pixel (normalised correlation absorbs gain/offset, not hue or gamma changes);
    RAFT(-Stereo)'s Augmentor (princeton-vl) likewise applies the same ColorJitter to both
    images most of the time. Per-view because real frames differ by auto-exposure/white balance.
    """
    r = np.array([cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue, cfg.gamma])
    shared = rng.uniform(-1.0, 1.0, size=5)
    dev = rng.uniform(-1.0, 1.0, size=(num_views, 5))
    if own is not None:
        dev = np.where(np.asarray(own, dtype=bool)[:, None], dev, shared)
    return r * ((1.0 - cfg.per_view) * shared + cfg.per_view * dev)


def _chroma_matrix(sat: float, hue_turn: float) -> torch.Tensor:
    """(3, 3) linear RGB map: saturation factor `sat` around luma, then hue rotation by hue_turn
    of a full turn in the YIQ chroma plane (both keep luma up to the YIQ/601 round trip)."""
    c, s = math.cos(2 * math.pi * hue_turn), math.sin(2 * math.pi * hue_turn)
    rot = torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]], dtype=torch.float64)
    luma = _LUMA.double()[None, :].expand(3, 3)  # rows: every channel -> luma
    sat_m = sat * torch.eye(3, dtype=torch.float64) + (1.0 - sat) * luma
    return (_YIQ2RGB @ rot @ _RGB2YIQ @ sat_m).float()


def apply_colour(rgb: torch.Tensor, values: np.ndarray) -> torch.Tensor:
    """Colour-jittered copy of rgb (V, 3, H, W) in [0, 1] with per-view values (V, 5) from
    draw_colour; output (V, 3, H, W) clamped to [0, 1]. Order: brightness, contrast, saturation,
    hue (one affine map per view), then gamma."""
    out = torch.empty_like(rgb)
    for v in range(rgb.shape[0]):
        b, c, s, h, g = (float(x) for x in values[v])
        x = rgb[v] * (1.0 + b)  # (3, H, W)
        mean = torch.einsum("c,chw->", _LUMA, x) / (x.shape[1] * x.shape[2])
        x = (1.0 + c) * x + (-c) * mean  # contrast: blend with the mean luma
        x = torch.einsum("ij,jhw->ihw", _chroma_matrix(1.0 + s, h), x).clamp_(0.0, 1.0)
        out[v] = x.pow_(math.exp(g)) if g != 0.0 else x
    return out


def colour_views(cond_rgb: torch.Tensor, tgt_rgb: torch.Tensor, cond: list[int], tgt: int, cfg: AugmentConfig,
                 rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Colour-jittered (cond_rgb (N, 3, H, W), tgt_rgb (3, H, W)); values are drawn per distinct
    frame index (cond/tgt as returned by augment_views), so a target that is also a
    conditioning view gets exactly its copy's colours; a novel target gets the shared draw."""
    used = sorted({*cond, tgt})
    vals = draw_colour(rng, cfg, len(used), own=np.array([f in cond for f in used]))
    pos = {f: k for k, f in enumerate(used)}
    stack = torch.empty((len(used), *tgt_rgb.shape), dtype=tgt_rgb.dtype)
    for i, f in enumerate(cond):
        stack[pos[f]] = cond_rgb[i]
    stack[pos[tgt]] = tgt_rgb
    jit = apply_colour(stack, vals)
    return jit[[pos[f] for f in cond]], jit[pos[tgt]]


__all__ = ["AugmentConfig", "pre_crop_hw", "draw_crop", "crop_resize_frame", "augment_views", "draw_colour", "apply_colour", "colour_views"]
