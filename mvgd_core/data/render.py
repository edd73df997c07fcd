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

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from mvgd_core.data.scenes import Scene, random_scene
from mvgd_core.data.textures import MAT_DIM, albedo, use_image_textures
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
    of view range. fps: stamp spacing of sequence frames. p_image_texture: probability that a
    surface wears a natural photo (textures.TEX_IMAGE) instead of a procedural pattern.
    """

    p_indoor: float = 0.6
    trajectories: tuple[str, ...] = TRAJECTORY_KINDS
    hfov_deg: tuple[float, float] = (50.0, 90.0)
    fps: float = 10.0
    p_image_texture: float = 0.3

    def __post_init__(self):
        bad = [t for t in self.trajectories if t not in TRAJECTORY_KINDS]
        if bad or not self.trajectories:
            raise ValueError(f"ProceduralConfig.trajectories: unknown {bad}; choose from {TRAJECTORY_KINDS}")
        for name in ("p_indoor", "p_image_texture"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"ProceduralConfig.{name} must be in [0, 1], got {getattr(self, name)}")


# --------------------------------------------------------------------------- rays


def camera_rays(K: torch.Tensor, T_wc: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-view ray origins (B, 3) and world directions (B, H*W, 3) with optical-z component 1.

    K: (B, 3, 3); T_wc: (B, 4, 4) camera-to-world, OpenCV optical. Pixel centres at integers.
    """
    v, u = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij")
    pix = torch.stack([u, v, torch.ones_like(u)], -1).reshape(-1, 3)  # (HW, 3)
    d_cam = pix @ torch.linalg.inv(K).transpose(-1, -2)  # (B, HW, 3), z = 1
    return T_wc[:, :3, 3], d_cam @ T_wc[:, :3, :3].transpose(-1, -2)


# --------------------------------------------------------------------------- intersections
# Rays are tested against primitives in two stages. A cheap bounding-sphere test runs densely
# for every (ray, primitive) pair: all rays of a view share its origin, so it reduces to one
# matmul (B, N, 3) @ (3, M) plus a few elementwise ops. The exact intersection then runs only on
# the surviving (ray, primitive) pairs, typically one or two per ray instead of M. Each
# `_pairs_*` function takes per-pair origins o (K, 3), directions d (K, 3) and primitive
# indices m (K,) and returns (t (K,) with inf for a miss, normal (K, 3), texture point (K, 3));
# `_nearest` keeps the closest pair per ray. Depth stays exact: culling never changes a hit.

_INF = float("inf")


def _nonzero(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x.abs() < 1e-9, torch.full_like(x, 1e-9), x)  # no 0 division; the sign is irrelevant then


def _candidates(o: torch.Tensor, d_unit: torch.Tensor, centre: torch.Tensor, radius: torch.Tensor):
    """(view, ray, prim) index triples whose ray (unit directions (B, N, 3)) meets the
    primitive's bounding sphere ahead of the camera."""
    oc = o[:, None] - centre  # (B, M, 3)
    b = d_unit @ oc.transpose(1, 2)  # (B, N, M): d . (o - c)
    cc = ((oc * oc).sum(-1) - radius * radius)[:, None]  # (B, 1, M)
    hit = (b * b >= cc) & ((b < 0) | (cc < 0))  # sphere reached, and ahead (or camera inside it)
    return hit.nonzero(as_tuple=True)


def _box_local(o, d, c, h, R):
    """Box-frame origin, direction and slab entry/exit distances; R None = axis-aligned box."""
    ol, dl = o - c, d
    if R is not None:
        ol = (ol.unsqueeze(-2) @ R).squeeze(-2)  # R^T (o - c) as row vector times R
        dl = (d.unsqueeze(-2) @ R).squeeze(-2)
    inv = 1.0 / _nonzero(dl)
    t1, t2 = (-h - ol) * inv, (h - ol) * inv
    return ol, dl, torch.minimum(t1, t2).amax(-1), torch.maximum(t1, t2).amin(-1)


def _box_normal(pl, h, R):
    axis = (pl.abs() / h).argmax(-1, keepdim=True)  # the face the hit point is on
    side = torch.sign(torch.gather(pl, -1, axis))
    nl = torch.zeros_like(pl).scatter_(-1, axis, side)
    normal = nl if R is None else (R @ nl.unsqueeze(-1)).squeeze(-1)
    return normal, axis.squeeze(-1), side.squeeze(-1)


def _pairs_boxes(o, d, m, scene: Scene):
    c, h, R = scene.box_c[m], scene.box_h[m], scene.box_R[m]
    ol, dl, tnear, tfar = _box_local(o, d, c, h, R)
    t = torch.where((tnear <= tfar) & (tnear > _EPS), tnear, _INF)
    pl = ol + t.nan_to_num(posinf=0.0)[:, None] * dl
    return t, _box_normal(pl, h, R)[0], pl


def _pairs_cylinders(o, d, m, scene: Scene):
    c, r, hh = scene.cyl_c[m], scene.cyl_r[m], scene.cyl_hh[m]
    oc = o - c
    a = (d[:, :2] ** 2).sum(-1).clamp_min(1e-12)
    b = (d[:, :2] * oc[:, :2]).sum(-1)
    cc = (oc[:, :2] ** 2).sum(-1) - r * r
    disc = b * b - a * cc
    t_side = (-b - disc.clamp_min(0).sqrt()) / a
    t = torch.where((disc >= 0) & (t_side > _EPS) & ((oc[:, 2] + t_side * d[:, 2]).abs() <= hh), t_side, _INF)
    dz = _nonzero(d[:, 2])
    for sgn in (-1.0, 1.0):  # caps: |oc_xy + tc d_xy|^2 = cc + r^2 + 2 tc b + tc^2 a
        tc = (sgn * hh - oc[:, 2]) / dz
        t = torch.minimum(t, torch.where((tc > _EPS) & (cc + 2 * tc * b + tc * tc * a <= 0), tc, _INF))
    local = oc + t.nan_to_num(posinf=0.0)[:, None] * d
    side_n = torch.cat([local[:, :2] / r[:, None], torch.zeros_like(local[:, :1])], -1)
    cap_n = torch.zeros_like(local)
    cap_n[:, 2] = torch.sign(local[:, 2])
    on_cap = (local[:, 2].abs() / hh > local[:, :2].norm(dim=-1) / r)[:, None]  # whichever surface the point is on
    return t, torch.where(on_cap, cap_n, side_n), local


def _pairs_quads(o, d, m, scene: Scene):
    c, u, v, h = scene.quad_c[m], scene.quad_u[m], scene.quad_v[m], scene.quad_h[m]
    n = torch.cross(u, v, dim=-1)
    oc = o - c
    t = -(oc * n).sum(-1) / _nonzero((d * n).sum(-1))
    p = oc + t[:, None] * d  # hit point relative to the centre
    pu, pv = (p * u).sum(-1), (p * v).sum(-1)
    t = torch.where((t > _EPS) & (pu.abs() <= h[:, 0]) & (pv.abs() <= h[:, 1]), t, _INF)
    return t, n, torch.stack([pu, pv, torch.zeros_like(pu)], -1)


def _pairs_spheres(o, d, m, scene: Scene):
    c, r = scene.sph_c[m], scene.sph_r[m]
    oc = o - c
    a = (d * d).sum(-1)
    b = (d * oc).sum(-1)
    disc = b * b - a * ((oc * oc).sum(-1) - r * r)
    sq = disc.clamp_min(0).sqrt()
    t0, t1 = (-b - sq) / a, (-b + sq) / a
    t = torch.where(t0 > _EPS, t0, t1)
    t = torch.where((disc >= 0) & (t > _EPS), t, _INF)
    local = oc + t.nan_to_num(posinf=0.0)[:, None] * d
    return t, local / r[:, None], local


def _nearest(pairs_fn, scene: Scene, o, d, d_unit, centre, radius):
    """Closest hit per ray (flattened B*N) of one primitive type, via bounding-sphere candidates."""
    B, N = d.shape[:2]
    bi, ni, mi = _candidates(o, d_unit, centre, radius)
    t_out = torch.full((B * N,), _INF)
    if len(mi) == 0:
        return t_out, torch.zeros(B * N, 3), torch.zeros(B * N, 3), torch.zeros(B * N, dtype=torch.long)
    t, normal, local = pairs_fn(o[bi], d[bi, ni], mi, scene)
    ray = bi * N + ni
    t_out = t_out.scatter_reduce(0, ray, t, "amin")
    win = torch.isfinite(t) & (t == t_out[ray])
    pair = torch.zeros(B * N, dtype=torch.long)
    pair[ray[win]] = torch.nonzero(win).squeeze(1)  # the winning pair of each ray (any one on exact ties)
    return t_out, normal[pair], local[pair], mi[pair]


def _hit_room(o, d, scene: Scene):
    """Inside the room box every ray leaves through a face: the far slab distance (B*N,)."""
    lo, hi = scene.room_bounds
    c, h, R = (lo + hi) / 2, (hi - lo) / 2, None
    o_r = o[:, None].expand_as(d).reshape(-1, 3)
    ol, dl, _, tfar = _box_local(o_r, d.reshape(-1, 3), c, h, R)
    t = torch.where(tfar > _EPS, tfar, _INF)
    pl = ol + t.nan_to_num(posinf=0.0)[:, None] * dl
    normal, axis, side = _box_normal(pl, h, R)
    return t, normal, pl, axis * 2 + (side > 0).long()  # per-face material: -x, +x, -y, +y, -z, +z


def _hit_ground(o, d):
    o_r, d_r = o[:, None].expand_as(d).reshape(-1, 3), d.reshape(-1, 3)
    t = torch.where((d_r[:, 2] < -1e-9) & (o_r[:, 2] > 0), -o_r[:, 2] / d_r[:, 2].clamp_max(-1e-9), _INF)
    t = torch.where(t > _EPS, t, _INF)
    p = o_r + t.nan_to_num(posinf=0.0)[:, None] * d_r
    normal = torch.zeros_like(p)
    normal[:, 2] = 1.0
    return t, normal, p, torch.zeros(len(t), dtype=torch.long)


def _hit_backdrop(o, d, radius: float, height: float):
    o_r, d_r = o[:, None].expand_as(d).reshape(-1, 3), d.reshape(-1, 3)
    a = (d_r[:, :2] ** 2).sum(-1).clamp_min(1e-12)
    b = (o_r[:, :2] * d_r[:, :2]).sum(-1)
    cc = (o_r[:, :2] ** 2).sum(-1) - radius * radius
    t = (-b + (b * b - a * cc).clamp_min(0).sqrt()) / a  # seen from inside: the far root
    p = o_r + t[:, None] * d_r
    t = torch.where((t > _EPS) & (p[:, 2] >= 0) & (p[:, 2] <= height), t, _INF)
    normal = torch.cat([-p[:, :2] / radius, torch.zeros_like(p[:, :1])], -1)
    # texture in (arc length, 0, z): a wrap-around "terrain" strip
    tex = torch.stack([torch.atan2(p[:, 1], p[:, 0]) * radius, torch.zeros_like(t), p[:, 2]], -1)
    return t, normal, tex, torch.zeros(len(t), dtype=torch.long)


def _cast(scene: Scene, o: torch.Tensor, d: torch.Tensor):
    """Nearest hit for rays from origins o (B, 3) along d (B, N, 3), flattened to R = B*N rays:
    (t (R,), normal (R, 3), texture point (R, 3), material (R, MAT_DIM))."""
    hits, tables = [], []

    def add(hit, table):  # material rows become indices into one scene-wide table
        offset = sum(len(x) for x in tables)
        tables.append(table.reshape(-1, MAT_DIM))
        hits.append((*hit[:3], hit[3] + offset))

    if scene.room_bounds is not None:
        add(_hit_room(o, d, scene), scene.room_mats)
    if scene.ground_mat is not None:
        add(_hit_ground(o, d), scene.ground_mat)
    if scene.backdrop is not None:
        add(_hit_backdrop(o, d, *scene.backdrop), scene.backdrop_mat)
    du = d / d.norm(dim=-1, keepdim=True)
    if len(scene.box_c):
        add(_nearest(_pairs_boxes, scene, o, d, du, scene.box_c, scene.box_h.norm(dim=-1)), scene.box_mat)
    if len(scene.sph_c):
        add(_nearest(_pairs_spheres, scene, o, d, du, scene.sph_c, scene.sph_r), scene.sph_mat)
    if len(scene.cyl_c):
        add(_nearest(_pairs_cylinders, scene, o, d, du, scene.cyl_c, (scene.cyl_r**2 + scene.cyl_hh**2).sqrt()), scene.cyl_mat)
    if len(scene.quad_c):
        add(_nearest(_pairs_quads, scene, o, d, du, scene.quad_c, scene.quad_h.norm(dim=-1)), scene.quad_mat)
    R = d.shape[0] * d.shape[1]
    if not hits:
        return torch.full((R,), _INF), torch.zeros(R, 3), torch.zeros(R, 3), torch.zeros(R, MAT_DIM)
    t, best = torch.stack([h[0] for h in hits]).min(0)  # (R,)
    rows = torch.arange(R)
    normal = torch.stack([h[1] for h in hits])[best, rows]
    tex = torch.stack([h[2] for h in hits])[best, rows]
    mat_id = torch.stack([h[3] for h in hits])[best, rows]
    return t, normal, tex, torch.cat(tables)[mat_id]


def _shade(scene: Scene, o, d, t, normal, tex, mat) -> tuple[torch.Tensor, torch.Tensor]:
    """Colour (R, 3) in [0, 1] and camera-facing normals (R, 3) for flat ray lists (R = rays)
    with origins o (R, 3) and directions d (R, 3)."""
    hit = torch.isfinite(t)
    # two-sided surfaces: make normals face the camera
    flip = torch.where((normal * d).sum(-1, keepdim=True) > 0, -1.0, 1.0)
    normal = normal * flip * hit[:, None]
    lam = (normal @ scene.light_dir).clamp_min(0.0)  # (R,)
    world = o + t.nan_to_num(posinf=0.0)[:, None] * d
    col = albedo(tex, mat, world, normal) * (scene.ambient + (1.0 - scene.ambient) * lam)[:, None]
    elev = (d[:, 2] / d.norm(dim=-1)).clamp(0, 1)[:, None] ** 0.5
    sky = scene.sky_colors[0] + (scene.sky_colors[1] - scene.sky_colors[0]) * elev
    return torch.where(hit[:, None], col, sky), normal


@contextmanager
def single_thread():
    """Run torch ops on one intra-op thread inside the block, restoring the caller's setting.

    The renderer issues many small ops; with several OpenMP threads on a busy (shared) machine
    each op waits for descheduled threads at its barrier (measured: 20x slower). Parallelism
    comes from DataLoader worker processes instead.
    """
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@torch.no_grad()
def render(scene: Scene, K, T_wc, height: int, width: int) -> RenderOutput:
    """Render views of `scene` (single-threaded, see `single_thread`).

    K: (B, 3, 3) or (3, 3) intrinsics for (height, width); T_wc: (B, 4, 4) or (4, 4)
    camera-to-world (OpenCV optical, world z up). Returns RenderOutput with a leading B.
    """
    with single_thread():
        return _render(scene, K, T_wc, height, width)


def _render(scene: Scene, K, T_wc, height: int, width: int) -> RenderOutput:
    K = torch.as_tensor(np.asarray(K), dtype=torch.float32).reshape(-1, 3, 3)
    T_wc = torch.as_tensor(np.asarray(T_wc), dtype=torch.float32).reshape(-1, 4, 4)
    if len(K) == 1 and len(T_wc) > 1:
        K = K.expand(len(T_wc), 3, 3)
    if len(K) != len(T_wc):
        raise ValueError(f"render: {len(K)} intrinsics for {len(T_wc)} poses")
    o, d = camera_rays(K, T_wc, height, width)  # (B, 3), (B, HW, 3)
    B, HW = d.shape[:2]
    rgb, depth, normals = [], [], []
    step = max(1, _CHUNK // HW)  # views per chunk; very large images are split by rows of rays
    for b0 in range(0, B, step):
        for s in range(0, HW, _CHUNK):
            oc, dc = o[b0 : b0 + step], d[b0 : b0 + step, s : s + _CHUNK]
            t, n, tex, mat = _cast(scene, oc, dc)
            col, n = _shade(scene, oc[:, None].expand_as(dc).flatten(0, 1), dc.flatten(0, 1), t, n, tex, mat)
            rgb.append(col.view(len(oc), -1, 3))
            depth.append(torch.where(torch.isfinite(t), t, 0.0).view(len(oc), -1))
            normals.append(n.view(len(oc), -1, 3))
    if HW > _CHUNK:  # re-assemble row chunks of each view chunk
        per = -(-HW // _CHUNK)
        rgb = [torch.cat(rgb[i : i + per], 1) for i in range(0, len(rgb), per)]
        depth = [torch.cat(depth[i : i + per], 1) for i in range(0, len(depth), per)]
        normals = [torch.cat(normals[i : i + per], 1) for i in range(0, len(normals), per)]
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
    with single_thread():  # trajectory search + rendering: many small ops
        return _render_sequence(seed, num_frames, height, width, cfg, trajectory)


def _render_sequence(seed, num_frames, height, width, cfg, trajectory) -> list[Frame]:
    rng = np.random.default_rng(seed)
    scene = random_scene(rng, cfg.p_indoor)
    if cfg.p_image_texture > 0:  # own generator: the scene and trajectory draws stay the same
        use_image_textures(scene.material_tables(), np.random.default_rng([seed, 1]), cfg.p_image_texture)
    kind = trajectory or str(rng.choice(list(cfg.trajectories)))
    K = random_intrinsics(rng, height, width, cfg.hfov_deg)
    T = random_trajectory(scene, rng, kind, num_frames, K, height, width)
    out = render(scene, K, T, height, width)
    rgb, depth = out.rgb.numpy(), out.depth.numpy()
    return [
        Frame(rgb=rgb[k], K=K, T_wc=T[k], depth=depth[k], stamp=k / cfg.fps, frame_id=f"proc{seed}_{k:04d}") for k in range(num_frames)
    ]
