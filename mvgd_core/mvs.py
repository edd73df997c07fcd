"""Classical multi-view stereo: the fair RGB-and-poses baseline every depth number is reported next to.

Pipeline for one reference view and V source views (pure torch, CPU-fast, batched over planes):
1. Source selection (`select_sources`): views that look the same way (optical axes within
   `max_view_angle_deg`) and have parallax. Each candidate gets DeepVideoMVS's keyframe penalty
   (ardaduz/deep-video-mvs, dvmvs/keyframe_buffer.py `calculate_penalty`: squared distance to
   an optimal baseline, 5x heavier when the baseline is too SMALL, plus a rotation term); the
   optimal baseline is a fraction of the widest usable one, so the rule is scale-free.
2. Depth range from the poses (`depth_range`): depths on a grid scaled by the SSN scene scale
   s (mvgd_core/ssn.py) are kept where the reference ray's point is inside some source and
   shows parallax there (near: points leave the sources; far: they stop moving). Scaling the
   world by k scales the range by k. Planes are uniform in inverse depth (uniform in
   disparity), as in DeepVideoMVS / MVSNet-style sweeps.
3. Matching cost: 1 - ZNCC of luma over a `window` x `window` window, per source (invariant to
   gain and offset of either image). Occlusion: per plane and pixel the mean of the
   `best_k` lowest source costs among the sources that see the point (Kang, Szeliski & Chai,
   CVPR 2001, "temporal selection"), so one source that is occluded or out of view does not
   veto the right depth.
4. Aggregation: semi-global matching over 4 scanline paths (Hirschmueller, PAMI 2008,
   Eq. 13: L_r(p, d) = C(p, d) + min(L_r(p-r, d), L_r(p-r, d+-1) + P1, min_i L_r(p-r, i) + P2)
   - min_i L_r(p-r, i)), with P2 lowered across intensity edges (ibid. adapts P2 = P2' / |dI|;
   we use P1 + (P2 - P1) / (1 + |dI| / p2_edge), which stays >= P1).
   Every path of one orientation runs in one batched tensor step (the volume is (paths, D, N)).
5. Winner take all on the aggregated cost + sub-plane refinement: a parabola in inverse depth
   through the RAW matching cost of the winner and its neighbours (SGM's penalties skew the
   aggregated curve; fitting it biased depths towards plane centres on a test plane).
6. Confidence: the probability mass of softmax(-L / T) on the winner and its two neighbours
   (MVSNet's photometric confidence, xy-guo/MVSNet_pytorch models/mvsnet.py, sums the 4
   hypotheses around the winner); pixels below `min_confidence` are invalid.
7. Geometric consistency (MVSNet / COLMAP-style filtering, e.g. MVSNet eval.py
   `check_geometric_consistency`): the depth of `check_views` sources is estimated too (each
   with the reference among its own sources); a reference pixel survives when, in at least
   `min_consistent` of them, projecting it into the source, reading that source's depth and
   projecting back lands within `geo_pixel_thresh` px with relative depth difference below
   `geo_depth_thresh`. Its depth becomes the mean of the agreeing estimates (MVSNet fusion).

Conventions (mvgd_core/cameras.py): OpenCV optical frames, camera-to-world T_wc, metres,
z-depth, 0 = invalid. Images float (3, H, W) in [0, 1]; sources may have another size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mvgd_core.cameras import invert_pose, pixel_grid
from mvgd_core.ssn import relative_poses

_UNSEEN_COST = 1.0  # ZNCC 0: a plane no source sees is neither supported nor contradicted


@dataclass(frozen=True)
class MVSConfig:
    """Options of `mvs_depth`. window, p2, temperature, min_confidence and
    optimal_baseline_frac were chosen among a few values on every 2nd tabletop / every 4th
    held-out HoloLens frame at 96x128 (benchmarks/bench_baselines.py); the rest are the
    first values tried. Cost at 96x128, 4 sources, one thread: ~0.45-0.6 s per frame (shared CPU).

    Sweep (`depth_range`): num_planes; range_min_frac (share of reference pixels a depth must be
    useful for); min_disparity_px (parallax that makes a depth useful); near_baseline_ratio
    (no plane nearer than this times the smallest source baseline); d_min / d_max override
    the range (metres) when both are set.
    Cost: window (ZNCC window, odd); best_k (sources averaged per pixel and plane).
    SGM: p1, p2 (penalties in cost units: +-1 plane and larger jumps); p2_edge (intensity step
    at which P2 - P1 halves).
    Confidence: temperature (of softmax(-cost / T)); min_confidence.
    Consistency: check_views (sources whose depth is estimated for the check, 0 = off);
    min_consistent; geo_pixel_thresh (px); geo_depth_thresh (relative).
    Selection: max_sources; max_view_angle_deg; optimal_baseline_frac (of the widest usable
    baseline); rot_weight (penalty per radian of rotation, squared like DeepVideoMVS).
    """

    num_planes: int = 64
    range_min_frac: float = 0.1
    near_baseline_ratio: float = 1.0
    min_disparity_px: float = 1.0
    d_min: float | None = None
    d_max: float | None = None
    window: int = 7
    best_k: int = 2
    p1: float = 0.03
    p2: float = 1.0
    p2_edge: float = 0.1
    temperature: float = 0.1
    min_confidence: float = 0.5
    check_views: int = 2
    min_consistent: int = 1
    geo_pixel_thresh: float = 1.0
    geo_depth_thresh: float = 0.05
    max_sources: int = 4
    max_view_angle_deg: float = 60.0
    optimal_baseline_frac: float = 0.4
    rot_weight: float = 1.0

    def __post_init__(self):
        if self.num_planes < 3:
            raise ValueError(f"MVSConfig.num_planes must be >= 3, got {self.num_planes}")
        if self.window < 1 or self.window % 2 == 0:
            raise ValueError(f"MVSConfig.window must be odd and >= 1, got {self.window}")
        if not 0 < self.range_min_frac <= 1 or self.min_disparity_px <= 0:
            raise ValueError("MVSConfig: need 0 < range_min_frac <= 1 and min_disparity_px > 0")
        if (self.d_min is None) != (self.d_max is None) or (self.d_min is not None and not 0 < self.d_min < self.d_max):
            raise ValueError(f"MVSConfig: set both 0 < d_min < d_max or neither, got {self.d_min}, {self.d_max}")
        if self.best_k < 1 or self.max_sources < 1 or self.check_views < 0 or self.min_consistent < 1:
            raise ValueError("MVSConfig: best_k, max_sources, min_consistent must be >= 1 and check_views >= 0")
        if self.p1 < 0 or self.p2 < self.p1 or self.p2_edge <= 0 or self.temperature <= 0 or not 0 <= self.min_confidence <= 1:
            raise ValueError("MVSConfig: need 0 <= p1 <= p2, p2_edge > 0, temperature > 0, min_confidence in [0, 1]")


@dataclass
class MVSResult:
    """depth (H, W) metres, 0 = invalid; confidence (H, W) in [0, 1] (photometric, before
    the filters); valid (H, W) bool; depth_raw (H, W): the aggregated winner before the
    confidence and consistency filters (0 only where no source sees it): SGM's dense guess;
    depth_range (d_min, d_max) swept; sources: the source indices used, when known."""

    depth: torch.Tensor
    confidence: torch.Tensor
    valid: torch.Tensor
    depth_raw: torch.Tensor | None = None
    depth_range: tuple[float, float] = (0.0, 0.0)
    sources: list[int] | None = None


# --------------------------------------------------------------------------- checks and helpers


def _check_inputs(ref_rgb, ref_K, ref_T_wc, src_rgb, src_K, src_T_wc) -> None:
    if ref_rgb.dim() != 3 or ref_rgb.shape[0] != 3:
        raise ValueError(f"mvs_depth: ref_rgb must be (3, H, W), got {tuple(ref_rgb.shape)}")
    if src_rgb.dim() != 4 or src_rgb.shape[1] != 3:
        raise ValueError(f"mvs_depth: src_rgb must be (V, 3, Hs, Ws), got {tuple(src_rgb.shape)}")
    V = src_rgb.shape[0]
    if V < 1:
        raise ValueError("mvs_depth: needs at least 1 source view, got 0")
    if tuple(ref_K.shape) != (3, 3) or tuple(ref_T_wc.shape) != (4, 4):
        raise ValueError(f"mvs_depth: ref_K must be (3, 3) and ref_T_wc (4, 4), got {tuple(ref_K.shape)}, {tuple(ref_T_wc.shape)}")
    if tuple(src_K.shape) != (V, 3, 3) or tuple(src_T_wc.shape) != (V, 4, 4):
        raise ValueError(f"mvs_depth: src_K must be ({V}, 3, 3) and src_T_wc ({V}, 4, 4), got {tuple(src_K.shape)}, {tuple(src_T_wc.shape)}")


def luma(img: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) -> (..., H, W) luma."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=img.dtype, device=img.device).view(3, 1, 1)
    return (img * w).sum(-3)


def box_mean(x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean over a k x k window of (..., H, W), same size, dividing by the in-image count
    (= avg_pool2d with count_include_pad=False). Separable running sums: O(1) per pixel,
    ~3x faster than avg_pool2d on the (V, D, H, W) volumes."""
    if k <= 1:
        return x
    r = k // 2
    H, W = x.shape[-2:]

    def run(y, n, dim):  # windowed sum along dim (length n), zero padding
        c = F.pad(y.movedim(dim, -1), (r + 1, r)).cumsum(-1)
        return (c[..., k:] - c[..., :-k]).movedim(-1, dim)

    s = run(run(x, W, -1), H, -2)
    ones = torch.ones(H, W, dtype=x.dtype, device=x.device)
    cnt = run(run(ones, W, -1), H, -2)
    return s / cnt


def _axes_angle(T_a: torch.Tensor, T_b: torch.Tensor) -> torch.Tensor:
    """Angle (rad) between optical axes (z columns) of (4, 4) and (N, 4, 4) poses -> (N,)."""
    cos = (T_a[:3, 2][None] * T_b[:, :3, 2]).sum(-1).clamp(-1.0, 1.0)
    return torch.arccos(cos)


# --------------------------------------------------------------------------- 1-2. views and range


def select_sources(ref_T_wc: torch.Tensor, cond_T_wc: torch.Tensor, k: int, cfg: MVSConfig = MVSConfig(), exclude=None) -> list[int]:
    """Indices of up to k conditioning views (N, 4, 4) to match the reference (4, 4) against.

    Candidates: not excluded, optical axis within cfg.max_view_angle_deg of the reference's.
    Penalty (DeepVideoMVS keyframe_buffer.calculate_penalty, baseline in units of the optimal
    one): (b / b_opt - 1)^2, times 5 when b < b_opt, + (rot_weight * rotation angle)^2, with
    b_opt = optimal_baseline_frac * widest candidate baseline. Lowest penalty first; views
    beyond the angle limit only fill up when too few candidates are left. Raises ValueError
    when nothing is left.
    """
    N = cond_T_wc.shape[0]
    excl = set([] if exclude is None else ([exclude] if isinstance(exclude, int) else list(exclude)))
    idx = [i for i in range(N) if i not in excl]
    if not idx:
        raise ValueError(f"select_sources: no conditioning view left after excluding {sorted(excl)} (N={N})")
    T = cond_T_wc[idx].double()
    ref = ref_T_wc.double().to(T.device)
    b = (T[:, :3, 3] - ref[:3, 3]).norm(dim=-1)  # (n,)
    R = ref[:3, :3].T @ T[:, :3, :3]
    rot = torch.arccos(((R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1))
    ok = _axes_angle(ref, T) <= math.radians(cfg.max_view_angle_deg)
    b_max = float(b[ok].max()) if bool(ok.any()) else float(b.max())
    if b_max <= 0:
        pen = (cfg.rot_weight * rot) ** 2
    else:
        x = b / (cfg.optimal_baseline_frac * b_max) - 1.0
        pen = torch.where(x < 0, 5.0, 1.0) * x**2 + (cfg.rot_weight * rot) ** 2
    pen = pen + (~ok) * 1e6  # out-of-angle views only as a last resort
    order = torch.argsort(pen, stable=True)[: min(k, len(idx))]
    return [idx[int(i)] for i in order]


def depth_range(ref_K, ref_T_wc, src_K, src_T_wc, ref_hw, src_hw, cfg: MVSConfig = MVSConfig()) -> tuple[float, float] | None:
    """(d_min, d_max) metres for the sweep, from the poses alone; None when there is no baseline.

    The SSN scene scale s of the sources relative to the reference (max |t| component,
    mvgd_core/ssn.py) sets a log-spaced grid of candidate depths s * [1e-2, 1e4]. A depth is
    useful for a reference pixel when its point lies in front of and inside some source AND
    moves there by >= min_disparity_px from where the same ray at infinity lands (parallax).
    The range is the span of depths useful for >= range_min_frac of a grid of reference
    pixels: near, points leave the sources' images; far, they stop moving; convergent views
    (a camera circling an object) get a bounded range. Everything scales with s, so scaling
    the world by k scales the range by k. cfg.d_min/d_max, when set, override.
    """
    if cfg.d_min is not None:
        return float(cfg.d_min), float(cfg.d_max)
    dt = torch.float64
    Tr, Ts, Ks = ref_T_wc.to(dt), src_T_wc.to(dt), src_K.to(dt)
    rel = relative_poses(Ts[None], Tr[None])[0]  # (V, 4, 4): source -> reference camera
    s = float(rel[:, :3, 3].abs().amax())  # SSN's scale, without its min_scale clamp
    if s * float(ref_K[0, 0]) < 1e-6:
        return None
    H, W = ref_hw
    v, u = torch.meshgrid(torch.linspace(0, H - 1, 12, dtype=dt), torch.linspace(0, W - 1, 16, dtype=dt), indexing="ij")
    rays = torch.stack([u, v, torch.ones_like(u)], -1).reshape(-1, 3) @ torch.linalg.inv(ref_K.to(dt)).T  # (P, 3)
    ds = s * torch.logspace(-2, 4, 121, dtype=dt)  # (G,)
    T_sr = invert_pose(Ts) @ Tr  # (V, 4, 4) reference -> source
    dirs = torch.einsum("vij,pj->vpi", Ks @ T_sr[:, :3, :3], rays)  # (V, P, 3): K_s R ray (the vanishing point)
    kt = (Ks @ T_sr[:, :3, 3:])[..., 0]  # (V, 3)
    q = ds[:, None, None, None] * dirs[None] + kt[None, :, None, :]  # (G, V, P, 3)
    uv = q[..., :2] / q[..., 2:].clamp_min(1e-12)
    Hs, Ws = src_hw
    inside = (q[..., 2] > 0) & (uv[..., 0] >= 0) & (uv[..., 0] <= Ws - 1) & (uv[..., 1] >= 0) & (uv[..., 1] <= Hs - 1)
    inf_ok = dirs[..., 2] > 1e-12  # (V, P) the ray's far end is in front of the source
    uv_inf = dirs[..., :2] / dirs[..., 2:].clamp_min(1e-12)
    par = torch.where(inf_ok[None], (uv - uv_inf[None]).norm(dim=-1), torch.full_like(uv[..., 0], float("inf")))
    useful = (inside & (par >= cfg.min_disparity_px)).any(1).to(dt).mean(-1)  # (G,)
    # Nothing nearer than near_baseline_ratio x the smallest baseline: nearer points would be
    # seen at triangulation angles of ~45 deg and more, where fronto-parallel windows no longer
    # match (MVSNet's view selection scores angles around 5 deg, COLMAP's stays below ~40 deg).
    # Forward motion needs this: its sources see points just ahead of the reference, too.
    b_min = float((Ts[:, :3, 3] - Tr[:3, 3]).norm(dim=-1).min())
    keep = torch.nonzero((useful >= cfg.range_min_frac) & (ds >= cfg.near_baseline_ratio * b_min))[:, 0]
    if keep.numel() == 0:
        return None
    return float(ds[keep[0]]), float(ds[keep[-1]])


# --------------------------------------------------------------------------- 3. cost volume


def warp_grid(H, W, ref_K, ref_T_wc, src_K, src_T_wc, depths, src_hw):
    """Sampling grid of the reference pixels at the given depths in every source.

    depths: (D,) one depth per plane (fronto-parallel sweep), or (D, H, W) one per plane and
    pixel (a band around a depth map, mvgd_core/refine.py). -> grid (V, D*H, W, 2) in [-1, 1]
    (align_corners=True) and seen (V, D, H, W) bool (in front of and inside the source)."""
    dev, dt = depths.device, depths.dtype
    rays = pixel_grid(H, W, dev, dt) @ torch.linalg.inv(ref_K.to(dev, dt)).T  # (H, W, 3), z = 1
    T_sr = invert_pose(src_T_wc.to(dev, dt)) @ ref_T_wc.to(dev, dt)  # (V, 4, 4) ref -> source
    KR = src_K.to(dev, dt) @ T_sr[:, :3, :3]  # (V, 3, 3)
    Kt = (src_K.to(dev, dt) @ T_sr[:, :3, 3:])[:, :, 0]  # (V, 3)
    # K_s (R (d ray) + t) = d (K_s R ray) + K_s t: one (V, 3, H, W) product, then one fused
    # multiply-add per plane and coordinate; rows 0 and 1 are pre-scaled to grid_sample's
    # [-1, 1] units (align_corners=True: x_n = 2 u / (Ws - 1) - 1).
    Hs, Ws = src_hw
    scale = torch.tensor([2.0 / (Ws - 1), 2.0 / (Hs - 1), 1.0], device=dev, dtype=dt)
    a = torch.einsum("vij,hwj->vihw", KR * scale[:, None], rays)  # (V, 3, H, W)
    kt = Kt * scale  # (V, 3)
    V, D = a.shape[0], depths.shape[0]
    dep = depths[None, :, None, None] if depths.ndim == 1 else depths[None]  # broadcasts to (V, D, H, W)
    z = torch.addcmul(kt[:, 2, None, None, None], dep, a[:, None, 2])  # (V, D, H, W)
    front = z > 1e-6
    z = z.clamp_min(1e-6)
    grid = torch.stack([torch.addcmul(kt[:, c, None, None, None], dep, a[:, None, c]) / z - 1 for c in (0, 1)], -1)  # (V, D, H, W, 2)
    seen = front & (grid.abs().amax(-1) <= 1)
    return grid.reshape(V, D * H, W, 2), seen


def warp_sources(gray_src: torch.Tensor, H: int, W: int, ref_K, ref_T_wc, src_K, src_T_wc, depths, window: int):
    """Sources' luma (V, Hs, Ws) sampled where the reference pixels (H, W) lie at `depths` ((D,)
    or (D, H, W), as `warp_grid`). -> (warped (V, D, H, W); seen (V, D, H, W) bool: in front of
    the source and a window mostly inside it; grid (V, D*H, W, 2) from `warp_grid`)."""
    grid, seen = warp_grid(H, W, ref_K, ref_T_wc, src_K, src_T_wc, depths, tuple(gray_src.shape[-2:]))
    warped = F.grid_sample(gray_src[:, None].to(grid.dtype), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return warped.reshape(gray_src.shape[0], depths.shape[0], H, W), box_mean(seen.to(grid.dtype), window) > 0.5, grid


def zncc_cost(ref_g: torch.Tensor, warped: torch.Tensor, window: int) -> torch.Tensor:
    """1 - ZNCC over window x window. ref_g (H, W), warped (V, D, H, W) -> (V, D, H, W) in [0, 2].

    The variance floor (a 1 % grey-level std) sends flat windows to ZNCC ~ 0: no evidence
    either way, instead of amplified noise."""
    eps = 1e-4
    mr = box_mean(ref_g, window)
    vr = (box_mean(ref_g * ref_g, window) - mr * mr).clamp_min(0)
    ms = box_mean(warped, window)
    vs = (box_mean(warped * warped, window) - ms * ms).clamp_min(0)
    cov = box_mean(warped * ref_g, window) - ms * mr
    return 1.0 - cov / ((vr + eps) * (vs + eps)).sqrt()


def cost_volume(ref_rgb, ref_K, ref_T_wc, src_rgb, src_K, src_T_wc, depths, cfg: MVSConfig):
    """Matching cost of every plane. -> (cost (D, H, W), n_seen (D, H, W) sources seeing it).

    Per source 1 - ZNCC (`zncc_cost`); per pixel and plane the mean of the best_k costs of the
    sources that see the point (a window mostly inside the source)."""
    H, W = ref_rgb.shape[-2:]
    V = src_rgb.shape[0]
    warped, seen, _ = warp_sources(luma(src_rgb), H, W, ref_K, ref_T_wc, src_K, src_T_wc, depths, cfg.window)
    c = zncc_cost(luma(ref_rgb), warped, cfg.window)  # (V, D, H, W)
    c = torch.where(seen, c, torch.full_like(c, 3.0))  # unseen sorts last
    k = min(cfg.best_k, V)
    best = c.topk(k, dim=0, largest=False).values if k < V else c  # (k, D, H, W)
    n_seen = seen.sum(0)  # (D, H, W)
    use = torch.arange(k, device=c.device)[:, None, None, None] < n_seen.clamp_max(k)[None]
    vol = (best * use).sum(0) / use.sum(0).clamp_min(1)
    return torch.where(n_seen > 0, vol, torch.full_like(vol, _UNSEEN_COST)), n_seen


# --------------------------------------------------------------------------- 4. SGM


def _sgm_scan(C: torch.Tensor, P1: float, P2: torch.Tensor) -> torch.Tensor:
    """Hirschmueller's path recursion, all paths at once, step-major.

    C (L, P, D, N): at each of L steps, P paths' costs for D hypotheses in N parallel lanes;
    P2 (L, P, 1, N): the large-jump penalty at each step. -> aggregated L_r (L, P, D, N).
    The loop makes 8 in-place ops per step into one preallocated buffer whose hypothesis axis
    is padded with inf (the d +- 1 neighbours need no concatenation): on CPU it is bound by the
    per-op overhead, and every op is a point where another Python thread may take the GIL."""
    L, P, D, N = C.shape
    out = torch.full((L, P, D + 2, N), float("inf"), dtype=C.dtype, device=C.device)
    out[0, :, 1:-1] = C[0]
    m = torch.empty((P, 1, N), dtype=C.dtype, device=C.device)
    jump = torch.empty_like(m)
    for x in range(1, L):
        prev, cur = out[x - 1], out[x, :, 1:-1]
        torch.amin(prev[:, 1:-1], 1, keepdim=True, out=m)
        torch.minimum(prev[:, 2:], prev[:, :-2], out=cur)  # d +- 1
        cur.add_(P1)
        torch.minimum(cur, prev[:, 1:-1], out=cur)
        torch.add(m, P2[x], out=jump)
        torch.minimum(cur, jump, out=cur)
        cur.add_(C[x]).sub_(m)  # subtracting m keeps L bounded (ibid.)
    return out[:, :, 1:-1]


def sgm_aggregate(vol: torch.Tensor, gray: torch.Tensor, p1: float, p2: float, p2_edge: float) -> torch.Tensor:
    """Mean of the 4 scanline paths (left->right, right->left, top->bottom, bottom->top).

    vol (D, H, W) matching cost; gray (H, W) reference luma for the edge-aware P2; p1, p2,
    p2_edge: the penalties (MVSConfig). -> (D, H, W). All four paths run in one loop of
    max(H, W) steps: the vertical ones transposed, every path padded to max(H, W) lanes and
    steps (padding lanes are independent, and padding steps come after a path's real ones)."""
    H, W = vol.shape[-2:]
    n = max(H, W)

    def p2_at(g):  # (lanes, steps) image -> penalty at each step
        dI = torch.cat([torch.zeros_like(g[:, :1]), (g[:, 1:] - g[:, :-1]).abs()], 1)
        return p1 + (p2 - p1) / (1.0 + dI / p2_edge)

    def padded(x):  # (..., lanes, steps) -> (..., n, n)
        return F.pad(x, (0, n - x.shape[-1], 0, n - x.shape[-2]))

    vT, gT = vol.transpose(1, 2), gray.T
    C = torch.stack([padded(vol), padded(vol.flip(-1)), padded(vT), padded(vT.flip(-1))])  # (4, D, lanes, steps)
    P2 = torch.stack([padded(p2_at(g)) for g in (gray, gray.flip(-1), gT, gT.flip(-1))])[:, None]  # (4, 1, lanes, steps)
    Lr = _sgm_scan(C.permute(3, 0, 1, 2).contiguous(), p1, P2.permute(3, 0, 1, 2).contiguous()).permute(1, 2, 3, 0)
    return (Lr[0, :, :H, :W] + Lr[1, :, :H, :W].flip(-1) + Lr[2, :, :W, :H].transpose(1, 2) + Lr[3, :, :W, :H].flip(-1).transpose(1, 2)) / 4.0


def guided_filter(vol: torch.Tensor, guide: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """Each slice of vol (D, H, W) filtered by the guided filter (He, Sun & Tang, ECCV 2010) with the
    grey image guide (H, W) over (2 radius + 1)^2 windows: fast cost-volume filtering (Hosni et al.,
    CVPR 2011): an edge-aware local aggregation in a fixed number of box filters, where SGM's
    scanlines take ~1000 small ops (`sgm_aggregate` at 96x128; about 3x the time on this CPU,
    benchmarks/bench_cost_filter.py). eps: how much image variance counts as an edge (larger:
    closer to a plain box filter). -> (D, H, W)."""
    k = 2 * radius + 1
    mean_i = box_mean(guide, k)
    var_i = box_mean(guide * guide, k) - mean_i * mean_i
    mean_p = box_mean(vol, k)
    a = (box_mean(guide[None] * vol, k) - mean_i[None] * mean_p) / (var_i[None] + eps)
    b = mean_p - a * mean_i[None]
    return box_mean(a, k) * guide[None] + box_mean(b, k)


# --------------------------------------------------------------------------- 5-6. WTA, refinement, confidence


def _winner(agg: torch.Tensor, raw: torch.Tensor, depths: torch.Tensor, temperature: float):
    """WTA on the aggregated cost, parabolic sub-plane refinement, MVSNet-style confidence.

    agg, raw (D, H, W): aggregated and raw matching cost; depths (D,) near to far.
    The parabola goes through the RAW cost around the aggregated winner: SGM's smoothness
    terms flatten and skew the aggregated curve, which biases a sub-plane fit on it towards
    the plane centres. -> depth (H, W), confidence (H, W), index (H, W)."""
    D = agg.shape[0]
    best, k = agg.min(0)
    inv = 1.0 / depths
    k0, k2 = (k - 1).clamp(0, D - 1), (k + 1).clamp(0, D - 1)
    c0, c1, c2 = (raw.gather(0, i[None])[0] for i in (k0, k, k2))
    denom = c0 - 2 * c1 + c2
    off = torch.where((k > 0) & (k < D - 1) & (denom > 1e-9), 0.5 * (c0 - c2) / denom.clamp_min(1e-9), torch.zeros_like(best))
    step = (inv[-1] - inv[0]) / (D - 1)
    depth = 1.0 / (inv[k] + off.clamp(-0.5, 0.5) * step)
    prob = torch.softmax(-(agg - best[None]) / temperature, 0)  # (D, H, W)
    mass = sum(prob.gather(0, (k + o).clamp(0, D - 1)[None])[0] * ((k + o >= 0) & (k + o < D)) for o in (-1, 0, 1))
    return depth, mass.clamp(0, 1), k


def _single_view_depth(ref_rgb, ref_K, ref_T_wc, src_rgb, src_K, src_T_wc, cfg: MVSConfig):
    """Steps 2-6 for one reference. -> (depth, confidence, valid (H, W), depth range or None)."""
    H, W = ref_rgb.shape[-2:]
    dev = ref_rgb.device
    rng = depth_range(ref_K, ref_T_wc, src_K, src_T_wc, (H, W), tuple(src_rgb.shape[-2:]), cfg)
    if rng is None:  # all cameras at one place: no parallax, no depth
        z = torch.zeros(H, W, device=dev)
        return z, z.clone(), torch.zeros(H, W, dtype=torch.bool, device=dev), None
    d_min, d_max = rng
    depths = 1.0 / torch.linspace(1.0 / d_min, 1.0 / d_max, cfg.num_planes, device=dev)  # (D,) near to far
    ref_rgb, src_rgb = ref_rgb.float(), src_rgb.float()
    vol, n_seen = cost_volume(ref_rgb, ref_K, ref_T_wc, src_rgb, src_K, src_T_wc, depths, cfg)
    agg = sgm_aggregate(vol, luma(ref_rgb), cfg.p1, cfg.p2, cfg.p2_edge)
    depth, conf, k = _winner(agg, vol, depths, cfg.temperature)
    valid = n_seen.gather(0, k[None])[0] > 0
    return depth, torch.where(valid, conf, torch.zeros_like(conf)), valid, rng


# --------------------------------------------------------------------------- 7. geometric consistency


def _reproject_check(depth_r, K_r, T_r, depth_s, K_s, T_s, cfg: MVSConfig):
    """MVSNet's forward-backward check of reference depth (H, W) against one source's (Hs, Ws).

    -> (ok (H, W) bool, depth of the source's estimate in the reference frame (H, W))."""
    H, W = depth_r.shape
    Hs, Ws = depth_s.shape
    dev, dt = depth_r.device, depth_r.dtype
    pix = pixel_grid(H, W, dev, dt)  # (H, W, 3) homogeneous pixels
    X_r = (pix @ torch.linalg.inv(K_r.to(dev, dt)).T) * depth_r[..., None]  # (H, W, 3) ref camera
    T_sr = invert_pose(T_s.to(dev, dt)) @ T_r.to(dev, dt)
    X_s = X_r @ T_sr[:3, :3].T + T_sr[:3, 3]
    uvw = X_s @ K_s.to(dev, dt).T
    uv = uvw[..., :2] / uvw[..., 2:].clamp_min(1e-6)
    g = torch.stack([2 * uv[..., 0] / (Ws - 1) - 1, 2 * uv[..., 1] / (Hs - 1) - 1], -1)
    inside = (uvw[..., 2] > 1e-6) & (g.abs() <= 1).all(-1)
    d_s = F.grid_sample(depth_s[None, None], g[None], mode="nearest", padding_mode="zeros", align_corners=True)[0, 0]
    uv1 = torch.cat([uv, torch.ones_like(uv[..., :1])], -1)
    Y_s = (uv1 @ torch.linalg.inv(K_s.to(dev, dt)).T) * d_s[..., None]  # the source's own surface point
    T_rs = invert_pose(T_sr)
    Y_r = Y_s @ T_rs[:3, :3].T + T_rs[:3, 3]
    back = Y_r @ K_r.to(dev, dt).T
    uv_back = back[..., :2] / back[..., 2:].clamp_min(1e-6)
    pix_err = (uv_back - pix[..., :2]).norm(dim=-1)
    rel = (Y_r[..., 2] - depth_r).abs() / depth_r.clamp_min(1e-6)
    ok = inside & (d_s > 0) & (depth_r > 0) & (pix_err < cfg.geo_pixel_thresh) & (rel < cfg.geo_depth_thresh)
    return ok, Y_r[..., 2]


# --------------------------------------------------------------------------- public API


def mvs_depth(ref_rgb, ref_K, ref_T_wc, src_rgb, src_K, src_T_wc, cfg: MVSConfig = MVSConfig()) -> MVSResult:
    """Depth of a reference view from V >= 1 source views (RGB and poses only, never depth).

    ref_rgb (3, H, W) [0, 1]; ref_K (3, 3); ref_T_wc (4, 4); src_rgb (V, 3, Hs, Ws); src_K
    (V, 3, 3); src_T_wc (V, 4, 4). All given sources are used for matching (use `mvs_at_view`
    for source selection); the first min(check_views, V) also serve the consistency check,
    each with the reference and the other sources as its own sources.
    Returns MVSResult(depth (H, W) metres, 0 = invalid; confidence (H, W) in [0, 1]; valid).
    """
    _check_inputs(ref_rgb, ref_K, ref_T_wc, src_rgb, src_K, src_T_wc)
    depth, conf, valid, rng = _single_view_depth(ref_rgb, ref_K, ref_T_wc, src_rgb, src_K, src_T_wc, cfg)
    if rng is None:
        return MVSResult(depth, conf, valid, depth.clone(), (0.0, 0.0))
    raw = torch.where(valid, depth, torch.zeros_like(depth))
    valid = valid & (conf >= cfg.min_confidence)
    n_check = min(cfg.check_views, src_rgb.shape[0])
    if n_check > 0:
        all_rgb = torch.cat([ref_rgb[None].to(src_rgb), src_rgb]) if ref_rgb.shape == src_rgb.shape[1:] else None
        n_ok = torch.zeros_like(depth)
        d_sum = depth.clone()
        for v in range(n_check):
            others = [i for i in range(src_rgb.shape[0]) if i != v]
            # the check view's own sources: the reference first, then the other sources
            s_rgb = all_rgb[[0] + [i + 1 for i in others]] if all_rgb is not None else None
            if s_rgb is None:  # reference and sources differ in size: match the source against the reference only
                s_rgb, others = ref_rgb[None].to(src_rgb), []
            s_K = torch.cat([ref_K[None].to(src_K), src_K[others]])
            s_T = torch.cat([ref_T_wc[None].to(src_T_wc), src_T_wc[others]])
            d_v, c_v, ok_v, _ = _single_view_depth(src_rgb[v], src_K[v], src_T_wc[v], s_rgb, s_K, s_T, cfg)
            d_v = torch.where(ok_v & (c_v >= cfg.min_confidence), d_v, torch.zeros_like(d_v))
            ok, d_back = _reproject_check(depth, ref_K, ref_T_wc, d_v, src_K[v], src_T_wc[v], cfg)
            n_ok += ok
            d_sum += torch.where(ok, d_back, torch.zeros_like(d_back))
        valid = valid & (n_ok >= min(cfg.min_consistent, n_check))
        depth = d_sum / (1 + n_ok)
    depth = torch.where(valid, depth, torch.zeros_like(depth))
    return MVSResult(depth, conf, valid, raw, rng)


def mvs_at_view(cond_rgb, cond_K, cond_T_wc, ref: int, cfg: MVSConfig = MVSConfig()) -> MVSResult:
    """MVS depth of conditioning view `ref` from up to cfg.max_sources other views with parallax
    (`select_sources`). cond_rgb (N, 3, H, W); cond_K (N, 3, 3); cond_T_wc (N, 4, 4). Never
    uses any depth. Raises ValueError when there is no other view."""
    if cond_rgb.dim() != 4 or cond_rgb.shape[0] < 2:
        raise ValueError(f"mvs_at_view: needs (N >= 2, 3, H, W) conditioning images, got {tuple(cond_rgb.shape)}")
    src = select_sources(cond_T_wc[ref], cond_T_wc, cfg.max_sources, cfg, exclude=ref)
    r = mvs_depth(cond_rgb[ref], cond_K[ref], cond_T_wc[ref], cond_rgb[src], cond_K[src], cond_T_wc[src], cfg)
    r.sources = src
    return r


def mvs_novel_view(cond_rgb, cond_K, cond_T_wc, tgt_K, tgt_T_wc, tgt_hw, exclude=None, cfg: MVSConfig = MVSConfig(), rot_weight: float = 1.0) -> dict:
    """MVS baseline at any target camera: the nearest conditioning view (baselines.nearest_views,
    not in `exclude`) is the reference; its MVS depth (from the other views), RGB and confidence
    are forward-warped (z-buffered) into the target.
    Returns dict(rgb (3, h, w), depth (h, w), confidence (h, w), valid (h, w), ref, sources)."""
    from mvgd_core.baselines import forward_warp, novel_view_reference  # baselines imports this module

    ref, keep = novel_view_reference(cond_T_wc, tgt_T_wc, exclude, rot_weight, "mvs_novel_view")
    sub = torch.tensor(keep)
    r = mvs_at_view(cond_rgb[sub], cond_K[sub], cond_T_wc[sub], keep.index(ref), cfg)
    one = slice(ref, ref + 1)
    rgb, d, v = forward_warp(cond_rgb[one], r.depth[None], cond_K[one], cond_T_wc[one], tgt_K, tgt_T_wc, tgt_hw)
    conf, _, _ = forward_warp(r.confidence[None, None].expand(1, 3, -1, -1), r.depth[None], cond_K[one], cond_T_wc[one], tgt_K, tgt_T_wc, tgt_hw)
    return {"rgb": rgb, "depth": d, "confidence": conf[0], "valid": v, "ref": ref, "sources": [keep[i] for i in r.sources]}


__all__ = ["MVSConfig", "MVSResult", "select_sources", "depth_range", "warp_grid", "warp_sources", "zncc_cost", "cost_volume", "sgm_aggregate", "guided_filter", "mvs_depth", "mvs_at_view", "mvs_novel_view"]
