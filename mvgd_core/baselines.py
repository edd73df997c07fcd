"""Classical baselines that every MVGD number is reported next to (pure torch, no ROS).

1. Nearest-view reprojection (`reproject_nearest`): pick the conditioning view nearest to the
   target camera and forward-warp its RGB and *depth* into the target (z-buffered splat).
   It needs depth at the conditioning views, which exists only in evaluation data (ground
   truth or a depth sensor) - the model never sees it, so this is an oracle-geometry
   reference for novel-view RGB/depth, not a competitor using the same inputs.
2. Plane-sweep stereo (`plane_sweep_depth`, `plane_sweep_novel_view`, key "plane_sweep"): RGB
   and poses only (the same inputs as the model). Fronto-parallel planes in inverse depth over
   a fixed range, homography warps via grid_sample, ZNCC or absolute-difference cost on a
   small window, winner takes all, parabolic sub-plane refinement. The older, naive method,
   kept reachable by name.
3. Multi-view stereo (mvgd_core/mvs.py, key "mvs"): the headline classical baseline - pose-
   derived depth range, occlusion-robust ZNCC, semi-global aggregation, confidence and a
   cross-view consistency check that leaves unreliable pixels invalid.

Nearest view. `pose_distance` = |t_a - t_b| + rot_weight * angle(R_a^T R_b), metres with
`rot_weight` in metres per radian (default 1 m/rad: a rotation by theta moves the image
content of a scene ~1 m away as much as a sideways translation by theta metres; TUM fr1/rpy
is almost pure rotation, so translation alone would pick arbitrary views).

Depth at a conditioning view. When the target camera IS one of the conditioning views (the
node's "depth of the live camera"), reprojecting that view's own ground-truth depth would be
trivially perfect. Callers therefore pass `exclude=<its index>`: the reprojection baseline
then warps the nearest OTHER view, and plane sweep uses the target's RGB as the reference
image with the other views as sources.

Conventions (mvgd_core/cameras.py): OpenCV optical frames, camera-to-world T_wc, metres,
z-depth, 0 = invalid. Images here are float (3, H, W) in [0, 1].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mvgd_core.cameras import invert_pose, pixel_grid, project_points, unproject_depth

# --------------------------------------------------------------------------- view selection


def pose_distance(T_a: torch.Tensor, T_b: torch.Tensor, rot_weight: float = 1.0) -> torch.Tensor:
    """Distance between camera poses (..., 4, 4) -> (...): |dt| + rot_weight * rotation angle (rad)."""
    dt = (T_a[..., :3, 3] - T_b[..., :3, 3]).norm(dim=-1)
    R = T_a[..., :3, :3].transpose(-1, -2) @ T_b[..., :3, :3]
    cos = ((R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) / 2.0).clamp(-1.0, 1.0)
    return dt + rot_weight * torch.arccos(cos)


def nearest_views(tgt_T_wc: torch.Tensor, cond_T_wc: torch.Tensor, k: int = 1, exclude=None, rot_weight: float = 1.0) -> list[int]:
    """Indices of the k conditioning views (N, 4, 4) nearest to the target (4, 4), nearest first.

    `exclude`: an index or iterable of indices never returned (the target's own view when
    the target is a conditioning view). Raises ValueError when no view is left.
    """
    d = pose_distance(tgt_T_wc.unsqueeze(0).to(cond_T_wc), cond_T_wc, rot_weight).clone()  # (N,)
    excl = [] if exclude is None else ([exclude] if isinstance(exclude, int) else list(exclude))
    for i in excl:
        d[i] = float("inf")
    n_left = int(torch.isfinite(d).sum())
    if n_left == 0:
        raise ValueError(f"nearest_views: no conditioning view left after excluding {excl} (N={cond_T_wc.shape[0]})")
    return torch.argsort(d)[: min(k, n_left)].tolist()


# --------------------------------------------------------------------------- forward warping


def forward_warp(src_rgb, src_depth, src_K, src_T_wc, tgt_K, tgt_T_wc, tgt_hw):
    """Z-buffered nearest-pixel splat of V source views into one target camera.

    src_rgb (V, 3, H, W) in [0, 1] or None; src_depth (V, H, W) metres (0 = invalid);
    src_K (V, 3, 3); src_T_wc (V, 4, 4); tgt_K (3, 3); tgt_T_wc (4, 4); tgt_hw = (h, w).
    Every valid source pixel is unprojected, projected into the target and rounded to the
    nearest target pixel; the nearest surface (smallest target z) wins across all views.
    Returns (rgb (3, h, w) or None, depth (h, w) target z-depth, valid (h, w) bool); pixels
    no source point lands on (holes, disocclusions, outside the views) are invalid, depth 0.
    """
    h, w = tgt_hw
    V = src_depth.shape[0]
    pts = unproject_depth(src_depth, src_K, src_T_wc).reshape(-1, 3)  # (V*H*W, 3)
    tgt_K = tgt_K.to(pts)
    uv, z = project_points(pts, tgt_K, tgt_T_wc.to(pts))  # (P, 2), (P,)
    u, v = uv[:, 0].round().long(), uv[:, 1].round().long()
    ok = (src_depth.reshape(-1) > 0) & (z > 1e-6) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    idx = (v * w + u)[ok]
    z = z[ok]
    zbuf = torch.full((h * w,), float("inf"), dtype=z.dtype, device=z.device)
    zbuf.scatter_reduce_(0, idx, z, reduce="amin")
    valid = torch.isfinite(zbuf)
    depth = torch.where(valid, zbuf, torch.zeros_like(zbuf)).reshape(h, w)
    rgb = None
    if src_rgb is not None:
        cols = src_rgb.permute(0, 2, 3, 1).reshape(V * src_depth.shape[1] * src_depth.shape[2], 3)[ok].to(z)
        win = z <= zbuf[idx]  # the points that won their pixel's z-test (ties: any of them)
        out = torch.zeros(h * w, 3, dtype=z.dtype, device=z.device)
        out[idx[win]] = cols[win]
        rgb = out.reshape(h, w, 3).permute(2, 0, 1)
    return rgb, depth, valid.reshape(h, w)


def fill_holes(depth: torch.Tensor, valid: torch.Tensor, rgb: torch.Tensor | None = None, iterations: int = 64):
    """Fill invalid pixels with the mean of valid 3x3 neighbours, repeated (a dense baseline).

    depth (h, w), valid (h, w) bool, rgb (3, h, w) or None -> (depth, rgb, filled_valid).
    Pixels still unreached after `iterations` stay invalid.
    """
    vals = depth[None] if rgb is None else torch.cat([depth[None], rgb], 0)  # (C, h, w)
    m = valid[None].to(vals)
    vals = vals * m
    for _ in range(iterations):
        if bool(m.all()):
            break
        s = F.avg_pool2d(vals[None], 3, 1, 1, count_include_pad=False)[0]
        c = F.avg_pool2d(m[None], 3, 1, 1, count_include_pad=False)[0]
        new = (c > 0) & (m == 0)
        vals = torch.where(new, s / c.clamp_min(1e-8), vals)
        m = torch.where(new, torch.ones_like(m), m)
    filled = m[0] > 0
    return vals[0], (None if rgb is None else vals[1:]), filled


def reproject_nearest(cond_rgb, cond_depth, cond_K, cond_T_wc, tgt_K, tgt_T_wc, tgt_hw, exclude=None, k: int = 1, rot_weight: float = 1.0):
    """Nearest-view reprojection baseline: forward-warp the k nearest conditioning views.

    cond_rgb (N, 3, H, W) [0, 1]; cond_depth (N, H, W) metres - evaluation-only depth (GT or
    sensor); cond_K (N, 3, 3); cond_T_wc (N, 4, 4); tgt_* as in `forward_warp`.
    exclude: index of the target among the conditioning views (depth-at-a-conditioning-view
    evaluation), so that its own depth is never used. Returns dict(rgb, depth, valid, views).
    """
    views = nearest_views(tgt_T_wc, cond_T_wc, k, exclude, rot_weight)
    rgb, depth, valid = forward_warp(cond_rgb[views], cond_depth[views], cond_K[views], cond_T_wc[views], tgt_K, tgt_T_wc, tgt_hw)
    return {"rgb": rgb, "depth": depth, "valid": valid, "views": views}


# --------------------------------------------------------------------------- plane sweep


def _gray(img: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) -> (..., 1, H, W) luma."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=img.dtype, device=img.device).view(3, 1, 1)
    return (img * w).sum(-3, keepdim=True)


def _box(x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean over a k x k window of (..., H, W), same size (replicate-free: divides by in-image count)."""
    if k <= 1:
        return x
    shp = x.shape
    y = F.avg_pool2d(x.reshape(-1, 1, *shp[-2:]), k, 1, k // 2, count_include_pad=False)
    return y.reshape(shp)


def inverse_depth_planes(d_min: float, d_max: float, num_planes: int) -> torch.Tensor:
    """(D,) plane depths uniformly spaced in inverse depth, near to far."""
    if not 0 < d_min < d_max:
        raise ValueError(f"plane sweep needs 0 < d_min < d_max, got d_min={d_min} d_max={d_max}")
    return 1.0 / torch.linspace(1.0 / d_min, 1.0 / d_max, num_planes)


def plane_sweep_depth(
    ref_rgb, ref_K, ref_T_wc, src_rgb, src_K, src_T_wc,
    d_min: float = 0.3, d_max: float = 10.0, num_planes: int = 64,
    cost: str = "zncc", window: int = 5, cost_filter: int = 3, subplane: bool = True,
    max_cost: float | None = None,
):
    """Plane-sweep stereo depth of a reference view from V source views (RGB + poses only).

    ref_rgb (3, H, W) [0, 1]; ref_K (3, 3); ref_T_wc (4, 4); src_rgb (V, 3, Hs, Ws);
    src_K (V, 3, 3); src_T_wc (V, 4, 4). Sweeps `num_planes` fronto-parallel planes z = d of
    the reference camera, uniform in 1/d over [d_min, d_max]. For each plane the sources are
    warped into the reference by the plane homography H = K_s (R + t n^T / d) K_r^-1 (done
    as unproject-at-depth-d, transform, project, then grid_sample).
    cost: "zncc" (1 - zero-mean normalized cross-correlation of luma over `window` x
    `window`) or "ad" (absolute RGB difference, box-filtered over `window`). Per-pixel costs
    are averaged over the sources that see the pixel; `cost_filter` box-filters the cost
    volume (k x k) before winner-take-all; `subplane` fits a parabola through the winning
    plane's neighbours (in inverse depth). Pixels seen by no source, or (if `max_cost`) whose
    best cost exceeds it, are invalid.
    Returns (depth (H, W) metres, 0 = invalid; valid (H, W) bool; best cost (H, W)).
    """
    if cost not in ("zncc", "ad"):
        raise ValueError(f"plane_sweep_depth: cost must be 'zncc' or 'ad', got {cost!r}")
    dev, dt = ref_rgb.device, torch.float32
    ref_rgb, src_rgb = ref_rgb.to(dt), src_rgb.to(dt)
    depths = inverse_depth_planes(d_min, d_max, num_planes).to(dev)  # (D,)
    grid, seen = _plane_grid(ref_rgb.shape[-2:], ref_K, ref_T_wc, src_K, src_T_wc, depths, tuple(src_rgb.shape[-2:]))
    vol, n_seen = _sweep_cost(ref_rgb, src_rgb, grid, seen, cost, window)
    depth, best, k = _winner(_box(vol, cost_filter), depths, subplane)
    valid = n_seen.gather(0, k[None])[0] > 0
    if max_cost is not None:
        valid &= best <= max_cost
    return torch.where(valid, depth, torch.zeros_like(depth)), valid, best


def _plane_grid(hw, ref_K, ref_T_wc, src_K, src_T_wc, depths, src_hw):
    """Where each reference pixel on each plane lands in every source. -> (grid (V, D, H, W, 2) for
    grid_sample, align_corners=True; seen (V, D, H, W) in front of the source and inside it)."""
    H, W = hw
    Hs, Ws = src_hw
    dev, dt = depths.device, torch.float32
    rays = pixel_grid(H, W, dev, dt) @ torch.linalg.inv(ref_K.to(dev, dt)).T  # (H, W, 3), z = 1
    T_sr = invert_pose(src_T_wc.to(dev, dt)) @ ref_T_wc.to(dev, dt)  # (V, 4, 4) ref -> source
    R, t = T_sr[:, :3, :3], T_sr[:, :3, 3]
    p_ref = rays[None] * depths[:, None, None, None]  # (D, H, W, 3)
    p_src = torch.einsum("vij,dhwj->vdhwi", R, p_ref) + t[:, None, None, None, :]  # (V, D, H, W, 3)
    uvw = torch.einsum("vij,vdhwj->vdhwi", src_K.to(dev, dt), p_src)
    z = uvw[..., 2]
    uv = uvw[..., :2] / z.clamp_min(1e-6)[..., None]
    grid = torch.stack([2 * uv[..., 0] / (Ws - 1) - 1, 2 * uv[..., 1] / (Hs - 1) - 1], -1)
    return grid, (z > 1e-6) & (grid.abs() <= 1).all(-1)


def _sweep_cost(ref_rgb, src_rgb, grid, seen, cost: str, window: int):
    """Per-plane cost averaged over the sources that see each pixel (1e3 where none does).
    -> (vol (D, H, W), n_seen (D, H, W))."""
    V, D, H, W, _ = grid.shape
    dt = ref_rgb.dtype
    src_in = src_rgb if cost == "ad" else _gray(src_rgb)  # (V, C, Hs, Ws)
    C = src_in.shape[1]
    warped = F.grid_sample(src_in, grid.reshape(V, D * H, W, 2), mode="bilinear", padding_mode="border", align_corners=True)
    warped = warped.reshape(V, C, D, H, W).permute(0, 2, 1, 3, 4)  # (V, D, C, H, W)
    ref_in = (ref_rgb if cost == "ad" else _gray(ref_rgb))[None, None]  # (1, 1, C, H, W)
    if cost == "ad":
        c = _box((warped - ref_in).abs().mean(2), window)  # (V, D, H, W)
    else:
        mr, ms = _box(ref_in[:, :, 0], window), _box(warped[:, :, 0], window)
        vr = (_box(ref_in[:, :, 0] ** 2, window) - mr**2).clamp_min(0)
        vs = (_box(warped[:, :, 0] ** 2, window) - ms**2).clamp_min(0)
        cov = _box(ref_in[:, :, 0] * warped[:, :, 0], window) - mr * ms
        zncc = cov / (vr * vs + 1e-6).sqrt()  # textureless windows -> ~0 correlation
        c = 1.0 - zncc  # (V, D, H, W) in [0, 2]
    seen_f = _box(seen.to(dt), window) > 0.5  # most of the window inside the source image
    n_seen = seen_f.sum(0)  # (D, H, W)
    vol = (c * seen_f).sum(0) / n_seen.clamp_min(1)
    return torch.where(n_seen > 0, vol, torch.full_like(vol, 1e3)), n_seen


def _winner(vol, depths, subplane: bool):
    """Winner-take-all over the planes, optionally refined by a parabola in inverse depth.
    -> (depth (H, W), best cost (H, W), winning plane index (H, W))."""
    D = depths.shape[0]
    best, k = vol.min(0)  # (H, W)
    inv = 1.0 / depths
    inv_k = inv[k]
    if subplane and D >= 3:
        k0, k2 = (k - 1).clamp(0, D - 1), (k + 1).clamp(0, D - 1)
        c0, c1, c2 = vol.gather(0, k0[None])[0], best, vol.gather(0, k2[None])[0]
        denom = c0 - 2 * c1 + c2
        off = torch.where((k > 0) & (k < D - 1) & (denom > 1e-9), 0.5 * (c0 - c2) / denom.clamp_min(1e-9), torch.zeros_like(c1))
        step = (inv[-1] - inv[0]) / (D - 1)  # signed step in inverse depth per plane
        inv_k = inv_k + off.clamp(-0.5, 0.5) * step
    return 1.0 / inv_k, best, k


def plane_sweep_at_view(cond_rgb, cond_K, cond_T_wc, ref: int, max_sources: int = 4, rot_weight: float = 1.0, **sweep):
    """Plane-sweep depth of conditioning view `ref` from its `max_sources` nearest other views.

    cond_rgb (N, 3, H, W); cond_K (N, 3, 3); cond_T_wc (N, 4, 4). Never uses any depth.
    Returns (depth (H, W), valid (H, W), source indices).
    """
    src = nearest_views(cond_T_wc[ref], cond_T_wc, max_sources, exclude=ref, rot_weight=rot_weight)
    depth, valid, _ = plane_sweep_depth(cond_rgb[ref], cond_K[ref], cond_T_wc[ref], cond_rgb[src], cond_K[src], cond_T_wc[src], **sweep)
    return depth, valid, src


def novel_view_reference(cond_T_wc, tgt_T_wc, exclude=None, rot_weight: float = 1.0, who: str = "novel view") -> tuple[int, list[int]]:
    """For a stereo baseline at a novel target: (ref, keep): the nearest conditioning view not in
    `exclude` (the reference whose depth is forward-warped into the target) and the indices of
    all views not excluded (ref among them). Raises ValueError with fewer than two such views."""
    ref = nearest_views(tgt_T_wc, cond_T_wc, 1, exclude, rot_weight)[0]
    excl = set([] if exclude is None else ([exclude] if isinstance(exclude, int) else list(exclude)))
    keep = [i for i in range(cond_T_wc.shape[0]) if i not in excl]
    if len(keep) < 2:
        raise ValueError(f"{who}: needs at least two conditioning views")
    return ref, keep


def plane_sweep_novel_view(cond_rgb, cond_K, cond_T_wc, tgt_K, tgt_T_wc, tgt_hw, exclude=None, max_sources: int = 4, rot_weight: float = 1.0, **sweep):
    """Plane-sweep baseline at any target camera (RGB + poses only, like the model).

    For a target that is conditioning view i, call `plane_sweep_at_view(..., ref=i)` instead
    (its own RGB is the reference image). For a novel target: the nearest conditioning view
    (not in `exclude`) is the reference; its plane-sweep depth (from the other views) and
    its RGB are forward-warped into the target.
    Returns dict(rgb (3, h, w), depth (h, w), valid (h, w), ref, sources).
    """
    ref, keep = novel_view_reference(cond_T_wc, tgt_T_wc, exclude, rot_weight, "plane_sweep_novel_view")
    sub = torch.tensor(keep)
    depth, valid, src = plane_sweep_at_view(cond_rgb[sub], cond_K[sub], cond_T_wc[sub], keep.index(ref), max_sources, rot_weight, **sweep)
    rgb, d, v = forward_warp(cond_rgb[ref : ref + 1], depth[None], cond_K[ref : ref + 1], cond_T_wc[ref : ref + 1], tgt_K, tgt_T_wc, tgt_hw)
    return {"rgb": rgb, "depth": d, "valid": v, "ref": ref, "sources": [keep[i] for i in src]}


def depth_range_from_poses(cond_T_wc: torch.Tensor, d_min: float = 0.2, d_max: float = 20.0) -> tuple[float, float]:
    """A pose-only sweep range (no depth): at least 2x the largest camera baseline to d_max.

    Used when no better prior is configured; clamps to [d_min, d_max].
    """
    c = cond_T_wc[:, :3, 3]
    base = float(torch.cdist(c, c).max()) if c.shape[0] > 1 else 0.0
    return max(d_min, min(2.0 * base, d_max / 2)), d_max


def find_target_in_cond(cond_T_wc: torch.Tensor, tgt_T_wc: torch.Tensor, tol: float = 1e-4):
    """Index of the conditioning view whose pose equals the target's (within `tol`), else None."""
    diff = (cond_T_wc - tgt_T_wc.to(cond_T_wc)).abs().flatten(1).amax(1)  # (N,)
    i = int(diff.argmin())
    return i if float(diff[i]) <= tol else None


def _to_hw(x: torch.Tensor, hw) -> torch.Tensor:
    """(h0, w0) map -> (h, w), nearest (same camera, other resolution); bool stays bool."""
    if tuple(x.shape) == tuple(hw):
        return x
    y = F.interpolate(x[None, None].float(), size=tuple(hw), mode="nearest")[0, 0]
    return y > 0.5 if x.dtype == torch.bool else y


BASELINE_METHODS = ("reprojection", "plane_sweep", "mvs")


def run_baselines(
    cond_rgb, cond_K, cond_T_wc, tgt_K, tgt_T_wc, tgt_hw, cond_depth=None, target_index="auto",
    fill: bool = True, max_sources: int = 4, rot_weight: float = 1.0, methods=None, mvs_cfg=None, **sweep,
) -> dict:
    """The baselines for one target, ready to score against ground truth.

    cond_rgb (N, 3, H, W) [0, 1]; cond_K (N, 3, 3); cond_T_wc (N, 4, 4); cond_depth
    (N, H, W) or None (then no reprojection baseline); tgt_K (3, 3) for tgt_hw; tgt_T_wc (4, 4).
    target_index: the target's index among the conditioning views, None for a novel view,
    or "auto" (match poses). If the target is conditioning view i, reprojection uses the
    nearest OTHER view and plane sweep / MVS use view i's RGB as reference (resized to tgt_hw
    if needed) - never view i's depth. fill=True fills holes (`fill_holes`) so every baseline
    is dense like the model's output; "coverage" is the fraction of target pixels the
    baseline produced before filling and "depth_sparse" (h, w) the unfilled depth (0 =
    invalid). methods: subset of BASELINE_METHODS (default all that apply). **sweep:
    `plane_sweep_depth` options (d_min, d_max, ...) for "plane_sweep" only; mvs_cfg: a
    mvgd_core.mvs.MVSConfig for "mvs" (default MVSConfig(max_sources=max_sources)).
    Returns {"reprojection": {...}, "plane_sweep": {...}, "mvs": {...}}, each dict(depth (h, w),
    depth_sparse (h, w), rgb (3, h, w) or None, valid (h, w), coverage float); "mvs" adds
    confidence (h, w) in [0, 1] (0 where nothing was estimated).
    """
    from mvgd_core.mvs import MVSConfig, mvs_at_view, mvs_novel_view

    methods = BASELINE_METHODS if methods is None else tuple(methods)
    bad = [m for m in methods if m not in BASELINE_METHODS]
    if bad:
        raise ValueError(f"run_baselines: unknown methods {bad}; choose from {BASELINE_METHODS}")
    mvs_cfg = MVSConfig(max_sources=max_sources) if mvs_cfg is None else mvs_cfg
    if target_index == "auto":
        target_index = find_target_in_cond(cond_T_wc, tgt_T_wc)
    out = {}

    def pack(rgb, depth, valid):
        cov = float(valid.float().mean())
        sparse = torch.where(valid, depth, torch.zeros_like(depth))
        if fill:
            depth, rgb, valid = fill_holes(depth, valid, rgb)
        return {"depth": depth, "depth_sparse": sparse, "rgb": rgb, "valid": valid, "coverage": cov}

    if "reprojection" in methods and cond_depth is not None and cond_T_wc.shape[0] > (1 if target_index is not None else 0):
        r = reproject_nearest(cond_rgb, cond_depth, cond_K, cond_T_wc, tgt_K, tgt_T_wc, tgt_hw, target_index, 1, rot_weight)
        out["reprojection"] = {**pack(r["rgb"], r["depth"], r["valid"]), "views": r["views"]}
    if cond_T_wc.shape[0] < 2:
        return out
    if target_index is not None:
        rgb = cond_rgb[target_index]
        if tuple(rgb.shape[-2:]) != tuple(tgt_hw):
            rgb = F.interpolate(rgb[None], size=tuple(tgt_hw), mode="bilinear", align_corners=False)[0]
        if "plane_sweep" in methods:
            d, v, src = plane_sweep_at_view(cond_rgb, cond_K, cond_T_wc, target_index, max_sources, rot_weight, **sweep)
            out["plane_sweep"] = {**pack(rgb, _to_hw(d, tgt_hw), _to_hw(v, tgt_hw)), "sources": src}
        if "mvs" in methods:
            r = mvs_at_view(cond_rgb, cond_K, cond_T_wc, target_index, mvs_cfg)
            out["mvs"] = {**pack(rgb, _to_hw(r.depth, tgt_hw), _to_hw(r.valid, tgt_hw)), "confidence": _to_hw(r.confidence, tgt_hw), "sources": r.sources}
    else:
        if "plane_sweep" in methods:
            r = plane_sweep_novel_view(cond_rgb, cond_K, cond_T_wc, tgt_K, tgt_T_wc, tgt_hw, None, max_sources, rot_weight, **sweep)
            out["plane_sweep"] = {**pack(r["rgb"], r["depth"], r["valid"]), "ref": r["ref"], "sources": r["sources"]}
        if "mvs" in methods:
            r = mvs_novel_view(cond_rgb, cond_K, cond_T_wc, tgt_K, tgt_T_wc, tgt_hw, None, mvs_cfg, rot_weight)
            out["mvs"] = {**pack(r["rgb"], r["depth"], r["valid"]), "confidence": r["confidence"], "ref": r["ref"], "sources": r["sources"]}
    return out


def run_baselines_on_sample(sample, **kw) -> dict:
    """`run_baselines` for a `MultiViewSample` (uses sample.cond_depth when present)."""
    H, W = sample.tgt_depth.shape[-2:]
    return run_baselines(sample.cond_rgb, sample.cond_K, sample.cond_T_wc, sample.tgt_K, sample.tgt_T_wc, (H, W), cond_depth=sample.cond_depth, **kw)


__all__ = [
    "BASELINE_METHODS", "find_target_in_cond", "run_baselines", "run_baselines_on_sample",
    "pose_distance", "nearest_views", "forward_warp", "fill_holes", "reproject_nearest",
    "inverse_depth_planes", "plane_sweep_depth", "plane_sweep_at_view", "novel_view_reference", "plane_sweep_novel_view",
    "depth_range_from_poses",
]
