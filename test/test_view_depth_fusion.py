"""Novel-view depth fusion (mvgd_core/view_depth_fusion.py): the reprojection is exact, the nearest
surface wins, the log-median takes the consensus, and MVGDPredictor fuses only at novel targets."""
import numpy as np
import pytest
import torch

from mvgd_core.cameras import invert_pose, look_at
from mvgd_core.view_depth_fusion import FusionConfig, fill_splat, fuse_view_depths, splat_depth

K = torch.tensor([[60.0, 0.0, 31.5], [0.0, 60.0, 23.5], [0.0, 0.0, 1.0]])
HW = (48, 64)


def _pose(x=0.0, z=0.0) -> torch.Tensor:
    T = torch.eye(4)
    T[0, 3], T[2, 3] = x, z
    return T


def _plane(z: float) -> torch.Tensor:
    return torch.full(HW, z)


def test_splat_into_the_same_camera_is_the_identity():
    d = 2.0 + torch.rand(HW)
    assert torch.equal(splat_depth(d, K, torch.eye(4), K, HW), d)


def test_splat_of_a_plane_after_moving_forward_is_the_plane_nearer():
    """A fronto-parallel wall at 3 m seen from a camera 0.5 m further forward is at 2.5 m there. The
    nearer view magnifies it 1.2x, so one pixel in ~6 gets no source pixel (a crack: no vote there)."""
    moved = invert_pose(_pose(z=0.5)) @ _pose()  # source -> target: the target sits 0.5 m ahead
    out = splat_depth(_plane(3.0), K, moved, K, HW)
    hit = out > 0
    assert 0.6 < hit[12:36, 16:48].float().mean() < 0.8
    assert torch.allclose(out[hit], torch.full_like(out[hit], 2.5), atol=1e-5)


def test_splat_keeps_the_nearest_surface_and_leaves_unseen_pixels_empty():
    """A near box in front of a far wall, seen from the side: where both land, the box (nearer) wins;
    a view looking the other way lands nothing."""
    d = _plane(4.0)
    d[18:30, 26:38] = 1.0
    side = invert_pose(_pose(x=0.3)) @ _pose()
    out = splat_depth(d, K, side, K, HW)
    assert (out == 1.0).sum() >= 100  # the box is still there, shifted
    assert out.max() == pytest.approx(4.0) and out[out > 0].min() == pytest.approx(1.0)
    behind = torch.diag(torch.tensor([-1.0, 1.0, -1.0, 1.0]))  # turned 180 degrees about y
    assert not (splat_depth(d, K, behind, K, HW) > 0).any()


def test_fill_splat_closes_the_cracks_of_a_magnified_surface_with_the_nearest_depth():
    moved = invert_pose(_pose(z=0.5)) @ _pose()  # the target 0.5 m nearer: cracks (test above)
    out = splat_depth(_plane(3.0), K, moved, K, HW)
    filled = fill_splat(out, 1)
    assert (out[12:36, 16:48] == 0).any() and (filled[12:36, 16:48] == 2.5).all()
    assert torch.equal(fill_splat(out, 0), out)
    s = torch.zeros(HW)
    s[10, 10], s[10, 12] = 4.0, 2.0  # two points two pixels apart
    f = fill_splat(s, 1)
    assert f[10, 11] == 2.0 and f[9, 9] == 4.0 and f[10, 10] == 4.0  # empty: the nearer; landed: its own
    assert (f[:, 14:] == 0).all() and (f[13:] == 0).all()  # nothing beyond the radius


def test_fusion_votes_on_cracks_only_with_a_splat_radius():
    moved = _pose(z=0.5)  # the target camera sits 0.5 m ahead of the view
    net = _plane(3.5)
    with_radius, votes = fuse_view_depths(net, K, moved, [_plane(3.0)], [K], [_pose()], FusionConfig(splat_radius=1))
    without, votes0 = fuse_view_depths(net, K, moved, [_plane(3.0)], [K], [_pose()])  # the default: 0
    inner = (slice(12, 36), slice(16, 48))
    assert (votes[inner] == 1).all() and (votes0[inner] == 0).any()
    assert torch.equal(without[inner][votes0[inner] == 0], net[inner][votes0[inner] == 0])
    assert torch.allclose(with_radius[inner], torch.full_like(net[inner], float(np.sqrt(2.5 * 3.5))), rtol=1e-5)
    with pytest.raises(ValueError, match="splat_radius"):
        FusionConfig(splat_radius=-1)


def test_fusion_takes_the_views_consensus_over_a_wrong_network():
    gt, net = _plane(3.0), _plane(4.5)  # the network 1.5x too far
    T = [_pose(x=0.1 * i) for i in (-1, 1, 2)]
    fused, votes = fuse_view_depths(net, K, _pose(), [gt, gt, gt], [K] * 3, T)
    inner = votes == 3
    assert inner.float().mean() > 0.5
    assert torch.allclose(fused[inner], gt[inner], rtol=1e-5)  # median of (4.5, 3, 3, 3)
    one, _ = fuse_view_depths(net, K, _pose(), [gt], [K], T[:1])  # two votes: the mean in log
    assert one[24, 32] == pytest.approx(float(np.sqrt(3.0 * 4.5)), rel=1e-5)


def test_fusion_leaves_the_network_where_no_view_lands_or_when_off():
    net = _plane(4.5)
    fused, votes = fuse_view_depths(net, K, _pose(), [None, _plane(3.0)], [K, K], [_pose(), _pose(x=5.0)])
    assert torch.equal(fused[votes == 0], net[votes == 0]) and (votes == 0).any()
    for cfg in (FusionConfig(enabled=False), FusionConfig(min_views=2)):
        assert torch.equal(fuse_view_depths(net, K, _pose(), [_plane(3.0)], [K], [_pose()], cfg)[0], net)
    with pytest.raises(ValueError, match="min_views"):
        FusionConfig(min_views=0)


def test_fusion_is_exact_with_a_world_far_from_the_origin():
    """Map frames can sit kilometres from the origin; poses stay float64 until they are relative."""
    far = torch.eye(4, dtype=torch.float64)
    far[:3, 3] = torch.tensor([3000.0, -2000.0, 50.0])
    views = [far @ _pose(x=0.1).double(), far @ _pose(x=-0.1).double()]
    fused, votes = fuse_view_depths(_plane(4.5), K, far @ _pose().double(), [_plane(3.0)] * 2, [K] * 2, views)
    inner = votes == 2
    assert inner.float().mean() > 0.5 and torch.allclose(fused[inner], torch.full_like(fused[inner], 3.0), rtol=1e-5)


def test_predictor_fuses_only_at_novel_targets():
    """The live camera's depth is what the keyframes' depth comes from: passing view depth there
    changes nothing; at a novel camera it does, and Prediction.fused_share says where."""
    from test_inference import _frames, _random_model
    from mvgd_core.diffusion import DiffusionConfig
    from mvgd_core.inference import MVGDPredictor

    pred = MVGDPredictor(_random_model(), DiffusionConfig(), device="cpu", steps=1)
    frames, Kf = _frames(3)
    h, w = frames[0].rgb.shape[:2]
    views = [(np.full((h, w), 2.0, np.float32), Kf)] * 3
    live = frames[1]
    a = pred.predict(frames, live.K, live.T_wc, (h, w), task="depth")
    b = pred.predict(frames, live.K, live.T_wc, (h, w), task="depth", view_depth=views)
    assert np.array_equal(a.depth, b.depth) and b.fused_share == 0.0
    novel = look_at([0.2, -1.9, 0.3], [0, 0, 0.3])
    c = pred.predict(frames, Kf, novel, (h, w), task="depth")
    d = pred.predict(frames, Kf, novel, (h, w), task="depth", view_depth=views)
    assert c.fused_share is None and d.fused_share > 0.3
    assert not np.array_equal(c.depth, d.depth)
    with pytest.raises(ValueError, match="one entry per conditioning frame"):
        pred.predict(frames, Kf, novel, (h, w), task="depth", view_depth=views[:2])
