"""Matching path (mvgd_core/cost_volume.py): geometry, cost linear in views, the fixed ZNCC cost
finds the true depth on a synthetic textured scene before any training, sparsification curve."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mvgd_core import cost_volume
from mvgd_core.cameras import invert_pose, look_at, resize_intrinsics
from mvgd_core.cost_volume import (CostVolume, FeatureEncoder, _pairwise_agreement, depth_hypotheses, find_reference_view,
                                   fixed_zncc_cost, project_hypotheses, warped_windows, zncc_features)
from mvgd_core.sparsification import most_confident_indices, sparsification_curve

H, W = 48, 64
K = torch.tensor([[60.0, 0, (W - 1) / 2], [0, 60.0, (H - 1) / 2], [0, 0, 1]])
# plane n . X = c in the target (= SSN) frame, tilted so depth varies over the image (about 2.2 to 4.5)
N_PLANE, C_PLANE = torch.tensor([0.0, -0.35, 1.0]) / math.hypot(0.35, 1.0), 3.0


def _texture(X: torch.Tensor) -> torch.Tensor:
    """Deterministic multi-frequency grey texture of world points (..., 3) -> (...,) in [-1, 1]."""
    x, y, z = X.unbind(-1)
    f = (torch.sin(9.0 * x + 2.0 * y) + torch.sin(7.3 * y - 3.1 * z + 1.0) + torch.sin(13.0 * x - 11.0 * y + 5.0 * z)
         + torch.sin(23.0 * x + 17.0 * y + 0.5))
    return (f / 4).clamp(-1, 1)


def render_plane(T_wc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Grey-textured tilted plane seen by camera T_wc (4, 4) in the target frame: (rgb (3, H, W) in [-1, 1], z-depth (H, W))."""
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    d_cam = torch.stack([u, v, torch.ones_like(u)], -1) @ torch.linalg.inv(K).T  # (H, W, 3), z = 1
    d = d_cam @ T_wc[:3, :3].T
    o = T_wc[:3, 3]
    t = (C_PLANE - N_PLANE @ o) / (d @ N_PLANE)  # ray parameter = z-depth in this camera (d_cam has z = 1)
    X = o + t[..., None] * d
    g = _texture(X)
    return g.expand(3, H, W).clone(), t


def _scene(target_is_cond: bool):
    eyes = [[0.0, 0.0, 0.0], [0.45, 0.05, 0.0], [-0.3, 0.25, 0.1], [0.15, -0.4, 0.05]]
    Ts = [torch.tensor(look_at(e, [0.0, 0.3, 3.0], up=(0.0, -1.0, 0.0)), dtype=torch.float32) for e in eyes]
    Ts[0] = torch.eye(4)  # view 0 is the target camera itself
    views = Ts if target_is_cond else Ts[1:]
    rgb = torch.stack([render_plane(T)[0] for T in views])[None]  # (1, N, 3, H, W)
    _, depth = render_plane(torch.eye(4))
    N = len(views)
    return rgb, K.expand(1, N, 3, 3), torch.stack(views)[None], K[None], depth


@pytest.mark.parametrize("target_is_cond,min_hit", [(True, 0.85), (False, 0.75)])
def test_fixed_zncc_argmax_recovers_true_depth(target_is_cond, min_hit):
    rgb, cK, cT, tK, depth = _scene(target_is_cond)
    hyp = depth_hypotheses(48, 0.5, 20.0)
    cost = fixed_zncc_cost(rgb, cK, cT, tK, hyp)  # (1, D, H, W)
    best = cost[0].argmax(0)  # (H, W)
    true_bin = (hyp.log()[:, None, None] - depth.log()).abs().argmin(0)  # (H, W)
    inner = (slice(4, H - 4), slice(4, W - 4))
    hit = ((best - true_bin).abs() <= 1)[inner].float().mean().item()
    assert hit > min_hit, hit  # before any training: the photometric cost alone finds the plane
    # and it is the geometry that does it: scrambled poses lose the plane
    cT_bad = cT.clone()
    cT_bad[0, -1, :3, 3] = -cT_bad[0, -1, :3, 3] + 0.7
    cT_bad[0, -2, :3, 3] = cT_bad[0, -2, [2, 0, 1], 3] * 1.5
    best_bad = fixed_zncc_cost(rgb, cK, cT_bad, tK, hyp)[0].argmax(0)
    assert ((best_bad - true_bin).abs() <= 1)[inner].float().mean().item() < hit - 0.3


def test_find_reference_view():
    _, cK, cT, tK, _ = _scene(True)
    cT = cT[:, [2, 0, 1, 3]]
    has, idx = find_reference_view(cT, cK, tK)
    assert has.tolist() == [True] and idx.tolist() == [1]
    has, _ = find_reference_view(cT[:, [0, 2, 3]], cK[:, :3], tK)
    assert has.tolist() == [False]


def test_projection_of_the_target_itself_is_the_identity():
    hyp = depth_hypotheses(5, 0.5, 10.0)
    grid, valid = project_hypotheses(K[None], K[None], torch.eye(4)[None], hyp, H, W)
    g = grid.view(1, 5, H, W, 2)
    u = (g[..., 0] + 1) * (W - 1) / 2
    assert torch.allclose(u[0, 3], torch.arange(W, dtype=torch.float32).expand(H, W), atol=1e-3)
    assert valid.all()


def test_projection_matches_the_pinhole_formula_and_invalid_points_sample_zero():
    """project_hypotheses folds K R r into one product per pixel: same points as K (R (d r) + t) / z,
    and points behind or outside the view get a grid that grid_sample turns into exactly 0."""
    hyp = depth_hypotheses(6, 0.3, 20.0)
    cam = torch.as_tensor(look_at([0.9, -0.3, -0.4], [0.0, 0.0, 3.0], up=(0.0, -1.0, 0.0)), dtype=torch.float32)  # camera -> target frame
    grid, valid = project_hypotheses(K[None], K[None], cam[None], hyp, H, W)
    rays = torch.cat([torch.stack(torch.meshgrid(torch.arange(W, dtype=torch.float32), torch.arange(H, dtype=torch.float32), indexing="xy"), -1),
                      torch.ones(H, W, 1)], -1) @ torch.linalg.inv(K).T  # (H, W, 3), z = 1
    T_cw = invert_pose(cam)
    p = (rays[None] * hyp.view(-1, 1, 1, 1)) @ T_cw[:3, :3].T + T_cw[:3, 3]  # (D, H, W, 3) in the view
    uv = (p @ K.T)[..., :2] / p[..., 2:]
    want = uv / torch.tensor([(W - 1) / 2, (H - 1) / 2]) - 1
    got = grid.view(6, H, W, 2)
    assert 0.2 < valid.float().mean() < 0.95  # both kinds present
    assert torch.allclose(got[valid[0]], want[valid[0]], atol=1e-4)
    s = F.grid_sample(torch.ones(1, 2, H, W), grid, align_corners=True).view(2, 6, H, W)
    assert (s[:, ~valid[0]] == 0).all() and (s[:, valid[0]] > 0).all()


def test_zncc_windows_equal_the_unfold_definition():
    g = torch.rand(2, 1, 5, 7, 9, generator=torch.Generator().manual_seed(3))  # (B, 1, D, h, w)
    win = F.unfold(F.pad(g[:, 0].reshape(10, 1, 7, 9), (1, 1, 1, 1), mode="replicate"), 3).view(2, 5, 9, 7, 9).transpose(1, 2)
    win = win - win.mean(1, keepdim=True)
    want = win / (win.norm(dim=1, keepdim=True) + 1e-3)
    assert torch.allclose(warped_windows(g), want, atol=1e-6)
    assert torch.allclose(zncc_features(g[:, :, 0]), want[:, :, 0], atol=1e-6)


def test_pairwise_agreement_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    f = F.normalize(torch.randn(5, 2, 8, 3, 4, 4, generator=g), dim=2)  # (views, B, C, D, h, w)
    m = (torch.rand(5, 2, 3, 4, 4, generator=g) > 0.3).float()
    f = f * m[:, :, None]
    agree = _pairwise_agreement(f.sum(0), (f * f).sum(2).sum(0), m.sum(0))
    num = sum((f[i] * f[j]).sum(1) for i in range(5) for j in range(5) if i != j)
    n = m.sum(0)
    ref = torch.where(n >= 2, num / (n * (n - 1)).clamp_min(1), torch.zeros_like(n))
    assert torch.allclose(agree, ref, atol=1e-5)


def _volume(zncc=True):
    torch.manual_seed(0)
    return CostVolume((H, W), 4, 16, 24, 0.2, 60.0, zncc, 32, 16), FeatureEncoder(16, 4)


def test_cost_volume_shapes_and_distribution():
    cv, enc = _volume()
    rgb, cK, cT, tK, _ = _scene(True)
    feats = enc(rgb.flatten(0, 1)).view(1, rgb.shape[1], 16, H // 4, W // 4)
    out = cv(feats, rgb, cK, cT, tK)
    h, w = H // 4, W // 4
    assert out.prob.shape == (1, 24, h, w) and out.depth.shape == (1, 1, h, w) and out.feats.shape == (1, 16, h, w)
    assert torch.allclose(out.prob.sum(1), torch.ones(1, h, w), atol=1e-5)
    assert ((out.confidence >= 0) & (out.confidence <= 1 + 1e-6)).all()
    assert ((out.depth >= 0.2 - 1e-4) & (out.depth <= 60.0 + 1e-3)).all()
    assert out.colour.shape == (1, 3, h, w) and out.has_ref.tolist() == [True]


def test_cost_is_linear_in_views(monkeypatch):
    """Views are warped a chunk at a time (at most `view_chunk` per grid_sample): work is exactly
    linear in N and no call grows with N."""
    calls = []
    orig = F.grid_sample

    def spy(inp, grid, *a, **kw):
        calls.append((inp.shape[0], grid.numel() * inp.shape[1]))
        return orig(inp, grid, *a, **kw)

    monkeypatch.setattr(F, "grid_sample", spy)
    monkeypatch.setattr(cost_volume, "view_chunk", lambda device: 3)
    cv, enc = _volume()
    totals = []
    for N in (2, 4, 8):
        calls.clear()
        rgb = torch.rand(1, N, 3, H, W) * 2 - 1
        T = torch.stack([torch.tensor(look_at([0.2 * i, 0.1, 0], [0, 0, 3], up=(0, -1, 0)), dtype=torch.float32) for i in range(N)])[None]
        feats = enc(rgb.flatten(0, 1)).view(1, N, 16, H // 4, W // 4)
        cv(feats, rgb, K.expand(1, N, 3, 3), T, K[None])
        assert len(calls) == -(-N // 3) and max(b for b, _ in calls) <= 3
        totals.append(sum(n for _, n in calls))
    assert totals[1] - totals[0] == totals[0] and totals[2] - totals[1] == 2 * totals[0]


@pytest.mark.parametrize("live", [True, False])
def test_chunked_views_give_the_per_view_result(monkeypatch, live):
    """Warping several views per grid_sample is a speed-up only: 1 view per call and 3 per call
    (5 views: a partial last chunk) give the same volume, with the target a conditioning view
    (ref cost skips it) and a novel target."""
    cv, enc = _volume()
    N = 5
    rgb = torch.rand(1, N, 3, H, W) * 2 - 1
    T = torch.stack([torch.tensor(look_at([0.2 * i - 0.4, 0.1 * (i % 2), 0], [0, 0, 3], up=(0, -1, 0)), dtype=torch.float32)
                     for i in range(N)])[None]
    T = invert_pose(T[:, 2 if live else 0])[:, None] @ T  # target frame: view 2 itself, or view 0's pose ...
    if not live:
        T[..., 0, 3] += 0.05  # ... moved 5 cm: not a conditioning view
    feats = enc(rgb.flatten(0, 1)).view(1, N, 16, H // 4, W // 4)
    outs = []
    for chunk in (1, 3):
        monkeypatch.setattr(cost_volume, "view_chunk", lambda device, c=chunk: c)
        outs.append(cv(feats, rgb, K.expand(1, N, 3, 3), T, K[None]))
    assert outs[0].has_ref.tolist() == [live] == outs[1].has_ref.tolist()
    for a, b in [(outs[0].prob, outs[1].prob), (outs[0].depth, outs[1].depth), (outs[0].colour, outs[1].colour)]:
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)


def test_sparsification_curve():
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(1000, generator=g) + 1
    err = torch.rand(1000, generator=g)
    pred = gt * (1 + err)
    good = sparsification_curve(pred, gt, -err)  # confidence = minus the true error: the oracle
    assert good["abs_rel"] == pytest.approx(good["oracle"])
    assert good["abs_rel"] == sorted(good["abs_rel"])  # rises as less confident pixels join
    rand = sparsification_curve(pred, gt, torch.rand(1000, generator=g))
    assert rand["abs_rel"][0] > 2 * good["abs_rel"][0]
    assert rand["abs_rel"][-1] == pytest.approx(good["abs_rel"][-1])  # all pixels: same AbsRel
    gt[:10] = 0  # invalid pixels are ignored
    assert np.isfinite(sparsification_curve(pred, gt, -err)["abs_rel"]).all()


def test_sparsification_samples_equal_confidences_evenly():
    """A calibrated table gives many pixels one value. With the error rising down the image and
    the confidence all one plateau, the curve must stay flat (nothing ranks the errors); image
    order would keep the top rows first and fake a falling curve."""
    gt = np.ones((40, 50))
    pred = gt * (1 + np.linspace(0, 1, 40)[:, None].repeat(50, 1))
    flat = sparsification_curve(pred, gt, np.full_like(gt, 0.7))["abs_rel"]
    assert flat == pytest.approx([flat[-1]] * 4, rel=0.02)
    conf = np.where(np.arange(40)[:, None] >= 30, 0.9, 0.7).repeat(50, 1)  # bottom rows above the plateau
    idx = most_confident_indices(conf.ravel(), 1000)
    assert len(set(idx.tolist())) == 1000 and (conf.ravel()[idx] == 0.9).sum() == 500  # all above the cut, then ties
    assert np.abs(np.diff(np.sort(idx[conf.ravel()[idx] == 0.7]))).max() <= 3  # ties spread over the plateau
    assert most_confident_indices(conf.ravel(), 0).size == 0 and most_confident_indices(conf.ravel(), 5000).size == 2000


def test_live_camera_cost_matches_the_target_image_itself():
    """With the target among the views, the cost compares *its* image with the others: replacing
    the target's image by noise loses the plane even though the other views still agree."""
    rgb, cK, cT, tK, depth = _scene(True)
    hyp = depth_hypotheses(48, 0.5, 20.0)
    true_bin = (hyp.log()[:, None, None] - depth.log()).abs().argmin(0)
    inner = (slice(4, H - 4), slice(4, W - 4))
    noisy = rgb.clone()
    noisy[0, 0] = torch.rand(3, H, W, generator=torch.Generator().manual_seed(1)) * 2 - 1
    best = fixed_zncc_cost(noisy, cK, cT, tK, hyp)[0].argmax(0)
    assert ((best - true_bin).abs() <= 1)[inner].float().mean().item() < 0.3


@pytest.mark.parametrize("target_is_cond", [True, False])
def test_learned_volume_receives_the_fixed_zncc_cost(target_is_cond):
    """The ZNCC channels the aggregator sees are exactly fixed_zncc_cost at the matching resolution."""
    cv, enc = _volume(zncc=True)
    seen = {}
    orig = cv.aggregate.forward

    def spy(x):
        seen["x"] = x
        return orig(x)

    cv.aggregate.forward = spy
    rgb, cK, cT, tK, _ = _scene(target_is_cond)
    N = rgb.shape[1]
    cv(enc(rgb.flatten(0, 1)).view(1, N, 16, H // 4, W // 4), rgb, cK, cT, tK)
    D = cv.num_depths
    fixed = fixed_zncc_cost(rgb, cK, cT, tK, depth_hypotheses(D, cv.d_lo, cv.d_hi), stride=4)
    k = 2 if target_is_cond else 3  # channel blocks: ref, agree (learned), ref, agree (ZNCC)
    assert torch.allclose(seen["x"][:, k * D:(k + 1) * D], fixed, atol=1e-5)


def test_learned_ref_cost_is_the_mean_over_the_other_views():
    """The learned "ref" channels: per hypothesis, the mean over the other valid views of the
    cosine between the target's own features and each view's warped features (summed once at the
    end, by linearity), in a batch of a live target (view 2 of 4) and a novel one (no ref: zero)."""
    cv, enc = _volume()
    N, D, h, w = 4, cv.num_depths, H // 4, W // 4
    torch.manual_seed(1)
    rgb = torch.rand(2, N, 3, H, W) * 2 - 1
    T = torch.stack([torch.tensor(look_at([0.2 * i - 0.3, 0.1 * (i % 2), 0], [0, 0, 3], up=(0, -1, 0)), dtype=torch.float32)
                     for i in range(N)])
    T = torch.stack([invert_pose(T[2])[None] @ T, invert_pose(T[0])[None] @ T])  # (2, N, 4, 4); item 1's target ...
    T[1, :, 0, 3] += 0.07  # ... 7 cm off view 0: novel
    feats = enc(rgb.flatten(0, 1)).view(2, N, 16, h, w)
    seen = {}
    orig = cv.aggregate.forward
    cv.aggregate.forward = lambda x: (seen.setdefault("x", x), orig(x))[1]
    out = cv(feats, rgb, K.expand(2, N, 3, 3), T, K.expand(2, 3, 3))
    assert out.has_ref.tolist() == [True, False]
    unit = feats / feats.norm(dim=2, keepdim=True).clamp_min(1e-12)
    hyp = depth_hypotheses(D, cv.d_lo, cv.d_hi)
    Ks = resize_intrinsics(K, (H, W), (h, w))
    corr, n = torch.zeros(D, h, w), torch.zeros(D, h, w)
    for v in (0, 1, 3):  # every view but the target itself
        grid, valid = project_hypotheses(Ks[None], Ks[None], T[0, v][None], hyp, h, w)
        s = F.grid_sample(unit[0, v][None], grid, mode="bilinear", padding_mode="zeros", align_corners=True).view(16, D, h, w)
        corr += (s * unit[0, 2][:, None]).sum(0)
        n += valid[0].float()
    ref = seen["x"][:, :D]  # channel block 0: learned ref cost
    assert torch.allclose(ref[0], corr / n.clamp_min(1), atol=1e-5)
    assert ref[1].abs().max() == 0
