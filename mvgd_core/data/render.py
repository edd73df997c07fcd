"""Procedural posed RGB-D renderer: exact analytic ray casting in torch, no rasterizer.

Every pixel ray is intersected exactly with the primitives of a `Scene` whose bounding
spheres it meets (batched per primitive type), the nearest hit wins; depth is exact z-depth
because the rays are built with unit optical-z component (ray = R_wc K^-1 [u, v, 1]), so the
ray parameter t *is* z-depth. Throughput: see benchmarks/bench_render.py (CPU, one thread
per process; rays in L2-sized chunks, channels-first layout).
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
from typing import Callable

import numpy as np
import torch

from mvgd_core.data.scenes import Scene, random_scene
from mvgd_core.data.textures import MAT_DIM, albedo, use_image_textures
from mvgd_core.data.trajectories import TRAJECTORY_KINDS, random_intrinsics, random_trajectory
from mvgd_core.data.types import Frame

_EPS = 1e-4  # minimum hit distance (m): avoids self-hits at the ray origin
_CHUNK = 1 << 16  # rays per chunk: working set stays in L2 cache (measured fastest of 2^14..2^18 at 128x128)


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
# Layout: inside the renderer, vectors are channels-first (3, K) tensors. Rows x, y, z are
# contiguous, so dot products, gathers and scatters are plain 1-D ops; the (K, 3) layout is
# 3-5x slower for each of them on CPU (measured: sum over the last dim of 3, index_select).
#
# Rays are tested against primitives in two stages. A cheap bounding-sphere test runs densely
# for every (ray, primitive) pair: all rays of a view share its origin, so it reduces to one
# matmul (B, N, 3) @ (3, M) plus a few elementwise ops. The exact intersection then runs only on
# the surviving (ray, primitive) pairs, typically one or two per ray instead of M. Depth stays
# exact: culling never changes a hit.
#
# Each primitive type yields `_Hits`: per-pair ray indices, hit distances t (inf = miss) and a
# `surface` function giving normals, texture points and material rows for selected pairs.
# `_cast` first takes the minimum t per ray over all types, then calls `surface` only for the
# winning pairs: shading inputs are never computed for hidden surfaces.

_INF = float("inf")


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise dot product of (3, K) tensors (or a (3, 1) column against (3, K)): (K,)."""
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _take(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x[..., idx]: gather along the last (ray / pair) axis."""
    return x.index_select(-1, idx)


def _point_at(origin: torch.Tensor, direction: torch.Tensor, t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """origin + t * direction (3, S) at the pairs / rays idx (S,) of (3, K) origins, directions and (K,) t."""
    return _take(origin, idx) + _take(t, idx) * _take(direction, idx)


def _columns(x: torch.Tensor) -> torch.Tensor:
    """Per-primitive table (M, ...) as contiguous channels-first (prod(...), M)."""
    return x.reshape(len(x), -1).t().contiguous()


def _nonzero(x: torch.Tensor) -> torch.Tensor:
    return torch.copysign(x.abs().clamp_min(1e-9), x)  # magnitude >= 1e-9: no 0 division


@dataclass
class _Hits:
    """Candidate hits of one primitive type. ray: (K,) flat ray index (None: one pair per ray,
    in ray order); t: (K,) distance, inf for a miss; surface(sel) -> (normal (3, S), texture
    point (3, S), material row (S,) into `table`) for pair indices sel (S,)."""

    ray: torch.Tensor | None
    t: torch.Tensor
    surface: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    table: torch.Tensor  # (rows, MAT_DIM)


def _candidates(o: torch.Tensor, d_unit: torch.Tensor, centre: torch.Tensor, radius: torch.Tensor):
    """(view, flat ray, prim) indices of rays (origins o (B, 3), unit directions (B, N, 3))
    that meet the primitive's bounding sphere (centre (M, 3), radius (M,)) ahead of the camera."""
    radius = radius * (1 + 1e-4) + 1e-6  # a touch larger: rounding here never drops a grazing hit
    oc = o[:, None] - centre  # (B, M, 3)
    cc = (oc * oc).sum(-1) - radius * radius  # (B, M): < 0 when the camera is inside the sphere
    # The ray meets the sphere ahead iff d.(o - c) <= -sqrt(cc) (always when inside): one
    # comparison per (ray, primitive) pair against a per-(view, primitive) threshold.
    thr = torch.where(cc < 0, _INF, -cc.clamp_min(0).sqrt())[:, None]  # (B, 1, M)
    hit = d_unit @ oc.transpose(1, 2) <= thr  # (B, N, M)
    bi, ni, mi = hit.nonzero(as_tuple=True)
    return bi, bi * d_unit.shape[1] + ni, mi


def _rotate_t(x: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """R^T x for x (3, K) and rotations R (9, K) (row-major R_ij at row 3i + j): (3, K)."""
    return torch.stack([R[j] * x[0] + R[3 + j] * x[1] + R[6 + j] * x[2] for j in range(3)])


def _rotate(x: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """R x for x (3, K) and rotations R (9, K): (3, K)."""
    return torch.stack([R[3 * i] * x[0] + R[3 * i + 1] * x[1] + R[3 * i + 2] * x[2] for i in range(3)])


def _slabs(ol, dl, h):
    """Slab entry and exit distances (K,) of local rays ol, dl (3, K) through boxes of half sizes h (3, K or 1)."""
    inv = 1.0 / _nonzero(dl)
    t1, t2 = (-h - ol) * inv, (h - ol) * inv
    return torch.minimum(t1, t2).amax(0), torch.maximum(t1, t2).amin(0)


def _box_face(pl, h):
    """Local outward normal (3, S) of the face that box-local point pl (3, S) lies on, and the
    face index axis * 2 + (side > 0), i.e. -x, +x, -y, +y, -z, +z."""
    a = pl.abs() / h
    # argmax over the 3 rows, first one on ties (torch.argmax(0) is ~30x slower on this layout)
    axis = (a[1] > a[0]).long()
    axis = axis + (a[2] > torch.maximum(a[0], a[1])) * (2 - axis)
    onehot = torch.stack([axis == 0, axis == 1, axis == 2])  # (3, S) bool
    side = torch.sign((pl * onehot).sum(0))  # sign of the coordinate on that axis
    return onehot * side, axis * 2 + (side > 0).long()


def _hits_boxes(o, d, ray, view, m, scene: Scene) -> _Hits:
    c, h, R = _take(_columns(scene.box_c), m), _take(_columns(scene.box_h), m), _take(_columns(scene.box_R), m)
    ol = _rotate_t(_take(o, view) - c, R)
    dl = _rotate_t(_take(d, ray), R)
    tnear, tfar = _slabs(ol, dl, h)
    t = torch.where((tnear <= tfar) & (tnear > _EPS), tnear, _INF)

    def surface(sel):
        pl = _point_at(ol, dl, t, sel)
        return _rotate(_box_face(pl, _take(h, sel))[0], _take(R, sel)), pl, _take(m, sel)

    return _Hits(ray, t, surface, scene.box_mat)


def _hits_cylinders(o, d, ray, view, m, scene: Scene) -> _Hits:
    c, r, hh = _take(_columns(scene.cyl_c), m), _take(scene.cyl_r, m), _take(scene.cyl_hh, m)
    oc, d = _take(o, view) - c, _take(d, ray)
    a = (d[0] * d[0] + d[1] * d[1]).clamp_min(1e-12)
    b = d[0] * oc[0] + d[1] * oc[1]
    cc = oc[0] * oc[0] + oc[1] * oc[1] - r * r
    disc = b * b - a * cc
    t_side = (-b - disc.clamp_min(0).sqrt()) / a
    t = torch.where((disc >= 0) & (t_side > _EPS) & ((oc[2] + t_side * d[2]).abs() <= hh), t_side, _INF)
    dz = _nonzero(d[2])
    for sgn in (-1.0, 1.0):  # caps: |oc_xy + tc d_xy|^2 = cc + r^2 + 2 tc b + tc^2 a
        tc = (sgn * hh - oc[2]) / dz
        t = torch.minimum(t, torch.where((tc > _EPS) & (cc + 2 * tc * b + tc * tc * a <= 0), tc, _INF))

    def surface(sel):
        local = _point_at(oc, d, t, sel)
        rs, hs = _take(r, sel), _take(hh, sel)
        zero = torch.zeros_like(rs)
        side_n = torch.stack([local[0] / rs, local[1] / rs, zero])
        cap_n = torch.stack([zero, zero, torch.sign(local[2])])
        on_cap = local[2].abs() / hs > (local[0] * local[0] + local[1] * local[1]).sqrt() / rs  # which surface the point is on
        return torch.where(on_cap, cap_n, side_n), local, _take(m, sel)

    return _Hits(ray, t, surface, scene.cyl_mat)


def _hits_quads(o, d, ray, view, m, scene: Scene) -> _Hits:
    c, u, v, h = (_take(_columns(x), m) for x in (scene.quad_c, scene.quad_u, scene.quad_v, scene.quad_h))
    n = torch.linalg.cross(u, v, dim=0)
    oc, d = _take(o, view) - c, _take(d, ray)
    t = -_dot(oc, n) / _nonzero(_dot(d, n))
    p = oc + t * d  # hit point relative to the centre
    pu, pv = _dot(p, u), _dot(p, v)
    t = torch.where((t > _EPS) & (pu.abs() <= h[0]) & (pv.abs() <= h[1]), t, _INF)

    def surface(sel):
        pu_s = _take(pu, sel)
        return _take(n, sel), torch.stack([pu_s, _take(pv, sel), torch.zeros_like(pu_s)]), _take(m, sel)

    return _Hits(ray, t, surface, scene.quad_mat)


def _hits_spheres(o, d, ray, view, m, scene: Scene) -> _Hits:
    c, r = _take(_columns(scene.sph_c), m), _take(scene.sph_r, m)
    oc, d = _take(o, view) - c, _take(d, ray)
    a = _dot(d, d)
    b = _dot(d, oc)
    disc = b * b - a * (_dot(oc, oc) - r * r)
    sq = disc.clamp_min(0).sqrt()
    t0, t1 = (-b - sq) / a, (-b + sq) / a
    t = torch.where(t0 > _EPS, t0, t1)
    t = torch.where((disc >= 0) & (t > _EPS), t, _INF)

    def surface(sel):
        local = _point_at(oc, d, t, sel)
        return local / _take(r, sel), local, _take(m, sel)

    return _Hits(ray, t, surface, scene.sph_mat)


def _hits_room(o_r, d_r, scene: Scene) -> _Hits:
    """Inside the room box every ray leaves through a face: the far slab distance, one per ray."""
    lo, hi = scene.room_bounds
    c, h = ((lo + hi) / 2)[:, None], ((hi - lo) / 2)[:, None]
    ol = o_r - c
    tfar = _slabs(ol, d_r, h)[1]
    t = torch.where(tfar > _EPS, tfar, _INF)

    def surface(sel):
        pl = _point_at(ol, d_r, t, sel)
        normal, face = _box_face(pl, h)
        return normal, pl, face  # one material per face

    return _Hits(None, t, surface, scene.room_mats)


def _hits_ground(o_r, d_r, scene: Scene) -> _Hits:
    t = torch.where((d_r[2] < -1e-9) & (o_r[2] > 0), -o_r[2] / d_r[2].clamp_max(-1e-9), _INF)
    t = torch.where(t > _EPS, t, _INF)

    def surface(sel):
        p = _point_at(o_r, d_r, t, sel)
        normal = torch.zeros_like(p)
        normal[2] = 1.0
        return normal, p, torch.zeros(len(sel), dtype=torch.long)

    return _Hits(None, t, surface, scene.ground_mat.reshape(1, MAT_DIM))


def _hits_backdrop(o_r, d_r, scene: Scene) -> _Hits:
    radius, height = scene.backdrop
    a = (d_r[0] * d_r[0] + d_r[1] * d_r[1]).clamp_min(1e-12)
    b = o_r[0] * d_r[0] + o_r[1] * d_r[1]
    cc = o_r[0] * o_r[0] + o_r[1] * o_r[1] - radius * radius
    t = (-b + (b * b - a * cc).clamp_min(0).sqrt()) / a  # seen from inside: the far root
    z = o_r[2] + t * d_r[2]
    t = torch.where((t > _EPS) & (z >= 0) & (z <= height), t, _INF)

    def surface(sel):
        p = _point_at(o_r, d_r, t, sel)
        zero = torch.zeros_like(p[0])
        normal = torch.stack([-p[0] / radius, -p[1] / radius, zero])
        tex = torch.stack([torch.atan2(p[1], p[0]) * radius, zero, p[2]])  # (arc length, 0, z): a wrap-around terrain strip
        return normal, tex, torch.zeros(len(sel), dtype=torch.long)

    return _Hits(None, t, surface, scene.backdrop_mat.reshape(1, MAT_DIM))


# object types: (hits function, (centres (M, 3), bounding-sphere radii (M,)) for candidate culling)
_OBJECTS = (
    (_hits_boxes, lambda s: (s.box_c, s.box_h.norm(dim=-1))),
    (_hits_spheres, lambda s: (s.sph_c, s.sph_r)),
    (_hits_cylinders, lambda s: (s.cyl_c, (s.cyl_r**2 + s.cyl_hh**2).sqrt())),
    (_hits_quads, lambda s: (s.quad_c, s.quad_h.norm(dim=-1))),
)


def _scene_hits(scene: Scene, o, d, o_r, d_r) -> list[_Hits]:
    """Candidate hits of every surface type, in tie-break order (room, ground, backdrop, objects)."""
    hits = []
    if scene.room_bounds is not None:
        hits.append(_hits_room(o_r, d_r, scene))
    if scene.ground_mat is not None:
        hits.append(_hits_ground(o_r, d_r, scene))
    if scene.backdrop is not None:
        hits.append(_hits_backdrop(o_r, d_r, scene))
    d_unit = d / _dot(d_r, d_r).sqrt().view(d.shape[0], -1, 1)
    o_cols = o.t().contiguous()
    for hits_fn, bounds in _OBJECTS:
        centre, radius = bounds(scene)
        if len(centre):
            view, ray, m = _candidates(o, d_unit, centre, radius)
            hits.append(hits_fn(o_cols, d_r, ray, view, m, scene))
    return hits


def _winners(h: _Hits, t_best: torch.Tensor, taken: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs of `h` that are their ray's nearest hit and not already claimed by an earlier type:
    (pair indices, their rays), one pair per ray (the last one on an exact tie within the type)."""
    if h.ray is None:
        sel = torch.nonzero((h.t == t_best) & ~taken & (h.t < _INF)).squeeze(1)
        return sel, sel
    sel = torch.nonzero((h.t == _take(t_best, h.ray)) & ~_take(taken, h.ray) & (h.t < _INF)).squeeze(1)
    rays = _take(h.ray, sel)
    last = torch.full_like(taken, -1, dtype=torch.long).scatter_reduce(0, rays, torch.arange(len(sel)), "amax")
    keep = torch.nonzero(_take(last, rays) == torch.arange(len(sel))).squeeze(1)
    return _take(sel, keep), _take(rays, keep)


def _cast(scene: Scene, o: torch.Tensor, d: torch.Tensor, o_r: torch.Tensor, d_r: torch.Tensor):
    """Nearest hit for rays from origins o (B, 3) along d (B, N, 3); o_r, d_r (3, R): the same
    R = B*N rays channels-first. Returns t (R,) (inf = no hit), normal (3, R), texture point
    (3, R), material (MAT_DIM, R)."""
    R = d_r.shape[1]
    hits = _scene_hits(scene, o, d, o_r, d_r)
    t_best = torch.full((R,), _INF)
    for h in hits:
        t_best = torch.minimum(t_best, h.t) if h.ray is None else t_best.scatter_reduce(0, h.ray, h.t, "amin")
    normal, tex = torch.zeros(3, R), torch.zeros(3, R)
    mat_row = torch.zeros(R, dtype=torch.long)  # into the scene-wide table of all types' rows
    taken = torch.zeros(R, dtype=torch.bool)  # exact ties between types: the first type wins
    offset = 0
    for h in hits:
        sel, rays = _winners(h, t_best, taken)
        n, x, row = h.surface(sel)
        normal.index_copy_(1, rays, n)
        tex.index_copy_(1, rays, x)
        mat_row.index_copy_(0, rays, row + offset)
        taken.index_fill_(0, rays, True)
        offset += len(h.table)
    table = _columns(torch.cat([h.table for h in hits])) if hits else torch.zeros(MAT_DIM, 1)
    return t_best, normal, tex, _take(table, mat_row)


def _shade(scene: Scene, o_r, d_r, t, normal, tex, mat) -> tuple[torch.Tensor, torch.Tensor]:
    """Colour (3, R) in [0, 1] and camera-facing normals (3, R) of rays o_r, d_r (3, R) with
    hits from `_cast`. Albedo is evaluated on hit rays only (sky rays skip the textures)."""
    # two-sided surfaces: make normals face the camera
    normal = normal * (1.0 - 2.0 * (_dot(normal, d_r) > 0))
    shading = scene.ambient + (1.0 - scene.ambient) * _dot(normal, scene.light_dir[:, None]).clamp_min(0.0)
    hit = t < _INF
    idx = torch.nonzero(hit).squeeze(1)
    if len(idx) == len(t):  # every ray hits (rooms): no sky, no gathers
        return albedo(tex, mat, o_r + t * d_r, normal) * shading, normal
    elev = (d_r[2] / _dot(d_r, d_r).sqrt()).clamp(0, 1) ** 0.5
    sky0, sky1 = scene.sky_colors[0][:, None], scene.sky_colors[1][:, None]
    col = sky0 + (sky1 - sky0) * elev
    world = _point_at(o_r, d_r, t, idx)
    n_hit = _take(normal, idx)
    col.index_copy_(1, idx, albedo(_take(tex, idx), _take(mat, idx), world, n_hit) * _take(shading, idx))
    return col, normal * hit


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
            o_r = oc.t()[:, :, None].expand(3, len(oc), dc.shape[1]).reshape(3, -1)  # (3, R): every ray's origin
            d_r = dc.reshape(-1, 3).t().contiguous()
            t, n, tex, mat = _cast(scene, oc, dc, o_r, d_r)
            col, n = _shade(scene, o_r, d_r, t, n, tex, mat)
            rgb.append(col.t().reshape(len(oc), -1, 3))
            depth.append(torch.where(torch.isfinite(t), t, 0.0).view(len(oc), -1))
            normals.append(n.t().reshape(len(oc), -1, 3))
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
