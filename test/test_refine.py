"""Photometric refinement (mvgd_core/refine.py): it pulls a wrong depth back to the true one on a
textured scene, at the live camera and at a novel view; it leaves textureless images and
unmatched pixels alone; it is exact about frames (world far from the origin, which view is the target)."""
import dataclasses

import numpy as np
import pytest
import torch

from mvgd_core.refine import RefineConfig, refine_batch, refine_live, refine_novel
from test_cost_volume import K, _scene

CFG = RefineConfig()
NO_SPREAD = dataclasses.replace(CFG, propagate_radius=0)


def _abs_rel(d, gt, mask):
    return ((d - gt).abs() / gt)[mask].median().item()


def _inputs(target_is_cond: bool):
    rgb, cK, cT, tK, depth = _scene(target_is_cond)  # images in [-1, 1], target frame = identity
    return (rgb + 1) / 2, cK, cT, tK, torch.eye(4)[None], depth


def _inner(depth):
    m = torch.zeros_like(depth, dtype=torch.bool)
    m[4:-4, 4:-4] = True
    return m


@pytest.mark.parametrize("factor", [1.2, 0.8])
def test_live_camera_depth_off_by_20_percent_comes_back(factor):
    rgb, cK, cT, _, _, gt = _inputs(True)
    out = refine_live(rgb[0, 0], cK[0, 0], cT[0, 0], rgb[0, 1:], cK[0, 1:], cT[0, 1:], gt * factor, CFG)
    inner = _inner(gt)
    assert out.accepted[inner].float().mean() > 0.7
    assert _abs_rel(out.depth, gt, inner) < 0.03  # from 0.2
    # the unmatched pixels took their matched neighbours' correction (mvgd_core.propagation) ...
    rest = inner & ~out.accepted
    assert _abs_rel(out.depth, gt, rest) < 0.1
    # ... and are left as they were with the propagation off
    off = refine_live(rgb[0, 0], cK[0, 0], cT[0, 0], rgb[0, 1:], cK[0, 1:], cT[0, 1:], gt * factor, NO_SPREAD)
    assert torch.equal(off.accepted, out.accepted) and torch.equal(off.depth[out.accepted], out.depth[out.accepted])
    assert torch.equal(off.depth[~off.accepted], (gt * factor)[~off.accepted])


def test_novel_view_depth_off_by_20_percent_comes_back():
    rgb, cK, cT, tK, tT, gt = _inputs(False)
    out = refine_novel(rgb[0], cK[0], cT[0], tK[0], tT[0], gt * 1.2, CFG)
    inner = _inner(gt)
    assert out.accepted[inner].float().mean() > 0.5
    assert _abs_rel(out.depth, gt, inner) < 0.05


@pytest.mark.parametrize("cost_filter", ["guided", "sgm"])
def test_cost_filter_makes_noisy_matches_better(cost_filter):
    """Image noise makes each pixel's own 7x7 window pick a wrong hypothesis now and then; with
    the band's cost aggregated over neighbours (cfg.cost_filter) the ones that take the same
    correction win, so the matched pixels are closer to the truth (and no fewer of them pass the
    checks). Without noise it changes nothing that matters."""
    rgb, cK, cT, _, _, gt = _inputs(True)
    noisy = (rgb + 0.2 * torch.randn(rgb.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    inner = _inner(gt)
    got = {}
    for images, name in ((noisy, "noisy"), (rgb, "clean")):
        for on in (True, False):
            cfg = dataclasses.replace(NO_SPREAD, cost_filter=cost_filter if on else "none")
            out = refine_live(images[0, 0], cK[0, 0], cT[0, 0], images[0, 1:], cK[0, 1:], cT[0, 1:], gt * 1.2, cfg)
            acc = out.accepted & inner
            got[name, on] = (_abs_rel(out.depth, gt, acc), acc.float().mean().item())
    assert got["noisy", True][0] < 0.92 * got["noisy", False][0]  # measured at 11 hypotheses: guided 0.020, sgm 0.020, none 0.023 (7: 0.020, 0.021, 0.029)
    assert got["noisy", True][1] >= got["noisy", False][1]  # 0.57 vs 0.55
    assert abs(got["clean", True][0] - got["clean", False][0]) < 0.002


def test_depth_outside_the_band_is_not_accepted_as_a_match():
    """The true depth lies outside [d / span, d * span]: the minimum sits at the band's edge, so
    (almost) nothing may be replaced: no false precision."""
    rgb, cK, cT, _, _, gt = _inputs(True)
    out = refine_live(rgb[0, 0], cK[0, 0], cT[0, 0], rgb[0, 1:], cK[0, 1:], cT[0, 1:], gt * 3.0, CFG)
    assert out.accepted.float().mean() < 0.05


def test_textureless_image_keeps_the_network_depth():
    _, cK, cT, _, _, gt = _inputs(True)
    flat = torch.full((4, 3) + gt.shape, 0.5)
    out = refine_live(flat[0], cK[0, 0], cT[0, 0], flat[1:], cK[0, 1:], cT[0, 1:], gt * 1.2, CFG)
    assert not out.accepted.any() and torch.equal(out.depth, gt * 1.2)


def test_batch_tells_live_from_novel_and_is_frame_exact():
    """refine_batch finds the target among the views by pose; the same scene moved 1e6 m away
    (float64 poses) gives the same depth; disabled, it returns its input."""
    rgb_c, cK_c, cT_c, tK, tT, gt = _inputs(True)
    rgb_n, cK_n, cT_n, _, _, _ = _inputs(False)
    shift = torch.eye(4, dtype=torch.float64)
    shift[:3, 3] = torch.tensor([1e6, -2e6, 5e5])
    prior = (gt * 1.2)[None]
    got = {}
    for name, (rgb, cK, cT) in {"live": (rgb_c, cK_c, cT_c), "novel": (rgb_n, cK_n, cT_n)}.items():
        near, acc = refine_batch(rgb, cK, cT.double(), tK, tT.double(), prior, CFG)
        far, _ = refine_batch(rgb, cK, shift @ cT.double(), tK, shift @ tT.double(), prior, CFG)
        assert acc.float().mean() > 0.4, name
        assert (far - near).abs().max() < 1e-3, name
        got[name] = near
    expected_live = refine_live(rgb_c[0, 0], cK_c[0, 0], torch.eye(4), rgb_c[0, 1:], cK_c[0, 1:], cT_c[0, 1:], prior[0], CFG).depth
    assert torch.allclose(got["live"][0], expected_live, atol=1e-4)
    assert not torch.allclose(got["live"], got["novel"])
    off, acc = refine_batch(rgb_c, cK_c, cT_c, tK, tT, prior, RefineConfig(enabled=False))
    assert torch.equal(off, prior) and not acc.any()


def test_a_match_only_one_source_supports_is_not_taken():
    """Two sources: one sees the scene, the other sees a different texture (a pose or timing error
    in practice). With min_agree 2 nothing the lone source says may replace the depth; with
    min_agree 1 it may."""
    rgb, cK, cT, _, _, gt = _inputs(True)
    src = rgb[0, 1:3].clone()
    src[1] = src[1].flip(-1)  # the second source no longer fits its pose
    one = refine_live(rgb[0, 0], cK[0, 0], cT[0, 0], src[:1], cK[0, 1:2], cT[0, 1:2], gt * 1.2, CFG)
    both = refine_live(rgb[0, 0], cK[0, 0], cT[0, 0], src, cK[0, 1:3], cT[0, 1:3], gt * 1.2, CFG)
    lone = refine_live(rgb[0, 0], cK[0, 0], cT[0, 0], src, cK[0, 1:3], cT[0, 1:3], gt * 1.2, RefineConfig(min_agree=1))
    assert one.accepted.float().mean() > 0.5  # one source, one vote: min(min_agree, V) = 1
    assert both.accepted.float().mean() < 0.1 < lone.accepted.float().mean()


def test_views_without_parallax_change_nothing():
    """The same camera twice (a robot standing still): every depth matches equally well, so no
    pixel may move (ties must not be broken by noise)."""
    rgb, cK, cT, _, _, gt = _inputs(True)
    same = rgb[0, :1].expand(3, -1, -1, -1)
    out = refine_live(rgb[0, 0], cK[0, 0], cT[0, 0], same, cK[0, :3], cT[0, :1].expand(3, 4, 4), gt * 1.2, CFG)
    assert not out.accepted.any() and torch.equal(out.depth, gt * 1.2)
    nov = refine_novel(same, cK[0, :3], cT[0, :1].expand(3, 4, 4) @ torch.tensor(np.diag([1.0, 1, 1, 1]), dtype=torch.float32),
                       cK[0, 0], cT[0, 1], gt * 1.2, CFG)
    assert not nov.accepted.any()


def test_single_view_is_left_alone():
    rgb, cK, cT, tK, tT, gt = _inputs(True)
    out, acc = refine_batch(rgb[:, :1], cK[:, :1], cT[:, :1], tK, tT, gt[None], CFG)
    assert torch.equal(out, gt[None]) and not acc.any()


@pytest.mark.parametrize("kw", [{"hypotheses": 8}, {"hypotheses": 1}, {"novel_hypotheses": 4}, {"span": 1.0}, {"window": 4}, {"min_zncc": 1.5},
                                {"min_texture": -0.1}, {"min_parallax_px": -1.0}, {"min_agree": 0}, {"propagate_radius": -1},
                                {"propagate_dilation": 0}, {"propagate_sigma_colour": 0.0}, {"propagate_prior": 0.0},
                                {"sgm_p1": -0.1}, {"sgm_p1": 0.6, "sgm_p2": 0.5}, {"cost_filter": "box"},
                                {"filter_radius": 0}, {"filter_eps": 0.0}])
def test_bad_config_is_a_clear_error(kw):
    with pytest.raises(ValueError, match="RefineConfig"):
        RefineConfig(**kw)


def test_predictor_refines_by_default_and_can_be_told_not_to(monkeypatch):
    """The predictor's depth goes through the refinement unless predict(refine=False) or
    RefineConfig(enabled=False): here the "network" says 1.2x the true depth of the textured plane."""

    from mvgd_core.data.types import Frame
    from mvgd_core.inference import MVGDPredictor
    from mvgd_core.model import MVGD, PRESETS

    rgb, cK, cT, _, _, gt = _inputs(True)
    model = MVGD(dataclasses.replace(PRESETS["tiny"], image_size=tuple(gt.shape)))
    frames = [Frame(rgb=(rgb[0, i].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8), K=cK[0, i].double().numpy(),
                    T_wc=cT[0, i].double().numpy()) for i in range(rgb.shape[1])]
    args = (frames, frames[0].K, frames[0].T_wc, tuple(gt.shape))
    preds = {on: MVGDPredictor(model, device="cpu", steps=1, refine=RefineConfig(enabled=on)) for on in (True, False)}
    for p in preds.values():
        monkeypatch.setattr(p, "to_depth", lambda x0, scale: (gt * 1.2)[None].expand(x0.shape[0], -1, -1))
    wrong = (gt * 1.2).numpy()
    assert np.allclose(preds[True].predict(*args, refine=False).depth, wrong)
    assert np.allclose(preds[False].predict(*args).depth, wrong)
    out = preds[True].predict(*args)
    refined = torch.from_numpy(out.depth)
    assert _abs_rel(refined, gt, _inner(gt)) < 0.03
    assert out.refined_share > 0.5 and preds[True].predict(*args, refine=False).refined_share is None
    # the "network" is 1.2x too far everywhere: the refinement moves the whole map by log(1/1.2)
    assert out.refine_rescale == pytest.approx(-np.log(1.2), abs=0.02)
    assert preds[True].predict(*args, refine=False).refine_rescale is None
    assert np.allclose(preds[False].predict(*args, refine=True).depth, refined.numpy())


def test_frame_rescale_is_the_median_log_shift_of_replaced_pixels():
    from mvgd_core.refine import frame_rescale

    net = torch.full((20, 20), 2.0)
    refined = net.clone()
    refined[:10] = 2.2  # half the map moved by +10 %, the other half replaced but unmoved
    accepted = torch.zeros_like(net, dtype=torch.bool)
    accepted[:15] = True  # 200 moved, 100 unmoved
    assert frame_rescale(net, refined, accepted) == pytest.approx(np.log(1.1), abs=1e-5)
    assert frame_rescale(net, refined, accepted, min_pixels=301) is None  # too few replaced pixels to say


def test_source_selection_keeps_views_that_see_the_target():
    """With more sources than max_sources, the ones that see the target are used: three cameras
    looking the other way are never chosen, and the refinement works as with the good ones alone."""
    from mvgd_core.refine import select_sources

    rgb, cK, cT, _, _, gt = _inputs(True)
    away = cT[0, 1:].clone()
    away[:, :3, :3] = away[:, :3, :3] @ torch.diag(torch.tensor([-1.0, 1.0, -1.0]))  # turned 180 degrees about y
    src_T = torch.cat([away, cT[0, 1:]])  # bad ones first
    src_rgb = torch.cat([rgb[0, 1:], rgb[0, 1:]])
    src_K = cK[0, :1].expand(6, 3, 3)
    cfg = dataclasses.replace(CFG, max_sources=3)  # as many as there are good ones
    picked = select_sources(cK[0, 0], cT[0, 0], src_K, src_T, gt * 1.2, tuple(gt.shape), cfg, cfg.source_shift_px)
    assert len(picked) == 3 and min(picked) >= 3
    out = refine_live(rgb[0, 0], cK[0, 0], cT[0, 0], src_rgb, src_K, src_T, gt * 1.2, cfg)
    assert _abs_rel(out.depth, gt, _inner(gt)) < 0.03


def test_novel_views_use_at_most_max_novel_sources(monkeypatch):
    """A novel view compares pairs of sources, so it has its own, smaller source budget."""
    from mvgd_core import refine as R

    seen = []
    real = R.select_sources
    monkeypatch.setattr(R, "select_sources", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    rgb, cK, cT, tK, tT, gt = _inputs(False)
    V = cK.shape[1]
    cfg = dataclasses.replace(CFG, max_sources=V, max_novel_sources=2)
    R.refine_novel(rgb[0], cK[0], cT[0], tK[0], tT[0], gt * 1.2, cfg)
    assert len(seen[-1]) == 2 < V
    with pytest.raises(ValueError, match="max_novel_sources"):
        RefineConfig(max_novel_sources=1)


def test_refine_settings_from_text():
    """The command-line form the tuning script and the cost benchmark share: fields typed, the rest
    kept from the base, unknown or malformed fields refused with the valid names."""
    from mvgd_core.config import settings_from_text

    cfg = settings_from_text(RefineConfig, "max_sources=3,window=5,min_zncc=0.6")
    assert (cfg.max_sources, cfg.window, cfg.min_zncc, cfg.span) == (3, 5, 0.6, CFG.span)
    assert isinstance(cfg.max_sources, int)
    for bad in ("windw=5", "window", "enabled=0"):
        with pytest.raises(ValueError, match="max_sources"):
            settings_from_text(RefineConfig, bad)
    with pytest.raises(ValueError, match="odd"):
        settings_from_text(RefineConfig, "window=4")
    assert settings_from_text(RefineConfig, "cost_filter=sgm,sgm_p1=0.1").cost_filter == "sgm"
    with pytest.raises(ValueError, match="cost_filter must be one of"):
        settings_from_text(RefineConfig, "cost_filter=box")

    @dataclasses.dataclass(frozen=True)
    class Flags:
        on: bool = False

    assert settings_from_text(Flags, "on=true").on is True and settings_from_text(Flags, "on=False").on is False
    with pytest.raises(ValueError, match="true or false"):
        settings_from_text(Flags, "on=1")


@pytest.mark.parametrize("second", [False, True])
def test_tuning_figure_shows_the_second_variant_beside_the_first(tmp_path, second):
    """training/tune_refine.py --figure: with two variants each row adds the second's depth and
    error (the stop-15 figure puts the refinement without and with spreading side by side)."""
    import cv2
    from types import SimpleNamespace
    from script_loader import load_script

    tr = load_script("training/tune_refine.py")
    gt = 1.0 + torch.rand(24, 32)
    s = SimpleNamespace(tgt_depth=gt, tgt_rgb=torch.rand(3, 24, 32), cond_rgb=None)
    acc = torch.rand(24, 32) > 0.5
    pick = (0.5, s, gt * 1.2, torch.where(acc, gt, gt * 1.2), acc, ("spread", gt * 1.05) if second else None)
    png = tr.save_figure(tmp_path / "f.png", [pick])
    img = cv2.imread(str(png))
    cell_w = 160  # legible_cell: 32 px maps shown at 5x
    assert img.shape[1] // cell_w == (9 if second else 7)


def test_settings_arg_is_an_argparse_type_with_the_defaults_for_empty_text(capsys):
    import argparse

    from mvgd_core.config import settings_arg

    ap = argparse.ArgumentParser(prog="x")
    ap.add_argument("--refine-settings", type=settings_arg(RefineConfig), default=RefineConfig())
    assert ap.parse_args([]).refine_settings == RefineConfig()
    assert ap.parse_args(["--refine-settings", ""]).refine_settings == RefineConfig()
    assert ap.parse_args(["--refine-settings", "window=5"]).refine_settings.window == 5
    with pytest.raises(SystemExit):
        ap.parse_args(["--refine-settings", "window=4"])
    assert "argument --refine-settings: RefineConfig.window must be odd" in capsys.readouterr().err
