"""Observability of a target's depth from its conditioning views (mvgd_core/observability.py)."""
import math

import numpy as np
import pytest
import torch

from mvgd_core.cameras import make_intrinsics, make_pose
from mvgd_core.observability import (MIN_DISPARITY_PX, observability, observability_map, regime)

H, W = 48, 64
K = make_intrinsics(60.0, 60.0, 31.5, 23.5).double()


def _rot_y(deg):
    a = math.radians(deg)
    return np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])


def _pose(R=np.eye(3), t=(0, 0, 0)):
    return torch.as_tensor(make_pose(R, np.asarray(t, dtype=float)))


def _obs(cond_poses, depth=2.0, model_hw=(H, W)):
    d = torch.full((H, W), depth, dtype=torch.float64)
    return observability(d, K, _pose(), K.expand(len(cond_poses), 3, 3), torch.stack(cond_poses), model_hw=model_hw)


def test_same_pose_and_pure_rotation_are_unobservable():
    assert _obs([_pose()]).frac == 0.0
    o = _obs([_pose(_rot_y(10)), _pose(_rot_y(-15))])
    assert o.frac == 0.0 and o.regime == "none"


def test_sideways_baseline_is_observable_and_disparity_matches_stereo():
    b, d = 0.2, 2.0
    o = _obs([_pose(t=(b, 0, 0))], depth=d)
    assert o.regime == "observable" and o.frac > 0.9
    # Stereo disparity f b / z at z = d and z = 1.25 d: the difference is what the map measures.
    expected = 60.0 * b / d - 60.0 * b / (1.25 * d)
    assert o.median_disparity_px == pytest.approx(expected, rel=1e-3)


def test_tiny_baseline_is_none_and_resolution_matters():
    o = _obs([_pose(t=(0.01, 0, 0))], depth=4.0)  # 60 * 0.01 / 4 * 0.2 = 0.03 px
    assert o.regime == "none"
    hi = _obs([_pose(t=(0.1, 0, 0))], depth=4.0, model_hw=(H * 4, W * 4))
    lo = _obs([_pose(t=(0.1, 0, 0))], depth=4.0, model_hw=(H // 2, W // 2))
    assert hi.median_disparity_px == pytest.approx(8 * lo.median_disparity_px, rel=1e-3)
    assert hi.frac > lo.frac


def test_invalid_and_unseen_pixels():
    d = torch.full((H, W), 2.0, dtype=torch.float64)
    d[:, : W // 2] = 0  # no depth: not counted
    obs, disp, valid = observability_map(d, K, _pose(), K[None], _pose(t=(0.3, 0, 0))[None], model_hw=None)
    assert valid.sum() == H * W // 2 and not obs[:, : W // 2].any()
    # A view behind the target sees nothing.
    behind = _pose(_rot_y(180), (0, 0, -1))
    obs_b, disp_b, _ = observability_map(d, K, _pose(), K[None], behind[None], model_hw=None)
    assert not obs_b.any() and float(disp_b.max()) == 0.0
    assert observability(torch.zeros(H, W), K, _pose(), K[None], _pose(t=(1, 0, 0))[None]).regime == "none"


def test_regime_thresholds():
    assert [regime(x) for x in (1.0, 0.5, 0.49, 0.1, 0.09, 0.0, float("nan"))] == [
        "observable", "observable", "weak", "weak", "none", "none", "none"]
    assert MIN_DISPARITY_PX == 1.0


def test_matchable_needs_a_view_that_sees_the_point_unhidden_with_parallax():
    from mvgd_core.observability import matchable_map

    d = torch.full((H, W), 2.0, dtype=torch.float64)
    side = _pose(t=(0.3, 0, 0))  # 9 px of stereo disparity at 2 m: every pixel it sees moves
    wall = torch.full((1, H, W), 2.0)  # what the view sees: the same plane, at its own depth
    m = matchable_map(d, K, _pose(), wall, K[None], side[None], model_hw=None)
    assert m[:, 10:].all()  # a view 0.3 m to the right sees the point 9 px further left ...
    assert not m[:, :8].any()  # ... so the left edge falls out of it
    # The same view with something 1 m away in front of the plane everywhere: nothing is seen.
    assert not matchable_map(d, K, _pose(), torch.full((1, H, W), 1.0), K[None], side[None], model_hw=None).any()
    # No depth known for the view (0) counts as unseen; a view at the target's pose has no parallax.
    assert not matchable_map(d, K, _pose(), torch.zeros(1, H, W), K[None], side[None], model_hw=None).any()
    assert not matchable_map(d, K, _pose(), wall, K[None], _pose()[None], model_hw=None).any()
    # The target's own invalid pixels are never matchable; two views: either one suffices.
    d[:5] = 0
    both = matchable_map(d, K, _pose(), wall.expand(2, H, W), K.expand(2, 3, 3), torch.stack([side, _pose(t=(-0.3, 0, 0))]), model_hw=None)
    assert not both[:5].any() and both[5:].all()
