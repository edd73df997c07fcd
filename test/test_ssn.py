"""Scene Scale Normalization: hand-computed scale, invariances, degenerate fallback, log-depth."""
import math

import numpy as np
import pytest
import torch

from mvgd_core.cameras import invert_pose, look_at
from mvgd_core.ssn import depth_to_param, normalize_cameras, param_to_depth, relative_poses, scene_scale
from geometry_helpers import random_rigid


def _cams():
    cond = torch.stack([torch.tensor(look_at(e, [0, 4, 1]), dtype=torch.float64) for e in ([1, 0, 1], [-2, 0.5, 1.2], [0.5, 1, 0.8])])
    tgt = torch.tensor(look_at([0, -1, 1], [0, 4, 1]), dtype=torch.float64)
    return cond[None], tgt[None]  # (1, 3, 4, 4), (1, 4, 4)




def test_relative_pose_maps_camera_points_into_target_frame():
    cond, tgt = _cams()
    rel = relative_poses(cond, tgt)  # (1, 3, 4, 4)
    p_c = torch.tensor([0.3, -0.2, 2.0, 1.0], dtype=torch.float64)
    p_w = cond[0, 1] @ p_c
    p_t = invert_pose(tgt[0]) @ p_w
    np.testing.assert_allclose(rel[0, 1] @ p_c, p_t, atol=1e-12)
    # the target relative to itself is the identity
    np.testing.assert_allclose(relative_poses(tgt[:, None], tgt)[0, 0], torch.eye(4), atol=1e-12)


def test_scale_is_max_abs_translation_hand_computed():
    rel = torch.eye(4).repeat(1, 2, 1, 1)  # (1, 2, 4, 4)
    rel[0, 0, :3, 3] = torch.tensor([1.0, -3.0, 0.5])
    rel[0, 1, :3, 3] = torch.tensor([2.0, 0.0, -2.5])
    assert scene_scale(rel).item() == pytest.approx(3.0)


def test_normalized_cameras_and_scale():
    cond, tgt = _cams()
    n = normalize_cameras(cond, tgt)
    np.testing.assert_allclose(n.tgt_T[0], torch.eye(4), atol=1e-12)
    assert n.cond_T[..., :3, 3].abs().max().item() == pytest.approx(1.0)  # the farthest camera sits on the unit cube
    # rotations are untouched by the scale
    rel = relative_poses(cond, tgt)
    np.testing.assert_allclose(n.cond_T[..., :3, :3], rel[..., :3, :3], atol=1e-12)
    assert n.scale.item() == pytest.approx(rel[..., :3, 3].abs().max().item())


def test_rigid_motion_invariance():
    cond, tgt = _cams()
    M = torch.tensor(random_rigid(0, 50))
    a = normalize_cameras(cond, tgt)
    b = normalize_cameras(M @ cond, M @ tgt)
    np.testing.assert_allclose(b.cond_T, a.cond_T, atol=1e-9)
    np.testing.assert_allclose(b.scale, a.scale, atol=1e-9)


def test_scale_equivariance():
    cond, tgt = _cams()
    s = 7.5
    cond2, tgt2 = cond.clone(), tgt.clone()
    cond2[..., :3, 3] *= s
    tgt2[..., :3, 3] *= s
    a, b = normalize_cameras(cond, tgt), normalize_cameras(cond2, tgt2)
    np.testing.assert_allclose(b.cond_T, a.cond_T, atol=1e-9)
    assert b.scale.item() == pytest.approx(s * a.scale.item())


def test_degenerate_all_cameras_at_target_uses_min_scale():
    _, tgt = _cams()
    n = normalize_cameras(tgt[:, None].float(), tgt.float(), min_scale=0.25)
    assert n.scale.item() == pytest.approx(0.25)
    assert torch.isfinite(n.cond_T).all()
    np.testing.assert_allclose(n.cond_T[0, 0], torch.eye(4), atol=1e-5)
    with pytest.raises(ValueError, match="min_scale"):
        normalize_cameras(tgt[:, None], tgt, min_scale=0.0)


def test_float32_far_from_origin_keeps_precision():
    cond, tgt = _cams()
    far = torch.eye(4, dtype=torch.float64)
    far[:3, 3] = torch.tensor([5e5, -3e5, 100.0])  # UTM-like coordinates
    a = normalize_cameras(cond.float(), tgt.float())
    b = normalize_cameras((far @ cond).float(), (far @ tgt).float())
    np.testing.assert_allclose(b.cond_T, a.cond_T, atol=2e-2)  # float32 input resolution at 5e5 is ~3 cm


def test_log_depth_param_endpoints_and_round_trip():
    assert depth_to_param(torch.tensor(0.1)).item() == pytest.approx(-1.0)
    assert depth_to_param(torch.tensor(200.0)).item() == pytest.approx(1.0)
    mid = math.sqrt(0.1 * 200.0)  # geometric mean maps to 0: log space
    assert depth_to_param(torch.tensor(mid)).item() == pytest.approx(0.0, abs=1e-6)
    d = torch.logspace(-1, math.log10(200), 50, dtype=torch.float64)
    np.testing.assert_allclose(param_to_depth(depth_to_param(d)), d, rtol=1e-9)
    assert depth_to_param(torch.tensor(0.0)).item() == -1.0  # invalid depth clamps instead of -inf
    assert param_to_depth(torch.tensor(3.0)).item() == pytest.approx(200.0)  # out-of-range output clamps


def test_raw_scale_and_scale_features():
    """The network's scale input: [log s, log(s / raw s)]; the second is 0 unless the clamp acted."""
    from mvgd_core.ssn import scale_features

    cond, tgt = _cams()
    cams = normalize_cameras(cond, tgt, min_scale=0.1)
    assert torch.allclose(cams.raw_scale, cams.scale)  # big baselines: no clamp
    f = scale_features(cams.scale, cams.raw_scale)
    assert f.dtype == torch.float32 and f.shape == (1, 2)
    assert f[0, 0].item() == pytest.approx(math.log(cams.scale.item()), rel=1e-6) and f[0, 1].item() == 0.0
    # every camera within 2 cm of the target: clamped to 0.1, and the network is told by how much
    near = tgt[:, None].clone().repeat(1, 2, 1, 1)
    near[:, 0, :3, 3] += torch.tensor([0.02, 0.0, 0.0], dtype=torch.float64)
    c2 = normalize_cameras(near, tgt, min_scale=0.1)
    assert c2.scale.item() == pytest.approx(0.1) and c2.raw_scale.item() == pytest.approx(0.02)
    f2 = scale_features(c2.scale, c2.raw_scale)
    assert f2[0, 1].item() == pytest.approx(math.log(5.0), rel=1e-5)
    # no baseline at all stays finite
    assert torch.isfinite(scale_features(torch.tensor([0.1]), torch.tensor([0.0]))).all()
    # SSN stays float64 up to the normalised quantities when given float64 poses
    assert c2.cond_T.dtype == torch.float64 and c2.raw_scale.dtype == torch.float64
