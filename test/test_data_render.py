"""Procedural renderer: exact analytic depth, multi-view consistency, determinism, free space."""
import numpy as np
import pytest
import torch

from mvgd_core.cameras import look_at, project_points, unproject_depth
from mvgd_core.data.render import ProceduralConfig, render, render_sequence
from mvgd_core.data.scenes import Scene, clearance, random_scene
from mvgd_core.data import textures
from mvgd_core.data.textures import MAT_DIM, TEX_IMAGE, random_material
from mvgd_core.data.trajectories import TRAJECTORY_KINDS, random_intrinsics, view_quality

K_SMALL = np.array([[30.0, 0.0, 23.5], [0.0, 30.0, 17.5], [0.0, 0.0, 1.0]])  # 48 x 36


def _room(rng) -> Scene:
    s = Scene(kind="indoor")
    s.room_bounds = torch.tensor([[-2.0, -3.0, 0.0], [2.0, 3.0, 2.5]])
    s.room_mats = torch.as_tensor(np.stack([random_material(rng) for _ in range(6)]), dtype=torch.float32)
    return s


def test_depth_of_fronto_parallel_wall_is_exact(rng):
    scene = _room(rng)  # wall at x = +2
    T = look_at([0.5, 0.0, 1.2], [5.0, 0.0, 1.2])
    out = render(scene, K_SMALL, T, 36, 48)
    assert out.rgb.shape == (1, 36, 48, 3) and out.rgb.dtype == torch.uint8
    torch.testing.assert_close(out.depth[0], torch.full((36, 48), 1.5), atol=1e-5, rtol=0)


def test_depth_matches_ray_plane_distance_for_tilted_camera(rng):
    scene = _room(rng)
    T = look_at([0.3, -1.0, 1.0], [2.0, 0.5, 0.4])  # sees the +x wall and the floor obliquely
    depth = render(scene, K_SMALL, T, 36, 48).depth[0].double()
    pts = unproject_depth(depth, torch.as_tensor(K_SMALL), torch.as_tensor(T))  # (H, W, 3)
    on_wall = (pts[..., 0] - 2.0).abs() < 1e-3
    on_floor = pts[..., 2].abs() < 1e-3
    assert on_wall.sum() > 50 and on_floor.sum() > 50
    # every pixel lies on some room face: analytic ray-plane hit within float32 precision
    lo, hi = torch.tensor([-2.0, -3.0, 0.0]), torch.tensor([2.0, 3.0, 2.5])
    face_dist = torch.minimum((pts - lo).abs(), (pts - hi).abs()).amin(-1)
    assert face_dist.max() < 1e-4
    # independent check of the wall pixels: z-depth = (2 - o_x) / d_x for ray d = R K^-1 [u, v, 1]
    v, u = torch.nonzero(on_wall & (pts[..., 2] > 0.01), as_tuple=True)  # not the wall-floor corner
    d = torch.stack([u, v, torch.ones_like(u)], -1).double() @ torch.linalg.inv(torch.as_tensor(K_SMALL)).T @ torch.as_tensor(T[:3, :3]).T
    expected = (2.0 - T[0, 3]) / d[:, 0]
    torch.testing.assert_close(depth[v, u], expected, atol=1e-4, rtol=1e-5)


def test_sphere_surface_distance(rng):
    scene = _room(rng)
    scene.add_sphere([1.0, 0.0, 1.0], 0.4, random_material(rng))
    T = look_at([-1.0, 0.2, 1.1], [1.0, 0.0, 1.0])
    depth = render(scene, K_SMALL, T, 36, 48).depth[0].double()
    pts = unproject_depth(depth, torch.as_tensor(K_SMALL), torch.as_tensor(T))
    r = (pts - torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)).norm(dim=-1)
    on_sphere = r < 0.45
    assert on_sphere.sum() > 20
    assert (r[on_sphere] - 0.4).abs().max() < 1e-4


@pytest.mark.parametrize("p_image", [0.0, 1.0])  # procedural patterns only / natural photos on every surface
def test_reprojection_into_neighbour_lands_on_matching_colours(p_image):
    frames = render_sequence(3, 6, 48, 64, ProceduralConfig(p_image_texture=p_image), trajectory="handheld")
    a, b = frames[0], frames[5]
    K = torch.as_tensor(a.K)
    pts = unproject_depth(torch.as_tensor(a.depth).double(), K, torch.as_tensor(a.T_wc)).reshape(-1, 3)
    uv, z = project_points(pts, torch.as_tensor(b.K), torch.as_tensor(b.T_wc))
    ui, vi = uv[:, 0].round().long(), uv[:, 1].round().long()
    inside = (torch.as_tensor(a.depth).reshape(-1) > 0) & (z > 0) & (ui >= 0) & (ui < 64) & (vi >= 0) & (vi < 48)
    ui, vi, z = ui[inside], vi[inside], z[inside]
    db = torch.as_tensor(b.depth)[vi, ui].double()
    covisible = (db - z).abs() < 0.02 * z  # not occluded in b
    assert covisible.sum() > 0.3 * 48 * 64
    ca = torch.as_tensor(a.rgb).reshape(-1, 3)[inside][covisible].float()
    cb = torch.as_tensor(b.rgb)[vi, ui][covisible].float()
    err = (ca - cb).abs().mean(-1)
    assert err.median() < 6.0, f"median colour error {err.median():.1f} / 255"


def test_render_sequence_is_deterministic_by_seed():
    a = render_sequence(11, 3, 24, 32)
    b = render_sequence(11, 3, 24, 32)
    c = render_sequence(12, 3, 24, 32)
    for fa, fb in zip(a, b):
        assert np.array_equal(fa.rgb, fb.rgb) and np.array_equal(fa.depth, fb.depth) and np.array_equal(fa.T_wc, fb.T_wc)
    assert not np.array_equal(a[0].rgb, c[0].rgb)


@pytest.mark.parametrize("kind", TRAJECTORY_KINDS)
def test_trajectories_stay_in_free_space_and_look_at_something(kind):
    for seed in range(3):
        frames = render_sequence(seed, 5, 24, 32, ProceduralConfig(p_indoor=0.5), trajectory=kind)
        rng = np.random.default_rng(seed)
        scene = random_scene(rng, 0.5)  # the same scene render_sequence drew from this seed
        centres = np.stack([f.T_wc[:3, 3] for f in frames])
        assert (clearance(scene, centres) > 0.1).all()
        assert all((f.depth > 0).mean() >= 0.5 for f in frames)
        np.testing.assert_allclose(view_quality(scene, np.stack([f.T_wc for f in frames]), frames[0].K, 24, 32) >= 0.5, True)


def test_any_resolution_and_intrinsics(rng):
    K = random_intrinsics(rng, 10, 70)
    assert K[0, 0] > 0 and abs(K[0, 2] - 34.5) < 2
    out = render(random_scene(rng), K, look_at([0, 0, 1.0], [1.0, 0.2, 0.9]), 10, 70)
    assert out.depth.shape == (1, 10, 70)
    with pytest.raises(ValueError, match="intrinsics for"):
        render(random_scene(rng), np.stack([K, K]), np.stack([np.eye(4)] * 3), 10, 70)
    assert MAT_DIM == random_material(rng).shape[0]


def test_photo_textures_change_colours_only():
    """Photos come from their own generator: same scene geometry and trajectory, other colours."""
    plain = render_sequence(5, 2, 24, 32, ProceduralConfig(p_image_texture=0.0))
    photo = render_sequence(5, 2, 24, 32, ProceduralConfig(p_image_texture=1.0))
    for a, b in zip(plain, photo):
        assert np.array_equal(a.depth, b.depth) and np.array_equal(a.T_wc, b.T_wc)
        assert np.abs(a.rgb.astype(int) - b.rgb.astype(int)).mean() > 10


def test_photo_materials_use_every_table(rng):
    scene = random_scene(rng, p_indoor=1.0)
    textures.use_image_textures(scene.material_tables(), np.random.default_rng(0), 1.0)
    assert all((t.view(-1, MAT_DIM)[:, 6] == TEX_IMAGE).all() for t in scene.material_tables())
    atlas = textures.natural_image_atlas()
    assert atlas.shape == (1, 3, textures.IMAGE_TILE, textures.IMAGE_TILE * len(textures.NATURAL_IMAGES))
    assert 0.2 < atlas.mean() < 0.8 and atlas.std() > 0.1  # real pictures, not blank tiles


def test_photo_textures_without_scikit_image_fail_clearly(monkeypatch):
    monkeypatch.setattr(textures, "natural_image_dir", lambda: None)
    textures.natural_image_atlas.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="scikit-image.*p_image_texture: 0"):
            render_sequence(5, 1, 12, 16, ProceduralConfig(p_image_texture=1.0))
        render_sequence(5, 1, 12, 16, ProceduralConfig(p_image_texture=0.0))  # patterns alone still work
    finally:
        textures.natural_image_atlas.cache_clear()
    with pytest.raises(ValueError, match="p_image_texture"):
        ProceduralConfig(p_image_texture=1.5)


@pytest.mark.parametrize("seed", range(4))
def test_every_pixel_is_the_nearest_surface_along_its_ray(seed):
    """Hit points lie on a surface, and the segment from the camera to them is free space (a
    farther surface chosen over a nearer solid would put part of the segment inside it).
    Covers every primitive type (yawed boxes, capped cylinders, spheres, quads, room, ground)."""
    frames = render_sequence(seed, 2, 36, 48, ProceduralConfig(p_indoor=0.5))
    scene = random_scene(np.random.default_rng(seed), 0.5)  # the scene render_sequence drew
    for f in frames:
        pts = unproject_depth(torch.as_tensor(f.depth).double(), torch.as_tensor(f.K), torch.as_tensor(f.T_wc)).reshape(-1, 3)
        pts = pts[torch.as_tensor(f.depth).reshape(-1) > 0].numpy()
        assert len(pts) > 100
        assert np.abs(clearance(scene, pts)).max() < 2e-3
        along = f.T_wc[:3, 3] + np.linspace(0.05, 0.97, 12)[:, None, None] * (pts - f.T_wc[:3, 3])  # (12, P, 3)
        assert clearance(scene, along.reshape(-1, 3)).min() > -2e-3


def test_chunking_leaves_the_image_unchanged(monkeypatch, rng):
    """Views are cast in chunks of rays (several views, or rows of one view): the split is invisible."""
    import mvgd_core.data.render as render_module

    scene = random_scene(rng)
    K = random_intrinsics(rng, 30, 40)
    T = np.stack([look_at([0.1 * k, 0.0, 1.0], [2.0, 0.5, 0.8]) for k in range(3)])
    whole = render(scene, K, T, 30, 40)
    for chunk in (500, 1200, 2500):  # rows of one view; one view; two views and a part
        monkeypatch.setattr(render_module, "_CHUNK", chunk)
        part = render(scene, K, T, 30, 40)
        for name in ("rgb", "depth", "normal"):
            assert torch.equal(getattr(part, name), getattr(whole, name)), (chunk, name)


def test_value_noise_is_trilinear_interpolation_of_the_lattice():
    """The cell-corner table lookup equals grid_sample's trilinear interpolation of the lattice."""
    gen = torch.Generator().manual_seed(0)
    p = torch.rand(3, 500, generator=gen) * 80 - 20
    seed = torch.randint(0, 1000, (500,), generator=gen).float()
    off = torch.frac(seed * textures._GOLDEN[:, None]) * textures._RES
    q = torch.remainder(p + off, textures._RES) * (2.0 / textures._RES) - 1.0
    grid = q.t().reshape(1, 1, 1, -1, 3)
    expected = torch.nn.functional.grid_sample(textures._noise_volume(), grid, mode="bilinear", align_corners=True).view(-1)
    torch.testing.assert_close(textures.value_noise(p, seed), expected, atol=1e-5, rtol=0)
