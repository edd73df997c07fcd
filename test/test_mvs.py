"""Classical MVS (mvgd_core/mvs.py): accuracy where the naive sweep works, lighting invariance,
the consistency filter, confidence, scale-free depth range, source selection, bad input."""
import numpy as np
import pytest
import torch

from mvgd_core import baselines as B
from mvgd_core import mvs as M
from mvgd_core.cameras import look_at, make_intrinsics
from mvgd_core.data.render import render
from mvgd_core.data.scenes import random_indoor_scene

from test_baselines import H, K, PLANE_Z, W, _scene

# Rendered room: 4 cameras side by side looking at a wall over objects, 48 x 64.
RH, RW = 48, 64
RK = make_intrinsics(50.0, 50.0, (RW - 1) / 2, (RH - 1) / 2)
FAST = M.MVSConfig(num_planes=48)


@pytest.fixture(scope="module")
def room():
    """rgb (4, 3, h, w) [0, 1], depth (4, h, w), K (4, 3, 3), T (4, 4, 4); the reference is view 0."""
    scene = random_indoor_scene(np.random.default_rng(6))  # 6 x 5 m, depths 1.2-6 m
    lo, hi = scene.room_bounds.tolist()
    ys = [0.0, 0.25, -0.25, 0.45]
    poses = np.stack([look_at([lo[0] + 0.4, y, 1.4], [hi[0], y * 0.5, 1.1]) for y in ys])
    out = render(scene, RK.numpy(), poses, RH, RW)
    rgb = out.rgb.permute(0, 3, 1, 2).float() / 255
    assert (out.depth > 1.0).all()  # every camera sees surfaces, none sits inside an object
    return rgb, out.depth, RK.expand(4, 3, 3).clone(), torch.as_tensor(poses, dtype=torch.float32)


def _rel(pred, gt, mask):
    return ((pred - gt).abs() / gt)[mask]


def test_plane_recovered_accurately_and_range_from_poses():
    rgb, depth, Ks, T = _scene()
    r = M.mvs_at_view(rgb, Ks, T, 2, FAST)
    assert 2 not in r.sources and len(r.sources) == 4
    d_min, d_max = r.depth_range
    assert d_min < PLANE_Z < d_max  # found from the poses, no range given
    inner = r.valid.clone()
    inner[:, :8] = inner[:, -8:] = False
    assert r.valid.float().mean() > 0.8
    rel = _rel(r.depth, depth[2], inner)
    assert rel.median() < 0.02 and (rel < 0.05).float().mean() > 0.95, rel.median()


def test_rendered_room_better_than_plane_sweep(room):
    rgb, depth, Ks, T = room
    r = M.mvs_depth(rgb[0], Ks[0], T[0], rgb[1:], Ks[1:], T[1:], FAST)
    ps, ps_valid, _ = B.plane_sweep_depth(rgb[0], Ks[0], T[0], rgb[1:], Ks[1:], T[1:])
    assert r.valid.float().mean() > 0.3
    rel = _rel(r.depth, depth[0], r.valid)
    rel_ps = _rel(ps, depth[0], r.valid)  # the old sweep on the same pixels
    assert rel.median() < 0.04, rel.median()  # 1 px of disparity is ~15 % at 4 m here
    assert (rel < 0.1).float().mean() > 0.8 > (rel_ps < 0.1).float().mean()
    assert rel.mean() < rel_ps.mean(), (rel.mean(), rel_ps.mean())


def test_gain_and_offset_on_a_source_barely_change_depth(room):
    rgb, depth, Ks, T = room
    a = M.mvs_depth(rgb[0], Ks[0], T[0], rgb[1:], Ks[1:], T[1:], FAST)
    lit = rgb[1:].clone()
    lit[0] = 0.6 * lit[0] + 0.25  # a darker, washed-out exposure of one source
    b = M.mvs_depth(rgb[0], Ks[0], T[0], lit, Ks[1:], T[1:], FAST)
    both = a.valid & b.valid
    assert both.sum() > 0.9 * a.valid.sum()
    assert _rel(b.depth, a.depth, both).median() < 0.005
    # the naive absolute-difference sweep is not invariant: the same change moves it a lot
    ad0, v0, _ = B.plane_sweep_depth(rgb[0], Ks[0], T[0], rgb[1:], Ks[1:], T[1:], cost="ad")
    ad1, v1, _ = B.plane_sweep_depth(rgb[0], Ks[0], T[0], lit, Ks[1:], T[1:], cost="ad")
    assert _rel(ad1, ad0, v0 & v1).mean() > 5 * _rel(b.depth, a.depth, both).mean()


def test_consistency_check_removes_wrong_pixels(room):
    rgb, depth, Ks, T = room
    loose = M.MVSConfig(num_planes=48, check_views=0, min_confidence=0.0)
    raw = M.mvs_depth(rgb[0], Ks[0], T[0], rgb[1:], Ks[1:], T[1:], loose)
    kept = M.mvs_depth(rgb[0], Ks[0], T[0], rgb[1:], Ks[1:], T[1:], M.MVSConfig(num_planes=48, min_confidence=0.0))
    removed = raw.valid & ~kept.valid
    assert removed.sum() > 20 and kept.valid.sum() > 0.3 * raw.valid.sum()
    err = _rel(raw.depth, depth[0], torch.ones_like(raw.valid))
    assert err[removed.flatten()].median() > 3 * err[kept.valid.flatten()].median()
    # a pixel the check keeps is right far more often than one it removes
    acc_kept, acc_removed = ((err[m.flatten()] < 0.1).float().mean() for m in (kept.valid, removed))
    assert acc_kept > 0.75 and acc_kept > acc_removed + 0.2, (acc_kept, acc_removed)


def test_pixels_no_source_sees_are_invalid():
    rgb, depth, Ks, T = _scene()
    # sources only to the right of the reference: its left border is seen by none of them
    r = M.mvs_depth(rgb[0], Ks[0], T[0], rgb[2:], Ks[2:], T[2:], FAST)
    assert not r.valid[:, :4].any()
    assert (r.depth[~r.valid] == 0).all() and r.valid[:, W // 2 :].float().mean() > 0.9


def test_confidence_ranks_errors(room):
    rgb, depth, Ks, T = room
    raw = M.mvs_depth(rgb[0], Ks[0], T[0], rgb[1:], Ks[1:], T[1:], M.MVSConfig(num_planes=48, check_views=0, min_confidence=0.0))
    err = _rel(raw.depth, depth[0], raw.valid)
    conf = raw.confidence[raw.valid]
    lo, hi = conf <= conf.quantile(0.25), conf >= conf.quantile(0.75)
    assert err[lo].mean() > 2 * err[hi].mean(), (err[lo].mean(), err[hi].mean())
    assert ((0 <= raw.confidence) & (raw.confidence <= 1)).all()


def test_world_scaled_by_ten_scales_depth_by_ten():
    rgb, depth, Ks, T = _scene()
    big = T.clone()
    big[:, :3, 3] *= 10.0  # same images: a 10x larger world seen from 10x farther apart
    a = M.mvs_at_view(rgb, Ks, T, 2, FAST)
    b = M.mvs_at_view(rgb, Ks, big, 2, FAST)
    assert b.depth_range == pytest.approx(tuple(10 * x for x in a.depth_range), rel=1e-4)
    assert a.sources == b.sources and torch.equal(a.valid, b.valid)
    torch.testing.assert_close(b.depth, 10 * a.depth, rtol=1e-3, atol=1e-4)


def test_no_parallax_means_no_depth():
    rgb, depth, Ks, T = _scene(xs=(0.0, 0.0, 0.0))
    T = T.clone()
    T[:, :3, 3] = 0.0
    r = M.mvs_depth(rgb[0], Ks[0], T[0], rgb[1:], Ks[1:], T[1:], FAST)
    assert not r.valid.any() and (r.depth == 0).all()


def test_source_selection_prefers_parallax():
    T = torch.eye(4).repeat(5, 1, 1)
    T[:, 0, 3] = torch.tensor([0.0, 0.0, 0.01, 0.3, 0.6])  # ref, a duplicate, a jitter, two real baselines
    near = B.nearest_views(T[0], T, k=2, exclude=0)
    assert set(near) == {1, 2}  # what the naive sweep would match against: no parallax
    assert set(M.select_sources(T[0], T, 2, M.MVSConfig(), exclude=0)) == {3, 4}
    # a view turned away is used only when nothing else is left
    T[4, :3, :3] = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # 90 deg about y
    assert M.select_sources(T[0], T, 4, M.MVSConfig(), exclude=0)[-1] == 4


def test_novel_view_and_run_baselines_entry():
    rgb, depth, Ks, T = _scene()
    tgt = T[2].clone()
    tgt[0, 3] += 0.04
    out = M.mvs_novel_view(rgb, Ks, T, K, tgt, (H, W), cfg=FAST)
    assert out["ref"] == 2 and 2 not in out["sources"]
    v = out["valid"]
    assert v.float().mean() > 0.7 and ((out["depth"][v] - PLANE_Z).abs() / PLANE_Z).median() < 0.03
    assert (out["confidence"][v] > 0.3).all()
    res = B.run_baselines(rgb, Ks, T, K, T[2], (H, W), methods=("mvs",), mvs_cfg=FAST)
    m = res["mvs"]
    assert set(res) == {"mvs"} and m["valid"].all() and m["confidence"].shape == (H, W)
    assert 0.5 < m["coverage"] < 1.0 and ((m["depth_sparse"] > 0).float().mean() - m["coverage"]) ** 2 < 1e-6


def test_bad_input_fails_clearly():
    rgb, _, Ks, T = _scene()
    with pytest.raises(ValueError, match="at least 1 source"):
        M.mvs_depth(rgb[0], Ks[0], T[0], rgb[:0], Ks[:0], T[:0])
    with pytest.raises(ValueError, match="ref_rgb"):
        M.mvs_depth(rgb[0, :1], Ks[0], T[0], rgb[1:], Ks[1:], T[1:])
    with pytest.raises(ValueError, match="src_rgb"):
        M.mvs_depth(rgb[0], Ks[0], T[0], rgb[1:, :2], Ks[1:], T[1:])
    with pytest.raises(ValueError, match="src_K"):
        M.mvs_depth(rgb[0], Ks[0], T[0], rgb[1:], Ks[2:], T[1:])
    with pytest.raises(ValueError, match="N >= 2"):
        M.mvs_at_view(rgb[:1], Ks[:1], T[:1], 0)
    with pytest.raises(ValueError, match="d_min"):
        M.MVSConfig(d_min=5.0, d_max=1.0)
    with pytest.raises(ValueError, match="window"):
        M.MVSConfig(window=4)
    with pytest.raises(ValueError, match="unknown methods"):
        B.run_baselines(rgb, Ks, T, K, T[2], (H, W), methods=("mvs", "magic"))


def _sgm_reference(vol, gray, p1, p2, p2_edge):
    """Hirschmueller's Eq. 13 pixel by pixel, 4 paths, in float64 (the definition the fast scan must match)."""
    D, H, W = vol.shape
    v, g = vol.double(), gray.double()
    total = torch.zeros_like(v)
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        Lr = torch.zeros_like(v)
        ys = range(H) if dy >= 0 else range(H - 1, -1, -1)
        xs = range(W) if dx >= 0 else range(W - 1, -1, -1)
        for y in ys:
            for x in xs:
                py, px = y - dy, x - dx
                if not (0 <= py < H and 0 <= px < W):
                    Lr[:, y, x] = v[:, y, x]
                    continue
                prev = Lr[:, py, px]
                m = prev.min()
                P2 = p1 + (p2 - p1) / (1.0 + abs(float(g[y, x] - g[py, px])) / p2_edge)
                for d in range(D):
                    nb = min(prev[d - 1] if d > 0 else float("inf"), prev[d + 1] if d < D - 1 else float("inf"))
                    Lr[d, y, x] = v[d, y, x] + min(prev[d], nb + p1, m + P2) - m
        total += Lr
    return total / 4


def test_sgm_matches_the_recursion_written_out():
    """sgm_aggregate (all paths of one orientation per tensor step, step-major buffers) equals
    the per-pixel recursion on a small non-square volume, edge-aware P2 included."""
    gen = torch.Generator().manual_seed(3)
    vol, gray = torch.rand(5, 6, 7, generator=gen), torch.rand(6, 7, generator=gen)
    got = M.sgm_aggregate(vol, gray, 0.1, 0.6, 0.1)
    assert torch.allclose(got.double(), _sgm_reference(vol, gray, 0.1, 0.6, 0.1), atol=1e-5)


def test_guided_filter_keeps_cost_edges_where_the_image_has_them():
    """Fast cost-volume filtering: with a flat guide it is a plain (twice applied) box filter; where
    the guide has an edge, a cost step on that edge stays sharp (a box filter smears it over the
    window), and a cost step where the guide is flat is smoothed."""
    H, W, r = 20, 24, 3
    step = torch.zeros(1, H, W)
    step[..., W // 2:] = 1.0
    flat = torch.full((H, W), 0.5)
    k = 2 * r + 1
    assert torch.allclose(M.guided_filter(step, flat, r, 1e-2), M.box_mean(M.box_mean(step, k), k), atol=1e-5)
    edge_guide = step[0] * 0.8 + 0.1
    kept = M.guided_filter(step, edge_guide, r, 1e-3)
    assert (kept - step).abs().max() < 0.05  # 0/1 either side of the edge
    assert (M.box_mean(step, k) - step).abs().max() > 0.4
    smoothed = M.guided_filter(step, flat, r, 1e-3)
    assert (smoothed - step).abs().max() > 0.3
