"""Random static scenes of analytic primitives, and their free space.

World frame: REP 103, z up, metres; the floor/ground is z = 0.

A `Scene` holds primitives grouped by type as float32 tensors (so the renderer intersects
every ray with every primitive of a type in one batched op), plus one material row per
primitive (see textures.MAT_DIM):
- room: optional axis-aligned box seen from inside (walls, floor, ceiling): bounds (2, 3),
  one material per face in the order -x, +x, -y, +y, -z (floor), +z (ceiling).
- ground: optional infinite plane z = 0; backdrop: optional vertical cylinder around the
  origin seen from inside (radius, height) standing in for far terrain.
- boxes: centre (M, 3), half sizes (M, 3), rotation world<-box (M, 3, 3) (yaw only).
- spheres: centre (M, 3), radius (M,).
- cylinders (vertical, capped): centre (M, 3) (mid-height), radius (M,), half height (M,).
- quads (slanted finite planes): centre (M, 3), unit in-plane axes u, v (M, 3), half extents (M, 2).

`clearance(scene, points)` is a signed distance to the nearest surface (> 0 in free space);
trajectories use it to keep cameras out of objects and walls.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from mvgd_core.data.textures import MAT_DIM, TEX_CHECKER, TEX_MARBLE, TEX_NOISE, TEX_STRIPES, random_material


def _t(x, shape_tail) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float32).reshape((-1,) + shape_tail))


@dataclass
class Scene:
    """Primitives by type (float32 tensors) with material rows; see the module docstring."""

    kind: str  # "indoor" | "outdoor"
    room_bounds: torch.Tensor | None = None  # (2, 3) min, max
    room_mats: torch.Tensor | None = None  # (6, MAT_DIM)
    ground_mat: torch.Tensor | None = None  # (MAT_DIM,) ground plane z = 0 when set
    backdrop: tuple[float, float] | None = None  # (radius, height)
    backdrop_mat: torch.Tensor | None = None  # (MAT_DIM,)
    box_c: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 3))
    box_h: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 3))
    box_R: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 3, 3))
    box_mat: torch.Tensor = field(default_factory=lambda: torch.zeros(0, MAT_DIM))
    sph_c: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 3))
    sph_r: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    sph_mat: torch.Tensor = field(default_factory=lambda: torch.zeros(0, MAT_DIM))
    cyl_c: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 3))
    cyl_r: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    cyl_hh: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    cyl_mat: torch.Tensor = field(default_factory=lambda: torch.zeros(0, MAT_DIM))
    quad_c: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 3))
    quad_u: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 3))
    quad_v: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 3))
    quad_h: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 2))
    quad_mat: torch.Tensor = field(default_factory=lambda: torch.zeros(0, MAT_DIM))
    light_dir: torch.Tensor = field(default_factory=lambda: torch.tensor([0.3, 0.2, 0.93]))  # unit, towards the light
    ambient: float = 0.35
    sky_colors: torch.Tensor = field(default_factory=lambda: torch.tensor([[0.8, 0.85, 0.9], [0.35, 0.55, 0.85]]))  # horizon, zenith
    # Where cameras may go: xy box (2, 2) [[xmin, ymin], [xmax, ymax]] and height range (2,).
    nav_xy: np.ndarray = field(default_factory=lambda: np.array([[-2.0, -2.0], [2.0, 2.0]]))
    nav_z: np.ndarray = field(default_factory=lambda: np.array([0.3, 1.6]))
    # Points worth looking at (object centres), (P, 3) float64, for wide-baseline rigs.
    anchors: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))

    def add_box(self, c, h, yaw: float, mat) -> None:
        cy, sy = np.cos(yaw), np.sin(yaw)
        R = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
        self.box_c = torch.cat([self.box_c, _t(c, (3,))])
        self.box_h = torch.cat([self.box_h, _t(h, (3,))])
        self.box_R = torch.cat([self.box_R, _t(R, (3, 3))])
        self.box_mat = torch.cat([self.box_mat, _t(mat, (MAT_DIM,))])

    def add_sphere(self, c, r: float, mat) -> None:
        self.sph_c = torch.cat([self.sph_c, _t(c, (3,))])
        self.sph_r = torch.cat([self.sph_r, _t(r, ())])
        self.sph_mat = torch.cat([self.sph_mat, _t(mat, (MAT_DIM,))])

    def add_cylinder(self, c, r: float, half_height: float, mat) -> None:
        self.cyl_c = torch.cat([self.cyl_c, _t(c, (3,))])
        self.cyl_r = torch.cat([self.cyl_r, _t(r, ())])
        self.cyl_hh = torch.cat([self.cyl_hh, _t(half_height, ())])
        self.cyl_mat = torch.cat([self.cyl_mat, _t(mat, (MAT_DIM,))])

    def add_quad(self, c, u, v, half_extents, mat) -> None:
        self.quad_c = torch.cat([self.quad_c, _t(c, (3,))])
        self.quad_u = torch.cat([self.quad_u, _t(np.asarray(u) / np.linalg.norm(u), (3,))])
        self.quad_v = torch.cat([self.quad_v, _t(np.asarray(v) / np.linalg.norm(v), (3,))])
        self.quad_h = torch.cat([self.quad_h, _t(half_extents, (2,))])
        self.quad_mat = torch.cat([self.quad_mat, _t(mat, (MAT_DIM,))])

    def material_tables(self) -> list[torch.Tensor]:
        """Every material table of the scene ((M, MAT_DIM) or (MAT_DIM,) tensors), for in-place edits."""
        tables = [self.room_mats, self.ground_mat, self.backdrop_mat, self.box_mat, self.sph_mat, self.cyl_mat, self.quad_mat]
        return [t for t in tables if t is not None and t.numel()]

    @property
    def num_objects(self) -> int:
        return len(self.box_c) + len(self.sph_c) + len(self.cyl_c) + len(self.quad_c)


# --------------------------------------------------------------------------- free space


def clearance(scene: Scene, points) -> np.ndarray:
    """Signed distance (P,) from world points (P, 3) to the nearest surface; > 0 in free space.

    Exact for room, ground, spheres, boxes and cylinders; quads are treated as zero-thickness
    rectangles (exact distance too).
    """
    p = torch.as_tensor(np.asarray(points, dtype=np.float32).reshape(-1, 3))
    d = torch.full((len(p),), float("inf"))
    if scene.room_bounds is not None:
        lo, hi = scene.room_bounds
        d = torch.minimum(d, torch.minimum(p - lo, hi - p).amin(-1))
    if scene.ground_mat is not None:
        d = torch.minimum(d, p[:, 2])
    if scene.backdrop is not None:
        d = torch.minimum(d, scene.backdrop[0] - p[:, :2].norm(dim=-1))
    if len(scene.box_c):
        pl = torch.einsum("pmk,mkj->pmj", p[:, None] - scene.box_c, scene.box_R)  # box-local: R^T (p - c)
        d = torch.minimum(d, _box_sdf(pl, scene.box_h).amin(-1))
    if len(scene.sph_c):
        d = torch.minimum(d, ((p[:, None] - scene.sph_c).norm(dim=-1) - scene.sph_r).amin(-1))
    if len(scene.cyl_c):
        rel = p[:, None] - scene.cyl_c
        q = torch.stack([rel[..., :2].norm(dim=-1) - scene.cyl_r, rel[..., 2].abs() - scene.cyl_hh], -1)
        d = torch.minimum(d, (q.clamp_min(0).norm(dim=-1) + q.amax(-1).clamp_max(0)).amin(-1))
    if len(scene.quad_c):
        rel = p[:, None] - scene.quad_c
        n = torch.cross(scene.quad_u, scene.quad_v, dim=-1)
        q = torch.stack(
            [(rel * scene.quad_u).sum(-1).abs() - scene.quad_h[:, 0], (rel * scene.quad_v).sum(-1).abs() - scene.quad_h[:, 1], (rel * n).sum(-1).abs()], -1
        )
        d = torch.minimum(d, q.clamp_min(0).norm(dim=-1).amin(-1))
    return d.numpy().astype(np.float64)


def _box_sdf(p_local: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    q = p_local.abs() - half
    return q.clamp_min(0).norm(dim=-1) + q.amax(-1).clamp_max(0)


# --------------------------------------------------------------------------- random scenes


def _random_light(rng: np.random.Generator, scene: Scene) -> None:
    elev = rng.uniform(np.radians(20), np.radians(80))
    az = rng.uniform(0, 2 * np.pi)
    scene.light_dir = torch.tensor([np.cos(elev) * np.cos(az), np.cos(elev) * np.sin(az), np.sin(elev)], dtype=torch.float32)
    scene.ambient = float(rng.uniform(0.2, 0.55))


def random_indoor_scene(rng: np.random.Generator) -> Scene:
    """A room (3-9 m x 3-9 m x 2.4-3.5 m) with 3-14 objects: furniture boxes, balls, pillars, panels."""
    sx, sy, sz = rng.uniform(3.0, 9.0), rng.uniform(3.0, 9.0), rng.uniform(2.4, 3.5)
    s = Scene(kind="indoor")
    s.room_bounds = torch.tensor([[-sx / 2, -sy / 2, 0.0], [sx / 2, sy / 2, sz]], dtype=torch.float32)
    wall = random_material(rng, kinds=(TEX_NOISE, TEX_STRIPES, TEX_MARBLE), scale=(0.3, 1.5))
    mats = [wall, wall.copy(), wall.copy(), wall.copy()]
    if rng.random() < 0.5:  # one accent wall
        mats[int(rng.integers(0, 4))] = random_material(rng, scale=(0.2, 1.0))
    mats.append(random_material(rng, kinds=(TEX_CHECKER, TEX_NOISE, TEX_STRIPES), scale=(0.2, 0.8)))  # floor
    mats.append(random_material(rng, kinds=(TEX_NOISE, TEX_CHECKER), scale=(0.4, 1.5)))  # ceiling
    s.room_mats = torch.as_tensor(np.stack(mats), dtype=torch.float32)
    lo, hi = np.array([-sx / 2, -sy / 2]), np.array([sx / 2, sy / 2])
    anchors = []

    def spot(margin):
        return rng.uniform(lo + margin, hi - margin)

    for _ in range(int(rng.integers(2, 8))):  # furniture on the floor, sometimes stacked
        h = rng.uniform([0.15, 0.15, 0.1], [0.8, 0.8, 0.7])
        xy = spot(h[:2].max() + 0.1)
        c = [xy[0], xy[1], h[2]]
        s.add_box(c, h, rng.uniform(0, np.pi), random_material(rng))
        anchors.append(c)
        if rng.random() < 0.3:
            h2 = h * rng.uniform(0.3, 0.8, 3)
            c2 = [xy[0], xy[1], 2 * h[2] + h2[2]]
            s.add_box(c2, h2, rng.uniform(0, np.pi), random_material(rng))
    for _ in range(int(rng.integers(0, 4))):
        r = rng.uniform(0.1, 0.5)
        xy = spot(r + 0.1)
        z = r if rng.random() < 0.6 else rng.uniform(r + 0.2, sz - r - 0.1)
        s.add_sphere([xy[0], xy[1], z], r, random_material(rng))
        anchors.append([xy[0], xy[1], z])
    for _ in range(int(rng.integers(0, 3))):
        r = rng.uniform(0.08, 0.35)
        xy = spot(r + 0.1)
        hh = sz / 2 if rng.random() < 0.5 else rng.uniform(0.2, 0.6)  # pillar or stool
        s.add_cylinder([xy[0], xy[1], hh], r, hh, random_material(rng))
        anchors.append([xy[0], xy[1], min(hh, 1.0)])
    for _ in range(int(rng.integers(0, 3))):  # leaning panels / ramps
        yaw, tilt = rng.uniform(0, 2 * np.pi), rng.uniform(np.radians(20), np.radians(70))
        hu, hv = rng.uniform(0.3, 1.0), rng.uniform(0.3, 0.8)
        u = np.array([-np.sin(yaw), np.cos(yaw), 0.0])
        v = np.array([np.cos(yaw) * np.cos(tilt), np.sin(yaw) * np.cos(tilt), np.sin(tilt)])
        xy = spot(max(hu, hv) + 0.1)
        c = [xy[0], xy[1], hv * np.sin(tilt)]  # lower edge on the floor
        s.add_quad(c, u, v, [hu, hv], random_material(rng))
        anchors.append(c)
    s.nav_xy = np.stack([lo + 0.3, hi - 0.3])
    s.nav_z = np.array([0.3, min(1.7, sz - 0.4)])
    s.anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 3)
    _random_light(rng, s)
    return s


def random_outdoor_scene(rng: np.random.Generator) -> Scene:
    """Ground plane, a far terrain backdrop (radius 25-60 m) and sky; 4-20 objects within ~12 m."""
    s = Scene(kind="outdoor")
    s.ground_mat = torch.as_tensor(random_material(rng, kinds=(TEX_NOISE, TEX_CHECKER, TEX_MARBLE), scale=(0.3, 2.0)), dtype=torch.float32)
    radius = rng.uniform(25.0, 60.0)
    s.backdrop = (radius, rng.uniform(4.0, 20.0))
    bd = random_material(rng, kinds=(TEX_NOISE, TEX_MARBLE), scale=(3.0, 12.0))
    s.backdrop_mat = torch.as_tensor(bd, dtype=torch.float32)
    horizon = rng.uniform([0.7, 0.7, 0.75], [0.95, 0.95, 1.0])
    zenith = rng.uniform([0.1, 0.3, 0.6], [0.5, 0.65, 0.95])
    s.sky_colors = torch.tensor(np.stack([horizon, zenith]), dtype=torch.float32)
    extent = rng.uniform(6.0, 12.0)
    anchors = []
    for _ in range(int(rng.integers(2, 9))):  # buildings, crates
        h = rng.uniform([0.3, 0.3, 0.3], [2.5, 2.5, 3.0])
        xy = rng.uniform(-extent, extent, 2)
        s.add_box([xy[0], xy[1], h[2]], h, rng.uniform(0, np.pi), random_material(rng, scale=(0.2, 2.0)))
        anchors.append([xy[0], xy[1], min(h[2], 1.0)])
    for _ in range(int(rng.integers(1, 6))):  # poles, trunks
        r, hh = rng.uniform(0.05, 0.5), rng.uniform(0.5, 3.0)
        xy = rng.uniform(-extent, extent, 2)
        s.add_cylinder([xy[0], xy[1], hh], r, hh, random_material(rng))
        anchors.append([xy[0], xy[1], min(hh, 1.0)])
    for _ in range(int(rng.integers(0, 5))):  # bushes, boulders
        r = rng.uniform(0.2, 1.5)
        xy = rng.uniform(-extent, extent, 2)
        z = r * rng.uniform(0.4, 1.0)  # partly sunk into the ground
        s.add_sphere([xy[0], xy[1], z], r, random_material(rng))
        anchors.append([xy[0], xy[1], z])
    for _ in range(int(rng.integers(0, 3))):  # ramps, billboards
        yaw, tilt = rng.uniform(0, 2 * np.pi), rng.uniform(np.radians(15), np.radians(90))
        hu, hv = rng.uniform(0.5, 2.0), rng.uniform(0.5, 1.5)
        u = np.array([-np.sin(yaw), np.cos(yaw), 0.0])
        v = np.array([np.cos(yaw) * np.cos(tilt), np.sin(yaw) * np.cos(tilt), np.sin(tilt)])
        xy = rng.uniform(-extent, extent, 2)
        c = [xy[0], xy[1], hv * np.sin(tilt)]
        s.add_quad(c, u, v, [hu, hv], random_material(rng))
        anchors.append(c)
    s.nav_xy = np.array([[-extent - 2, -extent - 2], [extent + 2, extent + 2]])
    s.nav_z = np.array([0.3, 2.0])
    s.anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 3)
    _random_light(rng, s)
    return s


def random_scene(rng: np.random.Generator, p_indoor: float = 0.6) -> Scene:
    """Indoor room with probability p_indoor, else an outdoor-like layout."""
    return random_indoor_scene(rng) if rng.random() < p_indoor else random_outdoor_scene(rng)
