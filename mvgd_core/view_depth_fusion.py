"""Novel-view depth from the conditioning views' own depth: reproject, then a per-pixel median.

Why (a departure from the paper, stop 14; switch: `FusionConfig.enabled`, node parameter
`fuse_view_depth`): our network predicts depth at a camera that has an image (the live camera)
much better than at a virtual camera (held-out HoloLens, observable medians: 0.145 vs 0.175
AbsRel), because only there does its own image take part in matching. A robot asking for depth at
a virtual viewpoint usually asks where its keyframes already had their depth predicted. So each
keyframe's live depth is forward-projected into the virtual camera (z-buffer: the nearest point
per pixel wins) and, per pixel, the output is the median in log depth of the network's own
prediction and every keyframe that lands there: the consensus of several independent live
predictions, with the network as one vote and the fallback where no keyframe sees the pixel.
This is depth-image-based rendering plus the multi-view median of depth-map fusion (e.g.
COLMAP's and MVSNet's fusion keep depths that several views agree on).

Chosen on tuning data only (HoloLens frames 0-278, procedural seeds 6,000,001;
`training/tune_fusion.py`, MODEL_CARD "Novel-view depth from the keyframes"): fusing wherever one
keyframe lands (`min_views` 1) beat asking for 2 or 3. A scratch comparison at stop 14 also found
the log-median better than the nearest splat alone, than splats with the network only where none
lands, and than splats only where they agree with the network (stop 30: leaving the network's vote
out is still worse). Stop 30, `splat_radius` (opt-in, default 0): a splatted point also covers
the empty pixels next to it (the nearest such point wins). A nearer camera magnifies the surface
and leaves cracks between splatted pixels, and the network's novel-view depth there is worse than
a neighbour's keyframe depth: tuning sets at 6 views, AbsRel procedural 0.250 -> 0.217, HoloLens
0.073 -> 0.069 at radius 1. Not the default: on the real held-out walk through the node it is
slightly worse (MODEL_CARD "Novel-view depth from the keyframes", stop 30); node parameter
`fuse_splat_radius`.

Shapes: depth maps (H, W) in pose units, 0 / non-finite = none; K (3, 3) for its own map's size;
T_wc (4, 4) camera-to-world; every function is pure torch, float64 for poses (a map frame far
from the origin).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mvgd_core.baselines import forward_warp
from mvgd_core.cameras import invert_pose


@dataclass(frozen=True)
class FusionConfig:
    """enabled: fuse at all; min_views: keyframes that must land on a pixel before it is fused (1:
    any; the network's own depth is always one of the votes); splat_radius: each splatted point
    also votes on the empty pixels up to this far (Chebyshev, px) around it (`fill_splat`; 0: only
    where it lands, the default; 1 is better on procedural scenes, not on the real walk)."""

    enabled: bool = True
    min_views: int = 1
    splat_radius: int = 0

    def __post_init__(self):
        if self.min_views < 1:
            raise ValueError(f"FusionConfig.min_views must be >= 1, got {self.min_views}")
        if self.splat_radius < 0:
            raise ValueError(f"FusionConfig.splat_radius must be >= 0, got {self.splat_radius}")


def splat_depth(depth: torch.Tensor, K_src: torch.Tensor, src_to_tgt: torch.Tensor, K_tgt: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Forward-project a depth map into another camera: (h, w) z-depth there, 0 where no point lands.

    depth (Hs, Ws) with K_src (3, 3); src_to_tgt (4, 4): source camera -> target camera; K_tgt
    (3, 3) for the target grid hw = (h, w). The z-buffered nearest-pixel splat of
    `baselines.forward_warp` (the reprojection baseline's), in float64 with the target camera as
    the world frame. Where the target sees the surface magnified, some pixels get no source pixel
    (cracks): they simply get no vote in `fuse_view_depths`."""
    d = depth.to(torch.float64)
    d = torch.where(torch.isfinite(d) & (d > 0), d, torch.zeros_like(d))
    eye = torch.eye(4, dtype=torch.float64)
    _, out, _ = forward_warp(None, d[None], K_src.to(torch.float64)[None], src_to_tgt.to(torch.float64)[None], K_tgt, eye, hw)
    return out.to(depth.dtype)


def fill_splat(splat: torch.Tensor, radius: int) -> torch.Tensor:
    """A splat (h, w) (0 = nothing landed) with each empty pixel given the nearest depth (the
    foreground, as the z-buffer would) among the landed pixels up to `radius` px away (a
    (2 radius + 1)^2 window); landed pixels keep their own depth; radius 0 changes nothing."""
    if radius == 0:
        return splat
    far = torch.where(splat > 0, splat, torch.full_like(splat, float("inf")))
    near = -F.max_pool2d(-far[None, None], 2 * radius + 1, stride=1, padding=radius)[0, 0]
    return torch.where((splat > 0) | ~torch.isfinite(near), splat, near)


def view_splats(tgt_K: torch.Tensor, tgt_T_wc: torch.Tensor, hw: tuple[int, int], view_depth: list, view_K: list, view_T_wc: list,
                radius: int = 0) -> torch.Tensor | None:
    """(V, h, w): each view's depth map (None: skipped) splatted into the target camera (tgt_K for
    hw, tgt_T_wc) and widened by `radius` px (`fill_splat`); 0 where nothing landed. None when no
    view has depth."""
    T_tw = invert_pose(tgt_T_wc.to(torch.float64))
    splats = [fill_splat(splat_depth(d, K, T_tw @ T.to(torch.float64), tgt_K, hw), radius)
              for d, K, T in zip(view_depth, view_K, view_T_wc) if d is not None]
    return torch.stack(splats) if splats else None


def fuse_view_depths(depth: torch.Tensor, tgt_K: torch.Tensor, tgt_T_wc: torch.Tensor, view_depth: list[torch.Tensor | None],
                     view_K: list[torch.Tensor], view_T_wc: list[torch.Tensor], cfg: FusionConfig = FusionConfig()) -> tuple[torch.Tensor, torch.Tensor]:
    """The target's depth (H, W) fused with the views' own depth maps (each (Hv, Wv) with its
    view_K (3, 3) and view_T_wc (4, 4); None: that view has none).

    Returns (fused (H, W), votes (H, W) long: how many views landed on each pixel, or within
    cfg.splat_radius of it). A pixel with at
    least cfg.min_views votes gets the median in log depth of the network's value and the votes
    (the mean of the two middle ones for an even count); elsewhere the network's depth stays."""
    H, W = depth.shape
    none = (depth, torch.zeros_like(depth, dtype=torch.long))
    if not cfg.enabled:
        return none
    S = view_splats(tgt_K, tgt_T_wc, (H, W), view_depth, view_K, view_T_wc, cfg.splat_radius)  # (V, H, W), 0 = no point landed
    if S is None:
        return none
    votes = (S > 0).sum(0)
    net = torch.where(torch.isfinite(depth) & (depth > 0), depth, torch.full_like(depth, float("nan")))
    logs = torch.cat([net[None], torch.where(S > 0, S, torch.full_like(S, float("nan")))]).log()
    fused = torch.nanquantile(logs.to(torch.float64), 0.5, dim=0).exp().to(depth.dtype)  # interpolates: even counts -> mean of the middle two
    use = (votes >= cfg.min_views) & torch.isfinite(fused)
    return torch.where(use, fused, depth), votes
