"""How observable a target's depth is from its conditioning views (parallax), and the regimes.

Depth can only come from geometry where changing it moves the pixel's projection in some
other view. For every valid target pixel with true depth d we project the 3-D points at d and
at (1 + DEPTH_CHANGE) d into each conditioning view (at model resolution) and take the
largest image displacement over the views that see the point: the pixel is *observable* when
that displacement is at least MIN_DISPARITY_PX. A pure rotation, or a view identical to the
target, moves nothing, so turn-in-place samples come out unobservable whatever the scene.

Regimes (issue 10's reporting rule), by the share of valid target pixels that are observable:
    "observable" >= OBSERVABLE_MIN, "weak" in [WEAK_MIN, OBSERVABLE_MIN), "none" < WEAK_MIN.

Pure torch; float64 inside (world poses may be far from the origin).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from mvgd_core.cameras import invert_pose, resize_intrinsics

DEPTH_CHANGE = 0.25  # relative depth change whose image motion we measure
MIN_DISPARITY_PX = 1.0  # at model resolution
OBSERVABLE_MIN = 0.5
WEAK_MIN = 0.1
REGIMES = ("observable", "weak", "none")
DEFAULT_MODEL_HW = (96, 128)


@dataclass(frozen=True)
class Observability:
    """frac: share of valid target pixels that are observable; median_disparity_px: median over
    valid pixels of the best view's displacement (model-resolution px); regime: see REGIMES."""

    frac: float
    median_disparity_px: float
    regime: str

    def as_tensor(self) -> torch.Tensor:
        """(2,) float32 [frac, median_disparity_px]: what MultiViewSample.observability stores."""
        return torch.tensor([self.frac, self.median_disparity_px], dtype=torch.float32)


def regime(frac: float) -> str:
    """Regime name of an observable fraction (NaN, e.g. no valid pixel, counts as "none")."""
    if frac >= OBSERVABLE_MIN:
        return "observable"
    if frac >= WEAK_MIN:
        return "weak"
    return "none"


def _project_into_views(depth, tgt_K, tgt_T_wc, cond_K, cond_T_wc):
    """Each target pixel's point at its depth and at (1 + DEPTH_CHANGE) x it, projected into every
    view: (uv (N, H, W, 2), uv at the farther depth, z (N, H, W) depth in the view, z farther).
    depth (H, W), tgt_K (3, 3), tgt_T_wc (4, 4), cond_K (N, 3, 3), cond_T_wc (N, 4, 4), float64."""
    H, W = depth.shape
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    rays = torch.stack([u, v, torch.ones_like(u)], -1) @ torch.linalg.inv(tgt_K).T  # (H, W, 3), z = 1
    p_near = rays * depth[..., None]  # (H, W, 3) target camera
    T_ct = invert_pose(cond_T_wc) @ tgt_T_wc  # (N, 4, 4) target camera -> conditioning camera
    R, t = T_ct[:, :3, :3], T_ct[:, :3, 3]

    def project(p):  # (H, W, 3) -> uv (N, H, W, 2), z (N, H, W)
        q = torch.einsum("nij,hwj->nhwi", R, p) + t[:, None, None, :]
        z = q[..., 2]
        uvw = torch.einsum("nij,nhwj->nhwi", cond_K, q)
        return uvw[..., :2] / z.clamp_min(1e-9)[..., None], z

    uv0, z0 = project(p_near)
    uv1, z1 = project(p_near * (1.0 + DEPTH_CHANGE))
    return uv0, uv1, z0, z1


def observability_map(tgt_depth, tgt_K, tgt_T_wc, cond_K, cond_T_wc, model_hw=DEFAULT_MODEL_HW, cond_hw=None):
    """Per-pixel observability of a target's depth.

    tgt_depth (H, W) metres, 0 = invalid; tgt_K (3, 3) for (H, W); tgt_T_wc (4, 4) camera-to-world;
    cond_K (N, 3, 3) for images of cond_hw (default (H, W)); cond_T_wc (N, 4, 4).
    model_hw: resolution (h, w) at which a displacement is measured in pixels (the model's);
    None measures at the given resolutions.
    Returns (observable (H, W) bool, disparity_px (H, W) float32 (0 where invalid or unseen),
    valid (H, W) bool: pixels with depth).
    """
    depth = torch.as_tensor(tgt_depth).double()
    H, W = depth.shape
    cond_hw = tuple(cond_hw) if cond_hw is not None else (H, W)
    Kt = torch.as_tensor(tgt_K).double()
    Kc = torch.as_tensor(cond_K).double().reshape(-1, 3, 3)
    Tt = torch.as_tensor(tgt_T_wc).double()
    Tc = torch.as_tensor(cond_T_wc).double().reshape(-1, 4, 4)
    if model_hw is not None:
        # Measure in model pixels: scale the conditioning intrinsics to model_hw.
        Kc = resize_intrinsics(Kc, cond_hw, tuple(model_hw))
        cond_hw = tuple(model_hw)
    valid = depth > 0
    uv0, uv1, z0, z1 = _project_into_views(depth, Kt, Tt, Kc, Tc)
    front0, front1 = z0 > 1e-6, z1 > 1e-6
    h, w = cond_hw
    inside = (uv0[..., 0] >= -0.5) & (uv0[..., 0] <= w - 0.5) & (uv0[..., 1] >= -0.5) & (uv0[..., 1] <= h - 0.5)
    seen = front0 & front1 & inside  # (N, H, W)
    disp = torch.where(seen, (uv1 - uv0).norm(dim=-1), torch.zeros_like(uv0[..., 0]))
    disp = disp.amax(0) if disp.shape[0] else torch.zeros(H, W, dtype=torch.float64)
    disp = torch.where(valid, disp, torch.zeros_like(disp))
    return valid & (disp >= MIN_DISPARITY_PX), disp.float(), valid


OCCLUSION_TOL = 0.05  # relative: a view's own depth within 5 % of the point's means it sees that point


def matchable_map(tgt_depth, tgt_K, tgt_T_wc, cond_depth, cond_K, cond_T_wc, model_hw=DEFAULT_MODEL_HW,
                  min_parallax_px: float = MIN_DISPARITY_PX) -> torch.Tensor:
    """(H, W) bool: valid target pixels whose surface point some conditioning view sees, unhidden,
    with parallax: its depth could come from matching. An oracle test with every view's true depth
    (the model never sees it); `observability_map` counts hidden points too.

    For each view: the point at the pixel's true depth lands inside the image, in front of the
    camera, the view's own depth there (nearest pixel) is within OCCLUSION_TOL of the point's
    depth in that view (nothing nearer hides it), and it moves >= min_parallax_px at model_hw
    when its depth changes by DEPTH_CHANGE (0: seen at all, e.g. a novel view whose depth a view's
    own depth could give). tgt_depth (H, W) metres, 0 = invalid; cond_depth
    (N, H, W) at the target's resolution (0 = unknown: not seen); K (3, 3) / (N, 3, 3) for it;
    poses camera-to-world."""
    d = torch.as_tensor(tgt_depth).double()
    H, W = d.shape
    Kc = torch.as_tensor(cond_K).double().reshape(-1, 3, 3)
    uv, uv1, z, z1 = _project_into_views(d, torch.as_tensor(tgt_K).double(), torch.as_tensor(tgt_T_wc).double(), Kc,
                                         torch.as_tensor(cond_T_wc).double().reshape(-1, 4, 4))  # (N, H, W, ...)
    inside = (uv[..., 0] >= -0.5) & (uv[..., 0] <= W - 0.5) & (uv[..., 1] >= -0.5) & (uv[..., 1] <= H - 0.5) & (z > 1e-6) & (z1 > 1e-6)
    col = uv[..., 0].round().clamp(0, W - 1).long()
    row = uv[..., 1].round().clamp(0, H - 1).long()
    cd = torch.as_tensor(cond_depth).reshape(-1, H, W).double()
    seen = cd[torch.arange(cd.shape[0])[:, None, None], row, col]  # (N, H, W): each view's own depth where the point lands
    unhidden = (seen > 0) & ((seen - z).abs() <= OCCLUSION_TOL * seen)
    px_scale = model_hw[1] / W if model_hw is not None else 1.0  # displacement in model pixels
    parallax = (uv1 - uv).norm(dim=-1) * px_scale >= min_parallax_px
    out = (inside & unhidden & parallax).any(0)
    return out & (d > 0)


def summarize(observable, disparity_px, valid) -> Observability:
    """Observable fraction, median disparity and regime of one `observability_map` result."""
    n = int(valid.sum())
    if n == 0:
        return Observability(0.0, 0.0, "none")
    frac = float(observable.sum()) / n
    return Observability(frac, float(disparity_px[valid].median()), regime(frac))


def observability(tgt_depth, tgt_K, tgt_T_wc, cond_K, cond_T_wc, model_hw=DEFAULT_MODEL_HW, cond_hw=None) -> Observability:
    """Summary of `observability_map`: observable fraction, median disparity, regime."""
    return summarize(*observability_map(tgt_depth, tgt_K, tgt_T_wc, cond_K, cond_T_wc, model_hw, cond_hw))


def observability_with_mask(tgt_depth, tgt_K, tgt_T_wc, cond_K, cond_T_wc, model_hw=DEFAULT_MODEL_HW, cond_hw=None):
    """(Observability, observable mask (H, W) bool tensor) from one `observability_map` call: the
    summary for the tables and the map for the report pictures."""
    observable, disp, valid = observability_map(tgt_depth, tgt_K, tgt_T_wc, cond_K, cond_T_wc, model_hw, cond_hw)
    return summarize(observable, disp, valid), observable


def sample_observability(sample, model_hw=DEFAULT_MODEL_HW) -> Observability:
    """`observability` of a MultiViewSample (or one item of a batch): its target vs its conditioning views."""
    hw = tuple(sample.tgt_depth.shape[-2:])
    return observability(sample.tgt_depth, sample.tgt_K, sample.tgt_T_wc, sample.cond_K, sample.cond_T_wc, model_hw, cond_hw=hw)


__all__ = ["DEPTH_CHANGE", "MIN_DISPARITY_PX", "OBSERVABLE_MIN", "WEAK_MIN", "REGIMES", "Observability",
           "regime", "observability_map", "matchable_map", "summarize", "observability", "observability_with_mask",
           "sample_observability"]
