"""Procedural posed RGB-D renderer: exact analytic ray casting in torch, no rasterizer.

Every pixel ray is intersected with every primitive of a `Scene` (batched per primitive
type), the nearest hit wins; depth is exact z-depth because the rays are built with unit
optical-z component (ray = R_wc K^-1 [u, v, 1]), so the ray parameter t *is* z-depth.
Shading is Lambertian with one directional light plus ambient; texture albedo is a function
of the surface point only, so views are exactly multi-view consistent. Rays that escape
(outdoor sky) get a sky colour and depth 0 (invalid, like a real sensor).

Entry points:
    out = render(scene, K, T_wc, height, width)          # tensors: rgb (B, H, W, 3) uint8, depth (B, H, W)
    frames = render_sequence(seed, num_frames, height, width)   # list[Frame], deterministic from seed
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mvgd_core.data.scenes import Scene, random_scene
from mvgd_core.data.textures import MAT_DIM, albedo
from mvgd_core.data.trajectories import TRAJECTORY_KINDS, random_intrinsics, random_trajectory
from mvgd_core.data.types import Frame

_EPS = 1e-4  # minimum hit distance (m): avoids self-hits at the ray origin
_CHUNK = 1 << 18  # rays per chunk: bounds memory to ~100 MB whatever the resolution


@dataclass
class RenderOutput:
    """rgb (B, H, W, 3) uint8; depth (B, H, W) float32 z-depth metres (0 = sky/none);
    normal (B, H, W, 3) float32 world normals facing the camera (0 where no hit)."""

    rgb: torch.Tensor
    depth: torch.Tensor
    normal: torch.Tensor


@dataclass(frozen=True)
class ProceduralConfig:
    """Scene/trajectory mixture for `render_sequence`.

    p_indoor: probability of a room (else outdoor layout). trajectories: kinds drawn uniformly
    from TRAJECTORY_KINDS ("forward", "turn", "handheld", "wide"). hfov_deg: horizontal field
    of view range. fps: stamp spacing of sequence frames.
    """

    p_indoor: float = 0.6
    trajectories: tuple[str, ...] = TRAJECTORY_KINDS
    hfov_deg: tuple[float, float] = (50.0, 90.0)
    fps: float = 10.0

    def __post_init__(self):
        bad = [t for t in self.trajectories if t not in TRAJECTORY_KINDS]
        if bad or not self.trajectories:
            raise ValueError(f"ProceduralConfig.trajectories: unknown {bad}; choose from {TRAJECTORY_KINDS}")
        if not 0.0 <= self.p_indoor <= 1.0:
            raise ValueError(f"ProceduralConfig.p_indoor must be in [0, 1], got {self.p_indoor}")


# --------------------------------------------------------------------------- rays


def camera_rays(K: torch.Tensor, T_wc: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """World ray origins (B*H*W, 3) and directions (B*H*W, 3) with optical-z component 1.

    K: (B, 3, 3); T_wc: (B, 4, 4) camera-to-world, OpenCV optical. Pixel centres at integers.
    """
    v, u = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij")
    pix = torch.stack([u, v, torch.ones_like(u)], -1).reshape(-1, 3)  # (HW, 3)
    d_cam = pix @ torch.linalg.inv(K).transpose(-1, -2)  # (B, HW, 3), z = 1
    d = d_cam @ T_wc[:, :3, :3].transpose(-1, -2)  # (B, HW, 3)
    o = T_wc[:, None, :3, 3].expand_as(d)
    return o.reshape(-1, 3), d.reshape(-1, 3)


# --------------------------------------------------------------------------- intersections
# Each returns (t (N,), normal (N, 3), texture point (N, 3), material (N, MAT_DIM)) for the
# nearest primitive of its type; t = inf where the ray misses all of them.


def _hit_boxes(o, d, c, h, R, mat, inside: bool = False):
    # box-local rays: R^T (o - c), R^T d.   (N, M, 3)
    ol = torch.einsum("nk,mkj->nmj", o, R) - torch.einsum("mk,mkj->mj", c, R)
    dl = torch.einsum("nk,mkj->nmj", d, R)
    dl = torch.where(dl.abs() < 1e-9, torch.full_like(dl, 1e-9), dl)  # no 0 division; sign irrelevant then
    inv = 1.0 / dl
    t1, t2 = (-h - ol) * inv, (h - ol) * inv
    tnear = torch.minimum(t1, t2).amax(-1)
    tfar = torch.maximum(t1, t2).amin(-1)
    if inside:  # room: the ray leaves through the far side
        t = torch.where(tfar > _EPS, tfar, torch.full_like(tfar, float("inf")))
    else:
        t = torch.where((tnear <= tfar) & (tnear > _EPS), tnear, torch.full_like(tnear, float("inf")))
    t, idx = t.min(-1)  # (N,)
    rows = torch.arange(len(o))
    pl = ol[rows, idx] + t.nan_to_num(posinf=0.0)[:, None] * dl[rows, idx]  # (N, 3) local hit point
    # face normal: the axis where the hit point is closest to the box surface
    axis = (pl.abs() / h[idx]).argmax(-1)
    nl = torch.zeros_like(pl)
    nl[rows, axis] = torch.sign(pl[rows, axis])
    normal = torch.einsum("nij,nj->ni", R[idx], nl)
    if inside:  # per-face material: -x, +x, -y, +y, -z, +z
        face = axis * 2 + (pl[rows, axis] > 0).long()
        return t, normal, pl, mat[face]
    return t, normal, pl, mat[idx]


def _hit_spheres(o, d, c, r, mat):
    oc = o[:, None] - c  # (N, M, 3)
    a = (d * d).sum(-1, keepdim=True)  # (N, 1)
    b = (oc * d[:, None]).sum(-1)
    cc = (oc * oc).sum(-1) - r * r
    disc = b * b - a * cc
    sq = disc.clamp_min(0).sqrt()
    t0, t1 = (-b - sq) / a, (-b + sq) / a
    t = torch.where(t0 > _EPS, t0, t1)
    t = torch.where((disc >= 0) & (t > _EPS), t, torch.full_like(t, float("inf")))
    t, idx = t.min(-1)
    p = o + t.nan_to_num(posinf=0.0)[:, None] * d
    local = p - c[idx]
    return t, local / r[idx, None], local, mat[idx]


def _hit_cylinders(o, d, c, r, hh, mat):
    oc = o[:, None] - c  # (N, M, 3)
    dx = d[:, None, :2]
    a = (dx * dx).sum(-1).clamp_min(1e-12)
    b = (oc[..., :2] * dx).sum(-1)
    cc = (oc[..., :2] ** 2).sum(-1) - r * r
    disc = b * b - a * cc
    t_side = (-b - disc.clamp_min(0).sqrt()) / a
    z_side = oc[..., 2] + t_side * d[:, None, 2]
    side_ok = (disc >= 0) & (t_side > _EPS) & (z_side.abs() <= hh)
    inf = torch.full_like(t_side, float("inf"))
    t = torch.where(side_ok, t_side, inf)
    dz = d[:, None, 2]
    dz = torch.where(dz.abs() < 1e-9, torch.full_like(dz, 1e-9), dz)
    for sgn in (-1.0, 1.0):  # caps
        tc = (sgn * hh - oc[..., 2]) / dz
        xy = oc[..., :2] + tc[..., None] * d[:, None, :2]
        ok = (tc > _EPS) & ((xy * xy).sum(-1) <= r * r)
        t = torch.minimum(t, torch.where(ok, tc, inf))
    t, idx = t.min(-1)
    p = o + t.nan_to_num(posinf=0.0)[:, None] * d
    local = p - c[idx]
    rel_r = local[:, :2].norm(dim=-1) / r[idx]
    rel_h = local[:, 2].abs() / hh[idx]
    side_n = torch.cat([local[:, :2] / r[idx, None], torch.zeros_like(local[:, :1])], -1)
    cap_n = torch.zeros_like(local)
    cap_n[:, 2] = torch.sign(local[:, 2])
    normal = torch.where((rel_h > rel_r)[:, None], cap_n, side_n)  # whichever surface the point is on
    return t, normal, local, mat[idx]


def _hit_quads(o, d, c, u, v, h, mat):
    n = torch.cross(u, v, dim=-1)  # (M, 3)
    denom = d @ n.T  # (N, M)
    denom = torch.where(denom.abs() < 1e-9, torch.full_like(denom, 1e-9), denom)
    oc = c[None] - o[:, None]  # (N, M, 3)
    t = (oc * n).sum(-1) / denom
    p = -oc + t[..., None] * d[:, None]  # hit point relative to quad centre
    pu, pv = (p * u).sum(-1), (p * v).sum(-1)
    ok = (t > _EPS) & (pu.abs() <= h[:, 0]) & (pv.abs() <= h[:, 1])
    t = torch.where(ok, t, torch.full_like(t, float("inf")))
    t, idx = t.min(-1)
    rows = torch.arange(len(o))
    local = torch.stack([pu[rows, idx], pv[rows, idx], torch.zeros_like(t)], -1)
    return t, n[idx].expand(len(o), 3), local, mat[idx]


def _hit_ground(o, d, mat):
    dz = d[:, 2]
    t = torch.where(dz < -1e-9, -o[:, 2] / dz.clamp_max(-1e-9), torch.full_like(dz, float("inf")))
    t = torch.where((t > _EPS) & (o[:, 2] > 0), t, torch.full_like(t, float("inf")))
    p = o + t.nan_to_num(posinf=0.0)[:, None] * d
    normal = torch.zeros_like(p)
    normal[:, 2] = 1.0
    return t, normal, p, mat.expand(len(o), MAT_DIM)


def _hit_backdrop(o, d, radius: float, height: float, mat):
    a = (d[:, :2] ** 2).sum(-1).clamp_min(1e-12)
    b = (o[:, :2] * d[:, :2]).sum(-1)
    cc = (o[:, :2] ** 2).sum(-1) - radius * radius
    disc = (b * b - a * cc).clamp_min(0)
    t = (-b + disc.sqrt()) / a  # seen from inside: the far root
    p = o + t[:, None] * d
    t = torch.where((t > _EPS) & (p[:, 2] >= 0) & (p[:, 2] <= height), t, torch.full_like(t, float("inf")))
    normal = torch.cat([-p[:, :2] / radius, torch.zeros_like(p[:, :1])], -1)
    # texture in (arc length, 0, z): a wrap-around "terrain" strip
    tex = torch.stack([torch.atan2(p[:, 1], p[:, 0]) * radius, torch.zeros_like(t), p[:, 2]], -1)
    return t, normal, tex, mat.expand(len(o), MAT_DIM)


def _cast(scene: Scene, o: torch.Tensor, d: torch.Tensor):
    """Nearest hit for rays (N, 3): (t (N,), normal (N, 3), texture point (N, 3), material (N, MAT_DIM))."""
    hits = []
    if scene.room_bounds is not None:
        lo, hi = scene.room_bounds
        hits.append(_hit_boxes(o, d, ((lo + hi) / 2)[None], ((hi - lo) / 2)[None], torch.eye(3)[None], scene.room_mats, inside=True))
    if scene.ground_mat is not None:
        hits.append(_hit_ground(o, d, scene.ground_mat))
    if scene.backdrop is not None:
        hits.append(_hit_backdrop(o, d, scene.backdrop[0], scene.backdrop[1], scene.backdrop_mat))
    if len(scene.box_c):
        hits.append(_hit_boxes(o, d, scene.box_c, scene.box_h, scene.box_R, scene.box_mat))
    if len(scene.sph_c):
        hits.append(_hit_spheres(o, d, scene.sph_c, scene.sph_r, scene.sph_mat))
    if len(scene.cyl_c):
        hits.append(_hit_cylinders(o, d, scene.cyl_c, scene.cyl_r, scene.cyl_hh, scene.cyl_mat))
    if len(scene.quad_c):
        hits.append(_hit_quads(o, d, scene.quad_c, scene.quad_u, scene.quad_v, scene.quad_h, scene.quad_mat))
    if not hits:
        inf = torch.full((len(o),), float("inf"))
        return inf, torch.zeros_like(o), torch.zeros_like(o), torch.zeros(len(o), MAT_DIM)
    t_all = torch.stack([h[0] for h in hits])  # (P, N)
    t, best = t_all.min(0)
    rows = torch.arange(len(o))
    normal = torch.stack([h[1] for h in hits])[best, rows]
    tex = torch.stack([h[2] for h in hits])[best, rows]
    mat = torch.stack([h[3] for h in hits])[best, rows]
    return t, normal, tex, mat


def _shade(scene: Scene, d, t, normal, tex, mat) -> tuple[torch.Tensor, torch.Tensor]:
    hit = torch.isfinite(t)
    # two-sided surfaces: make normals face the camera
    flip = torch.where((normal * d).sum(-1, keepdim=True) > 0, -1.0, 1.0)
    normal = normal * flip * hit[:, None]
    lam = (normal @ scene.light_dir).clamp_min(0.0)  # (N,)
    col = albedo(tex, mat) * (scene.ambient + (1.0 - scene.ambient) * lam)[:, None]
    elev = (d[:, 2] / d.norm(dim=-1)).clamp(0, 1)[:, None] ** 0.5
    sky = scene.sky_colors[0] + (scene.sky_colors[1] - scene.sky_colors[0]) * elev
    return torch.where(hit[:, None], col, sky), normal


@torch.no_grad()
def render(scene: Scene, K, T_wc, height: int, width: int) -> RenderOutput:
    """Render views of `scene`.

    K: (B, 3, 3) or (3, 3) intrinsics for (height, width); T_wc: (B, 4, 4) or (4, 4)
    camera-to-world (OpenCV optical, world z up). Returns RenderOutput with a leading B.
    """
    K = torch.as_tensor(np.asarray(K), dtype=torch.float32).reshape(-1, 3, 3)
    T_wc = torch.as_tensor(np.asarray(T_wc), dtype=torch.float32).reshape(-1, 4, 4)
    if len(K) == 1 and len(T_wc) > 1:
        K = K.expand(len(T_wc), 3, 3)
    if len(K) != len(T_wc):
        raise ValueError(f"render: {len(K)} intrinsics for {len(T_wc)} poses")
    o, d = camera_rays(K, T_wc, height, width)
    rgb, depth, normals = [], [], []
    for s in range(0, len(o), _CHUNK):
        oc, dc = o[s : s + _CHUNK], d[s : s + _CHUNK]
        t, n, tex, mat = _cast(scene, oc, dc)
        col, n = _shade(scene, dc, t, n, tex, mat)
        rgb.append(col)
        depth.append(torch.where(torch.isfinite(t), t, torch.zeros_like(t)))
        normals.append(n)
    B = len(K)
    rgb = (torch.cat(rgb) * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).reshape(B, height, width, 3)
    return RenderOutput(rgb, torch.cat(depth).reshape(B, height, width), torch.cat(normals).reshape(B, height, width, 3))


# --------------------------------------------------------------------------- sequences


def render_sequence(
    seed: int, num_frames: int, height: int, width: int, cfg: ProceduralConfig = ProceduralConfig(), trajectory: str | None = None
) -> list[Frame]:
    """A random scene and a robot-like camera trajectory through it, rendered: list[Frame].

    Deterministic from `seed` (same seed, size and config -> bit-identical frames). One
    intrinsics matrix per sequence (one camera). `trajectory` forces a kind, else one of
    cfg.trajectories is drawn. Frames: rgb uint8, depth float32 metres (0 = sky), K, T_wc,
    stamp = k / cfg.fps, frame_id "proc<seed>_<k>".
    """
    rng = np.random.default_rng(seed)
    scene = random_scene(rng, cfg.p_indoor)
    kind = trajectory or str(rng.choice(list(cfg.trajectories)))
    K = random_intrinsics(rng, height, width, cfg.hfov_deg)
    T = random_trajectory(scene, rng, kind, num_frames, K, height, width)
    out = render(scene, K, T, height, width)
    rgb, depth = out.rgb.numpy(), out.depth.numpy()
    return [
        Frame(rgb=rgb[k], K=K, T_wc=T[k], depth=depth[k], stamp=k / cfg.fps, frame_id=f"proc{seed}_{k:04d}") for k in range(num_frames)
    ]
