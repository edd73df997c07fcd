"""Metrics against hand-computed values; masks; torch and numpy inputs."""
import math

import numpy as np
import pytest
import torch

from mvgd_core.metrics import abs_rel, delta, depth_metrics, log_rmse, psnr, rmse, sq_rel, ssim


def test_psnr_hand_computed_and_masked():
    gt = np.zeros((4, 4, 3))
    pred = gt + 0.1  # MSE 0.01 -> 20 dB
    assert psnr(pred, gt) == pytest.approx(20.0)
    assert psnr(torch.tensor(pred), torch.tensor(gt)) == pytest.approx(20.0)
    assert psnr(gt, gt) == float("inf")
    pred2 = pred.copy()
    pred2[0] = 1.0  # a bad row, masked out
    mask = np.ones((4, 4), bool)
    mask[0] = False
    assert psnr(pred2, gt, mask=mask) == pytest.approx(20.0)
    assert psnr(pred * 255, gt, data_range=255.0) == pytest.approx(20.0)


def test_ssim_identity_and_degradation():
    rng = np.random.default_rng(0)
    img = rng.random((3, 32, 32))
    assert ssim(img, img) == pytest.approx(1.0)
    noisy = np.clip(img + rng.normal(0, 0.2, img.shape), 0, 1)
    s = ssim(noisy, img)
    assert 0 < s < 0.9
    assert ssim(torch.tensor(img).permute(1, 2, 0), torch.tensor(noisy).permute(1, 2, 0)) == pytest.approx(s)  # HWC == CHW


def test_ssim_constant_images_formula():
    # constant images: variances 0, SSIM = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1)
    a, b = np.full((16, 16), 0.5), np.full((16, 16), 0.25)
    c1 = 0.01 ** 2
    assert ssim(a, b) == pytest.approx((2 * 0.5 * 0.25 + c1) / (0.25 + 0.0625 + c1))


def test_depth_metrics_hand_computed():
    gt = np.array([1.0, 2.0, 4.0, 0.0, np.nan])  # last two invalid
    pred = np.array([1.0, 3.0, 2.0, 5.0, 1.0])
    m = depth_metrics(pred, gt)
    assert m["abs_rel"] == pytest.approx((0 + 0.5 + 0.5) / 3)
    assert m["sq_rel"] == pytest.approx((0 + 1 / 2 + 4 / 4) / 3)
    assert m["rmse"] == pytest.approx(math.sqrt((0 + 1 + 4) / 3))
    assert m["log_rmse"] == pytest.approx(math.sqrt((0 + math.log(1.5) ** 2 + math.log(2) ** 2) / 3))
    assert m["delta1"] == pytest.approx(1 / 3)  # ratios 1, 1.5, 2
    assert m["delta2"] == pytest.approx(2 / 3)  # 1.25^2 = 1.5625 > 1.5
    assert m["delta3"] == pytest.approx(2 / 3)  # 1.25^3 = 1.953 < 2
    assert m["valid_fraction"] == pytest.approx(3 / 5)
    assert abs_rel(pred, gt) == m["abs_rel"] and sq_rel(pred, gt) == m["sq_rel"]
    assert rmse(pred, gt) == m["rmse"] and log_rmse(pred, gt) == m["log_rmse"]
    assert delta(pred, gt, 3) == m["delta3"]
    assert all(isinstance(v, float) for v in m.values())


def test_depth_metrics_mask_and_torch():
    gt = torch.tensor([[1.0, 2.0], [4.0, 8.0]])
    pred = gt.clone()
    pred[1, 1] = 100.0
    mask = torch.tensor([[True, True], [True, False]])
    m = depth_metrics(pred, gt, mask=mask)
    assert m["abs_rel"] == 0.0 and m["delta1"] == 1.0
    assert depth_metrics(pred, gt)["abs_rel"] > 0


def test_depth_metrics_no_valid_pixels_and_bad_shapes():
    m = depth_metrics(np.ones(3), np.zeros(3))
    assert math.isnan(m["abs_rel"]) and m["valid_fraction"] == 0.0
    with pytest.raises(ValueError, match="shape"):
        depth_metrics(np.ones(3), np.ones(4))
    with pytest.raises(ValueError):
        delta(np.ones(3), np.ones(3), k=4)
    # zero prediction does not produce inf
    assert math.isfinite(depth_metrics(np.zeros(2), np.ones(2))["log_rmse"])


def test_pixel_median_abs_rel_and_scores_with_coverage():
    from mvgd_core.metrics import depth_scores

    gt = np.array([1.0, 1.0, 1.0, 1.0, 2.0, 0.0])
    pred = np.array([1.0, 1.1, 1.2, 9.0, np.nan, 5.0])  # one outlier; one pixel without a prediction
    m = depth_metrics(pred[:4], gt[:4])
    assert m["abs_rel"] == pytest.approx((0 + 0.1 + 0.2 + 8) / 4)
    assert m["abs_rel_px_median"] == pytest.approx(0.1)  # lower median: robust to the outlier
    s = depth_scores(pred, gt)
    assert s["coverage"] == pytest.approx(4 / 5)  # GT-valid pixels with a prediction
    assert s["abs_rel"] == pytest.approx(m["abs_rel"]) and s["delta1"] == pytest.approx(3 / 4)


def test_summarize_and_aggregate_by_regime():
    from mvgd_core.metrics import ALL, aggregate_by_regime, summarize

    st = summarize([1.0, 2.0, 9.0, float("nan"), None])
    assert {k: st[k] for k in ("mean", "median", "n")} == {"mean": 4.0, "median": 2.0, "n": 3}
    assert 1.0 <= st["median_ci95"][0] <= 2.0 <= st["median_ci95"][1] <= 9.0
    assert summarize([])["n"] == 0 and math.isnan(summarize([])["median"])
    rows = [{"regime": "observable", "metrics": {"mvgd": {"abs_rel": 0.1}, "mvs": {"abs_rel": 0.05}}},
            {"regime": "observable", "metrics": {"mvgd": {"abs_rel": 0.3}}},
            {"regime": "none", "metrics": {"mvgd": {"abs_rel": 2.0}, "mvs": {"abs_rel": 1.0}}}]
    agg = aggregate_by_regime(rows, regimes=("observable", "weak", "none"))
    assert set(agg) == {ALL, "observable", "weak", "none"}
    obs = agg["observable"]["mvgd"]["abs_rel"]
    assert (obs["mean"], obs["median"], obs["n"]) == (pytest.approx(0.2), pytest.approx(0.2), 2)
    assert agg[ALL]["mvgd"]["abs_rel"]["median"] == pytest.approx(0.3) and agg[ALL]["mvgd"]["n"] == 3
    assert agg["observable"]["mvs"]["n"] == 1 and agg["none"]["mvs"]["abs_rel"]["mean"] == 1.0
    assert agg["weak"]["mvgd"]["n"] == 0 and math.isnan(agg["weak"]["mvgd"]["abs_rel"]["mean"])  # empty regime kept


def test_median_interval_covers_the_median_and_narrows_with_more_samples():
    """The 95 % bootstrap interval of a median: around it, reproducible, narrower for 16x the
    samples of the same distribution, a point for identical values."""
    from mvgd_core.metrics import median_ci95

    rng = np.random.default_rng(3)
    small, big = rng.lognormal(-1.8, 0.5, 20), rng.lognormal(-1.8, 0.5, 320)
    lo, hi = median_ci95(small)
    assert lo < np.median(small) < hi and median_ci95(small) == [lo, hi]
    lo4, hi4 = median_ci95(big)
    assert hi4 - lo4 < 0.6 * (hi - lo)  # expected ~0.25 (1 / sqrt(16))
    assert median_ci95(np.full(10, 0.2)) == [0.2, 0.2] and median_ci95(np.array([0.5])) == [0.5, 0.5]


def test_constant_references():
    from mvgd_core.metrics import CONST_GT, CONST_TRAIN, constant_references

    gt = torch.tensor([[1.0, 2.0], [4.0, 0.0]])
    refs = constant_references(gt, 3.0)
    assert torch.equal(refs[CONST_GT], torch.full((2, 2), 2.0))  # median of the valid pixels
    assert torch.equal(refs[CONST_TRAIN], torch.full((2, 2), 3.0))
    assert set(constant_references(gt, None)) == {CONST_GT}
    assert constant_references(torch.zeros(2, 2), 3.0) == {}
    with pytest.raises(ValueError, match="train_median"):
        constant_references(gt, float("nan"))
