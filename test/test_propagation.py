"""Spreading the refinement's corrections (mvgd_core/propagation.py): matched pixels lend their
correction to unmatched neighbours of the same colour, not across colour edges, not beyond the
reach, not from invalid pixels; the network's shape is kept; radius 0 changes nothing."""
import pytest
import torch

from mvgd_core.propagation import propagate_correction

H, W = 48, 64
SETTINGS = dict(radius=5, dilation=4, sigma_colour=0.1, prior=0.3)


def _slanted_floor():
    """True depth (H, W): a plane receding with the image row, 1.5-6 m (a network must keep its slope)."""
    rows = torch.linspace(0, 1, H)[:, None].expand(H, W)
    return 1.5 + 4.5 * rows


def _sparse(every: int = 6):
    m = torch.zeros(H, W, dtype=torch.bool)
    m[::every, ::every] = True
    return m


def test_a_scale_error_is_corrected_between_sparse_matches_and_the_shape_kept():
    gt = _slanted_floor()
    net = gt * 1.2
    acc = _sparse()
    refined = torch.where(acc, gt, net)
    out = propagate_correction(net, refined, acc, torch.full((3, H, W), 0.5), **{**SETTINGS, "prior": 0.01})
    assert torch.equal(out[acc], gt[acc])  # matched pixels keep the refined depth exactly
    rel = ((out - gt).abs() / gt)[~acc]
    assert rel.median() < 0.02 and rel.max() < 0.06  # from 0.2 everywhere


def test_radius_zero_is_the_switch_off():
    gt = _slanted_floor()
    net, acc = gt * 1.2, _sparse()
    refined = torch.where(acc, gt, net)
    out = propagate_correction(net, refined, acc, None, **{**SETTINGS, "radius": 0})
    assert torch.equal(out, refined)


def test_nothing_matched_changes_nothing():
    net = _slanted_floor()
    acc = torch.zeros(H, W, dtype=torch.bool)
    assert torch.equal(propagate_correction(net, net.clone(), acc, None, **SETTINGS), net)


def test_a_colour_edge_stops_the_correction():
    """Left half red with matches saying "20 % nearer", right half blue with none: with the image
    as guide the blue side keeps the network's depth; without a guide (a novel view) it is pulled."""
    net = torch.full((H, W), 3.0)
    acc = torch.zeros(H, W, dtype=torch.bool)
    acc[:, : W // 2 : 3] = True
    refined = torch.where(acc, net / 1.2, net)
    img = torch.zeros(3, H, W)
    img[0, :, : W // 2] = 1.0
    img[2, :, W // 2 :] = 1.0
    guided = propagate_correction(net, refined, acc, img, **SETTINGS)
    blind = propagate_correction(net, refined, acc, None, **SETTINGS)
    right = slice(W // 2, W // 2 + 4)  # the first columns past the edge
    assert (guided[:, right] / net[:, right] - 1).abs().max() < 0.005
    assert (blind[:, right] / net[:, right]).max() < 0.95
    assert (guided[:, 1 : W // 2 - 1][~acc[:, 1 : W // 2 - 1]] / net[0, 0]).sub(1 / 1.2).abs().max() < 0.02  # same side: corrected


def test_the_reach_is_bounded():
    """One matched patch in a corner: pixels farther than radius * dilation keep the network's depth."""
    net = torch.full((H, W), 2.0)
    acc = torch.zeros(H, W, dtype=torch.bool)
    acc[:3, :3] = True
    refined = torch.where(acc, net * 0.8, net)
    out = propagate_correction(net, refined, acc, None, **SETTINGS)
    reach = SETTINGS["radius"] * SETTINGS["dilation"] + SETTINGS["dilation"] // 2  # the taps and their cells
    assert torch.equal(out[reach + 3 :, :], net[reach + 3 :, :]) and torch.equal(out[:, reach + 3 :], net[:, reach + 3 :])
    assert out[4, 4] < 2.0  # near the patch: pulled


def test_invalid_network_depth_stays_invalid_and_lends_nothing():
    gt = _slanted_floor()
    net, acc = gt * 1.2, _sparse()
    net[10:20, 10:20] = 0.0
    net[30, 30] = float("nan")
    refined = torch.where(acc & (net > 0), gt, net)
    out = propagate_correction(net, refined, acc, None, **SETTINGS)
    assert (out[10:20, 10:20] == 0).all() and torch.isnan(out[30, 30])
    assert torch.isfinite(out[(net > 0)]).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_kept(dtype):
    gt = _slanted_floor().to(dtype)
    acc = _sparse()
    out = propagate_correction(gt * 1.1, torch.where(acc, gt, gt * 1.1), acc, torch.rand(3, H, W), **SETTINGS)
    assert out.dtype == dtype and out.shape == (H, W)
