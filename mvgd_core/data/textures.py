"""Procedural solid textures for the scene renderer (torch, vectorized over hit points).

Textures are functions of a 3D point in the primitive's own frame, so a surface point has the
same albedo from every viewpoint: rendered views are exactly multi-view consistent. Noise is a
lookup in a fixed random lattice (seeded once), so textures are identical across runs.

Texture kinds (`TEX_*`): flat colour, checker, stripes, value-noise (fBm) blend, "marble"
(stripes warped by noise), and natural photographs (`TEX_IMAGE`: the texture and photo
images that scikit-image ships inside its wheel: brick, grass, gravel, a cat, coffee, ...),
so the model also sees real-image statistics. Photos are mapped triplanar in *world*
coordinates (each axis-aligned projection weighted by the surface normal), which keeps them
a function of the surface point and so multi-view consistent. Each material row is
    [a_r, a_g, a_b, b_r, b_g, b_b, kind, scale, dir_x, dir_y, dir_z, seed]  (MAT_DIM = 12)
with colours in [0, 1], scale in metres (period of the pattern; for photos the size of one
tile), dir a unit vector (stripes), seed (noise offset; for photos also which photo).
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

TEX_FLAT, TEX_CHECKER, TEX_STRIPES, TEX_NOISE, TEX_MARBLE, TEX_IMAGE = 0, 1, 2, 3, 4, 5
NUM_TEX = 6
MAT_DIM = 12

# Photos shipped in scikit-image's wheel (skimage/data, BSD-3 / public domain, see its
# README.txt): real textures first, then scenes and objects. Read as files, so skimage (and
# its SciPy dependency) is never imported.
NATURAL_IMAGES = ("brick.png", "grass.png", "gravel.png", "chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg",
                  "motorcycle_left.png", "hubble_deep_field.jpg", "camera.png", "moon.png", "coins.png",
                  "text.png", "color.png", "retina.jpg", "ihc.png")
IMAGE_TILE = 128  # photos are resized to (TILE, TILE): detail beyond what a 48x64 view resolves is wasted

_RES = 32  # lattice period of the noise volume


def _noise_volume() -> torch.Tensor:
    """(1, 1, RES+1, RES+1, RES+1) random lattice values, periodic (last slice = first), fixed seed."""
    v = np.random.default_rng(20250118).random((_RES, _RES, _RES)).astype(np.float32)
    v = np.pad(v, ((0, 1), (0, 1), (0, 1)), mode="wrap")
    return torch.from_numpy(v)[None, None]


def _cell_corners(volume: torch.Tensor) -> torch.Tensor:
    """(8, RES^3): the 8 corner values of every lattice cell, corner k = (dz, dy, dx) bits of k.
    One gather per point then fetches a whole cell (8 separate gathers, or grid_sample, cost 2-3x more)."""
    v = volume[0, 0]
    corners = [v[dz : dz + _RES, dy : dy + _RES, dx : dx + _RES].reshape(-1) for dz in (0, 1) for dy in (0, 1) for dx in (0, 1)]
    return torch.stack(corners).contiguous()


_CORNERS = _cell_corners(_noise_volume())
_GOLDEN = torch.tensor([0.6180339887, 0.7548776662, 0.5698402910])  # per-seed lattice offsets (R2/R3 sequence)


def _mod(x: torch.Tensor, m: float) -> torch.Tensor:
    """x mod m in [0, m) like torch.remainder, ~10x faster on CPU; exact for m a power of 2."""
    return x - torch.floor(x / m) * m


def value_noise(p: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """Smooth 3D value noise in [0, 1]: trilinear interpolation in a fixed periodic random lattice.

    p: (3, N) lattice-unit coordinates; seed: (N,) per-point seeds shifting the lattice so
    materials get different patterns. A table lookup: far cheaper than hashing corners.
    """
    off = torch.frac(seed.to(torch.float32) * _GOLDEN[:, None]) * _RES
    q = _mod(p + off, _RES)  # (3, N) in [0, RES]
    cell = torch.floor(q).clamp_max(_RES - 1)  # q == RES (rounding) stays in the last cell
    f = q - cell  # (3, N) position inside the cell, rows x, y, z
    index = ((cell[2] * _RES + cell[1]) * _RES + cell[0]).long()  # exact in float32 (< 2^24)
    v = _CORNERS.index_select(1, index)  # (8, N)
    v = v[0::2] + (v[1::2] - v[0::2]) * f[0]  # along x: (4, N)
    v = v[0::2] + (v[1::2] - v[0::2]) * f[1]  # along y: (2, N)
    return v[0] + (v[1] - v[0]) * f[2]


def fbm(p: torch.Tensor, seed: torch.Tensor, octaves: int = 3) -> torch.Tensor:
    """Fractal sum of value noise, normalized to [0, 1]. p: (3, N); seed: (N,) float seeds."""
    total, amp, norm = torch.zeros_like(p[0]), 1.0, 0.0
    for o in range(octaves):
        total = total + amp * value_noise(p * (2.0**o), seed + o)
        norm += amp
        amp *= 0.5
    return total / norm


def natural_image_dir() -> Path | None:
    """scikit-image's data folder, found without importing skimage; None when it is not installed."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    return folder if folder.is_dir() else None


@functools.lru_cache(maxsize=1)
def natural_image_atlas() -> torch.Tensor:
    """(1, 3, TILE, TILE * n) float photos in [0, 1] side by side, one tile per NATURAL_IMAGES entry.

    Raises RuntimeError naming the fix when scikit-image (a training/data dependency, in
    requirements.txt) is not installed. Read once per process, then shared read-only.
    """
    folder = natural_image_dir()
    if folder is None:
        raise RuntimeError("natural-image textures need the photos shipped with scikit-image: "
                           "pip install scikit-image==0.26.0, or set ProceduralConfig.p_image_texture: 0")
    tiles = []
    for name in NATURAL_IMAGES:
        img = cv2.imread(str(folder / name), cv2.IMREAD_COLOR)
        if img is None:
            raise RuntimeError(f"natural-image texture {folder / name} is missing or unreadable")
        img = cv2.resize(img, (IMAGE_TILE, IMAGE_TILE), interpolation=cv2.INTER_AREA)
        tiles.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    atlas = np.concatenate(tiles, axis=1).astype(np.float32) / 255.0  # (TILE, TILE * n, 3)
    return torch.from_numpy(atlas).permute(2, 0, 1)[None].contiguous()


def image_albedo(world: torch.Tensor, normals: torch.Tensor, mats: torch.Tensor) -> torch.Tensor:
    """Photo albedo (3, N) at world points (3, N) with world normals (3, N), materials (MAT_DIM, N).

    Triplanar: the photo is projected along x, y and z (tiles of `scale` metres, repeating),
    and the three looks are blended with weights |n|^4, so a face sees mostly the projection
    along its own normal. The first material colour tints the photo (0.5x to 1.5x).
    """
    atlas = natural_image_atlas()
    n_img = len(NATURAL_IMAGES)
    scale = mats[7].clamp_min(1e-3)
    which = torch.remainder(mats[11].round(), n_img)  # (N,) photo index from the material seed
    shift = torch.frac(mats[11] * _GOLDEN[:2, None])  # (2, N) per-material offset of the tiling
    w = normals.abs() ** 4
    w = w / (w[0] + w[1] + w[2]).clamp_min(1e-8)  # (3, N)
    col = torch.zeros_like(world)
    for axis, (i, j) in enumerate(((1, 2), (0, 2), (0, 1))):  # projection along x, y, z
        u = torch.frac(world[i] / scale + shift[0])  # in [0, 1)
        v = torch.frac(world[j] / scale + shift[1])
        x = (which + u) / n_img * 2.0 - 1.0  # column inside the atlas
        y = (1.0 - v) * 2.0 - 1.0  # image rows run down, world "up" runs up
        grid = torch.stack([x, y], -1).view(1, 1, -1, 2)
        look = F.grid_sample(atlas, grid, mode="bilinear", padding_mode="border", align_corners=False)
        col = col + w[axis] * look.view(3, -1)
    return col * (0.5 + mats[0:3])


def albedo(points: torch.Tensor, mats: torch.Tensor, world: torch.Tensor | None = None,
           normals: torch.Tensor | None = None) -> torch.Tensor:
    """Albedo (3, N) in [0, 1] of surface points (3, N) (primitive frame, metres) with
    materials (MAT_DIM, N). Channels-first like the renderer (1-D rows are fast on CPU).

    world, normals: (3, N) world hit points and normals, needed only by TEX_IMAGE materials.
    """
    a, b = mats[0:3], mats[3:6]
    kind = mats[6].round()
    q = points / mats[7].clamp_min(1e-3)  # (3, N) in pattern periods

    # One shared noise field gives fBm blends, marble warping and a fine grain on every kind.
    n = fbm(q * 2.0, mats[11], octaves=2)  # (N,)
    mix = torch.zeros_like(n)  # pattern weight of colour b; each pattern only where its kind is present
    for tex_kind, pattern in ((TEX_CHECKER, _checker), (TEX_STRIPES, _stripes), (TEX_NOISE, _noise_band), (TEX_MARBLE, _marble)):
        is_kind = kind == tex_kind
        if is_kind.any():
            mix = mix + pattern(q, mats, n) * is_kind  # patterns are finite: the masked sum equals a select
    col = a + (b - a) * mix
    photo = torch.nonzero(kind == TEX_IMAGE).squeeze(1)
    if len(photo):
        if world is None or normals is None:
            raise ValueError("albedo: TEX_IMAGE materials need the world points and normals")
        take = lambda x: x.index_select(1, photo)  # noqa: E731
        col.index_copy_(1, photo, image_albedo(take(world), take(normals), take(mats)))
    grain = 0.85 + 0.3 * n  # subtle texture everywhere, so flat faces are not blank
    return (col * grain).clamp(0.0, 1.0)


def _checker(q, mats, n):
    f = torch.floor(q)
    return _mod(f[0] + f[1] + f[2], 2.0)


def _phase(q, mats):
    return q[0] * mats[8] + q[1] * mats[9] + q[2] * mats[10]  # along the stripe direction


def _stripes(q, mats, n):
    return (torch.sin(2 * np.pi * _phase(q, mats)) > 0).to(q.dtype)


def _noise_band(q, mats, n):
    return n.clamp(0.2, 0.8).sub(0.2).div(0.6)


def _marble(q, mats, n):
    return 0.5 + 0.5 * torch.sin(2 * np.pi * (_phase(q, mats) + 1.5 * n))


def use_image_textures(tables: list[torch.Tensor], rng: np.random.Generator, p: float) -> None:
    """Turn each material row of `tables` ((M, MAT_DIM) tensors, edited in place) into a photo
    with probability p; tiles of 0.5-3 m (x10 on rows already larger than 3 m: backdrops).

    Draws from its own `rng`, so scenes without photos are unchanged by this option.
    """
    for table in tables:
        for row in table.view(-1, MAT_DIM):
            if rng.random() < p:
                row[6] = TEX_IMAGE
                row[7] = float(np.exp(rng.uniform(np.log(0.5), np.log(3.0)))) * (10.0 if row[7] > 3.0 else 1.0)


def random_material(rng: np.random.Generator, kinds=(TEX_FLAT, TEX_CHECKER, TEX_STRIPES, TEX_NOISE, TEX_MARBLE), scale=(0.1, 1.0)) -> np.ndarray:
    """One random material row (MAT_DIM,) from a numpy Generator: two colours, a kind, a scale."""
    a = rng.uniform(0.05, 0.95, 3)
    # second colour: a contrasting variant (shifted hue/brightness) so patterns are visible
    delta = rng.uniform(-0.6, 0.6, 3)
    delta *= max(1.0, 0.3 / max(np.abs(delta).mean(), 1e-6))  # at least ~0.3 mean contrast
    b = np.clip(a + delta, 0.02, 0.98)
    kind = float(rng.choice(kinds))
    s = float(np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1]))))
    d = rng.normal(size=3)
    d = d / np.linalg.norm(d)
    return np.concatenate([a, b, [kind, s], d, [float(rng.integers(0, 2**20))]])
