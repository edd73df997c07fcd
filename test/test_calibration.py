"""Confidence calibration: PAV, the monotone map, ECE, checkpoint storage, the predictor applying it, the CLI."""
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mvgd_core.calibration import (ConfidenceCalibration, delta1_correct, expected_calibration_error, match_confidence,
                                   pool_adjacent_violators, reliability)
from mvgd_core.checkpoint import CALIBRATION_KEY, CheckpointError, calibration_from_checkpoint, load_checkpoint, make_state, save_checkpoint
from mvgd_core.data.types import collate_samples
from mvgd_core.diffusion import DiffusionConfig
from mvgd_core.inference import MVGDPredictor
from tiny_models import tiny_matching_model

ROOT = Path(__file__).resolve().parents[1]


def _miscalibrated(rng, n):
    """Raw scores uniform in [0, 1], true inlier probability raw**3 (overconfident), plus an
    out-of-range flag on 30 % of pixels where the probability is 0.1 whatever the score."""
    raw = rng.uniform(0, 1, n)
    edge = rng.uniform(size=n) < 0.3
    correct = rng.uniform(size=n) < np.where(edge, 0.1, raw**3)
    return raw, correct, edge


# ---------------------------------------------------------------- PAV and the map


def test_pav_known_cases():
    np.testing.assert_allclose(pool_adjacent_violators([1, 3, 2, 4, 3.5, 5]), [1, 2.5, 2.5, 3.75, 3.75, 5])
    np.testing.assert_allclose(pool_adjacent_violators([3, 1], [1, 3]), [1.5, 1.5])  # weighted mean of the pooled block
    np.testing.assert_allclose(pool_adjacent_violators([4, 3, 2, 1]), [2.5] * 4)
    np.testing.assert_allclose(pool_adjacent_violators([0, 1, 2]), [0, 1, 2])  # already monotone: unchanged
    with pytest.raises(ValueError):
        pool_adjacent_violators([1, 2], [1, 0])


def test_fit_is_monotone_small_and_keeps_shape_type_nan(rng):
    raw, correct, edge = _miscalibrated(rng, 50_000)
    raw, correct = raw[~edge], correct[~edge]
    cal = ConfidenceCalibration.fit(raw, correct, bins=32)
    assert 2 <= len(cal.x) <= 32 and cal.n_fit == raw.size and cal.edge_x == ()
    grid = np.linspace(-0.5, 1.5, 401)
    out = cal.apply(grid)
    assert (np.diff(out) >= 0).all() and out.min() >= 0 and out.max() <= 1
    assert out[0] < 0.05 and out[-1] > 0.8  # learned raw**3, not the identity
    img = np.array([[0.5, np.nan], [0.9, 0.1]], np.float32)
    a = cal.apply(img)
    assert a.shape == img.shape and a.dtype == np.float32 and np.isnan(a[0, 1]) and np.isfinite(a[[0, 1, 1], [0, 0, 1]]).all()
    t = cal.apply(torch.from_numpy(img))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    np.testing.assert_allclose(t.numpy(), a, atol=1e-6, equal_nan=True)


def test_calibrated_ece_lower_than_raw_on_held_out_synthetic(rng):
    raw, correct, edge = _miscalibrated(rng, 100_000)
    cal = ConfidenceCalibration.fit(raw, correct, edge, bins=64)
    raw2, correct2, edge2 = _miscalibrated(np.random.default_rng(1), 100_000)  # fresh draw
    ece_raw = expected_calibration_error(raw2, correct2)
    ece_cal = expected_calibration_error(cal.apply(raw2, edge2), correct2)
    assert ece_raw > 0.15 and ece_cal < 0.02
    # the edge table: flagged pixels get ~0.1 whatever their score; without flags the main table is used
    assert len(cal.edge_x) >= 1
    np.testing.assert_allclose(cal.apply(np.array([0.95]), np.array([True])), [0.1], atol=0.03)
    assert cal.apply(np.array([0.95]))[0] > 0.7


def test_reliability_counts_and_perfect_calibration(rng):
    p = rng.uniform(0, 1, 200_000)
    c = rng.uniform(size=p.size) < p
    r = reliability(p, c, bins=5)
    assert sum(r["count"]) == p.size and len(r["edges"]) == 6
    np.testing.assert_allclose(r["observed"], r["mean_pred"], atol=0.01)
    assert expected_calibration_error(p, c, bins=5) < 0.01
    assert np.isnan(reliability(np.array([0.95]), np.array([True]), bins=5)["mean_pred"][0])  # empty bin: NaN


def test_delta1_correct():
    ok, valid = delta1_correct(torch.tensor([1.0, 1.3, 0.81, 2.0, 1.0]), torch.tensor([1.0, 1.0, 1.0, 0.0, float("nan")]))
    assert ok.tolist() == [True, False, True, False, False] and valid.tolist() == [True, True, True, False, False]


# ---------------------------------------------------------------- tables and checkpoints


@pytest.mark.parametrize("bad, match", [
    ({"x": [0.2, 0.1], "y": [0.1, 0.2]}, "strictly increasing"),
    ({"x": [0.1, 0.2], "y": [0.5, 0.4]}, "non-decreasing"),
    ({"x": [0.1, 0.2, 0.3], "y": [0.1, 0.2]}, "equal length"),
    ({"x": [0.1, 0.2], "y": [0.1, 1.2]}, r"\[0, 1\]"),
    ({"x": [], "y": []}, "empty"),
    ({"x": "0.1", "y": [0.1]}, "list of numbers"),
    ({"edge_x": [0.1], "edge_y": []}, "edge table"),
    ({"kind": "platt"}, "kind"),
])
def test_malformed_table_is_a_clear_value_error(bad, match):
    good = ConfidenceCalibration((0.1, 0.5), (0.2, 0.7)).to_dict()
    with pytest.raises(ValueError, match=match):
        ConfidenceCalibration.from_dict({**good, **bad})
    with pytest.raises(CheckpointError, match=CALIBRATION_KEY):
        calibration_from_checkpoint({CALIBRATION_KEY: {**good, **bad}})


@pytest.fixture(scope="module")
def ckpt_paths(tmp_path_factory):
    """(old checkpoint without a table, the same model with one, its calibration)."""
    d = tmp_path_factory.mktemp("calib")
    state = make_state(tiny_matching_model(), DiffusionConfig(match_weight=1.0), step=3)
    old, new = d / "old.pt", d / "new.pt"
    save_checkpoint(old, state)
    cal = ConfidenceCalibration((0.0, 1.0), (0.2, 0.9), (0.0, 1.0), (0.05, 0.05), n_fit=10, source="test")
    save_checkpoint(new, {**state, CALIBRATION_KEY: cal.to_dict()})
    return old, new, cal


def test_checkpoint_round_trip_and_old_checkpoint(ckpt_paths):
    old, new, cal = ckpt_paths
    assert calibration_from_checkpoint(load_checkpoint(new)) == cal
    assert calibration_from_checkpoint(load_checkpoint(old)) is None
    assert MVGDPredictor.from_checkpoint(new, device="cpu").confidence_calibrated
    assert not MVGDPredictor.from_checkpoint(old, device="cpu").confidence_calibrated


def _batch(predictor):
    from mvgd_core.data.sampler import DataConfig
    from mvgd_core.model_eval import held_out_samples

    return collate_samples(held_out_samples(DataConfig(image_hw=predictor.image_size), 2, 6_000_000, 3, "cond"))


def test_predictor_applies_the_table_on_both_paths(ckpt_paths):
    from mvgd_core.data.types import Frame

    old, new, cal = ckpt_paths
    raw_p, cal_p = MVGDPredictor.from_checkpoint(old, device="cpu", steps=1), MVGDPredictor.from_checkpoint(new, device="cpu", steps=1)
    b = _batch(raw_p)
    _, raw = raw_p.predict_batch(b, "depth", steps=1, return_confidence=True)
    _, got = cal_p.predict_batch(b, "depth", steps=1, return_confidence=True)
    # main table 0.2 + 0.7 raw; edge table 0.05 where the matching mode is the first / last hypothesis
    assert got.shape == raw.shape and not torch.allclose(got, raw)
    main = (got - (0.2 + 0.7 * raw)).abs() < 1e-5
    edge = (got - 0.05).abs() < 1e-6
    assert (main | edge).all() and main.any()
    # the single-target path (the node's): calibrated, flagged, resized like the raw one
    s = b.cond_rgb[0]
    frames = [Frame(rgb=(s[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8), K=b.cond_K[0, i].numpy(), T_wc=b.cond_T_wc[0, i].numpy(),
                    frame_id=str(i)) for i in range(s.shape[0])]
    pr = raw_p.predict(frames, b.tgt_K[0].numpy(), b.tgt_T_wc[0].numpy(), (16, 32))
    pc = cal_p.predict(frames, b.tgt_K[0].numpy(), b.tgt_T_wc[0].numpy(), (16, 32))
    assert pc.confidence_calibrated and not pr.confidence_calibrated
    ok = (np.abs(pc.confidence - (0.2 + 0.7 * pr.confidence)) < 1e-5) | (np.abs(pc.confidence - 0.05) < 1e-6)
    assert ok.all()


def test_match_confidence_flags_edge_modes():
    prob = torch.zeros(1, 4, 1, 3)
    prob[0, [0, 2, 3], 0, [0, 1, 2]] = 1.0  # modes: first, interior, last hypothesis
    raw, edge = match_confidence(SimpleNamespace(prob=prob, confidence=torch.tensor([[[[0.9, 0.5, 0.8]]]])), (2, 3))
    assert raw.shape == edge.shape == (1, 2, 3) and edge.dtype == torch.bool
    assert edge[0, 0].tolist() == [True, False, True]
    np.testing.assert_allclose(raw[0, 0].numpy(), [0.9, 0.5, 0.8], atol=1e-6)


# ---------------------------------------------------------------- the one command


def test_calibrate_confidence_cli_end_to_end(ckpt_paths, tmp_path):
    sys.path.insert(0, str(ROOT / "training"))
    import calibrate_confidence

    old, _, _ = ckpt_paths
    out = tmp_path / "cal.pt"
    args = ["--model", str(old), "--write", str(out), "--out", str(tmp_path / "r.json"), "--figure", str(tmp_path / "f.png"),
            "--fit-num", "4", "--eval-num", "2", "--batch", "4", "--hololens", "", "--tabletop", ""]
    assert calibrate_confidence.main(args) == 0
    assert MVGDPredictor.from_checkpoint(out, device="cpu").confidence_calibrated
    assert calibration_from_checkpoint(load_checkpoint(old)) is None  # the input is untouched
    rep = json.loads((tmp_path / "r.json").read_text())
    m = rep["eval"]["procedural"]["metrics"]["all"]
    assert m["targets"] == 2 and 0 <= m["ece_calibrated"] <= 1 and len(m["sparsification_raw"]["pooled"]["abs_rel"]) == 4
    assert (tmp_path / "f.png").stat().st_size > 1000
    assert any("hololens" in n for n in rep["notes"])  # skipped sets are said, not silently missing
    # OUT == IN on an already calibrated file: written in place, refitted from the raw score (same table)
    args[args.index("--model") + 1] = str(out)
    assert calibrate_confidence.main(args) == 0
    assert calibration_from_checkpoint(load_checkpoint(out)) == ConfidenceCalibration.from_dict(rep["calibration"])


def test_refined_pixels_get_their_own_table():
    """Pixels the photometric refinement replaced are right more often than their raw score says:
    fitted separately, they get a higher probability at the same score; the table survives the
    checkpoint round trip, and an old table (no refined keys) still loads."""
    rng = np.random.default_rng(0)
    raw = rng.uniform(0, 1, 40000)
    refined = rng.uniform(0, 1, raw.size) < 0.3
    p_true = np.where(refined, 0.5 + 0.5 * raw, 0.5 * raw)
    correct = rng.uniform(0, 1, raw.size) < p_true
    cal = ConfidenceCalibration.fit(raw, correct, refined=refined, bins=16)
    assert len(cal.refined_x) > 1
    x = np.array([0.2, 0.5, 0.8])
    on, off = cal.apply(x, refined=np.ones(3, bool)), cal.apply(x, refined=np.zeros(3, bool))
    assert np.allclose(on, 0.5 + 0.5 * x, atol=0.06) and np.allclose(off, 0.5 * x, atol=0.06)
    assert ConfidenceCalibration.from_dict(cal.to_dict()) == cal
    old = {k: v for k, v in cal.to_dict().items() if not k.startswith("refined")}
    assert ConfidenceCalibration.from_dict(old).refined_x == ()
    single = ConfidenceCalibration.fit(raw, correct, bins=16)  # without the mask: one table, in between
    assert (single.apply(x) > off).all() and (single.apply(x) < on).all()


def test_predictor_gives_refined_pixels_the_refined_table(ckpt_paths, monkeypatch):
    """Where the refinement replaced the depth the published confidence comes from the refined
    table, elsewhere from the others, on the batch path and the node's single-target path."""
    import dataclasses

    from mvgd_core.data.types import Frame

    _, new, cal = ckpt_paths
    pred = MVGDPredictor.from_checkpoint(new, device="cpu", steps=1)
    pred.calibration = dataclasses.replace(cal, refined_x=(0.0, 1.0), refined_y=(0.99, 0.99))
    h, w = pred.image_size

    def left_half_replaced(depth, *args, **kw):
        mask = torch.zeros_like(depth, dtype=torch.bool)
        mask[..., : w // 2] = True
        return depth, mask, None

    monkeypatch.setattr(pred, "refined_staged", left_half_replaced)
    b = _batch(pred)
    _, conf = pred.predict_batch(b, "depth", steps=1, return_confidence=True)
    assert torch.allclose(conf[..., : w // 2], torch.tensor(0.99)) and (conf[..., w // 2 :] < 0.95).all()
    s = b.cond_rgb[0]
    frames = [Frame(rgb=(s[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8), K=b.cond_K[0, i].numpy(), T_wc=b.cond_T_wc[0, i].numpy())
              for i in range(s.shape[0])]
    c = pred.predict(frames, b.tgt_K[0].numpy(), b.tgt_T_wc[0].numpy(), (h, w)).confidence
    assert np.allclose(c[:, : w // 2], 0.99) and (c[:, w // 2 :] < 0.95).all()


def test_stage_scores_get_their_own_table():
    """Pixels with the learned stage's own score get a table over that score (fourth, first in
    precedence); the peak-mass tables stay for the rest; old tables (no stage keys) still load."""
    rng = np.random.default_rng(1)
    raw = rng.uniform(0, 1, 40000)
    stage = np.where(rng.uniform(0, 1, raw.size) < 0.5, rng.uniform(0, 1, raw.size), np.nan)
    p_true = np.where(np.isfinite(stage), np.nan_to_num(stage), 0.5 * raw)  # the stage's score is calibrated, the peak mass is not
    correct = rng.uniform(0, 1, raw.size) < p_true
    cal = ConfidenceCalibration.fit(raw, correct, bins=16, stage=stage, refined=np.zeros(raw.size, bool))
    assert len(cal.stage_x) > 1 and cal.n_fit == raw.size
    x = np.array([0.2, 0.5, 0.8])
    assert np.allclose(cal.apply(np.zeros(3), stage=x, refined=np.ones(3, bool)), x, atol=0.06)  # stage before refined
    # the peak-mass tables are fitted on every pixel, as without a stage (half of them here: the
    # stage's pixels, right half the time whatever their peak mass): they serve where no score exists
    assert np.allclose(cal.apply(x, stage=np.full(3, np.nan)), 0.25 + 0.25 * x, atol=0.06)
    assert np.allclose(cal.apply(torch.tensor(x), stage=torch.tensor(x)).numpy(), x, atol=0.06)
    assert ConfidenceCalibration.from_dict(cal.to_dict()) == cal
    old = {k: v for k, v in cal.to_dict().items() if not k.startswith("stage")}
    assert ConfidenceCalibration.from_dict(old).stage_x == ()
    assert np.allclose(ConfidenceCalibration.from_dict(old).apply(x, stage=x), 0.25 + 0.25 * x, atol=0.06)  # no stage table: peak mass


def test_predictor_gives_stage_pixels_the_stage_table(ckpt_paths, monkeypatch):
    """Where the learned stage gave its own score the published confidence comes from the stage
    table (uncalibrated: the score itself), on the batch path and the node's single-target path."""
    import dataclasses

    from mvgd_core.data.types import Frame

    _, new, cal = ckpt_paths
    pred = MVGDPredictor.from_checkpoint(new, device="cpu", steps=1)
    pred.calibration = dataclasses.replace(cal, stage_x=(0.0, 1.0), stage_y=(0.0, 0.5))
    h, w = pred.image_size

    def top_half_staged(depth, *args, **kw):
        staged = torch.full_like(depth, float("nan"))
        staged[..., : h // 2, :] = 0.8
        return depth, None, staged

    monkeypatch.setattr(pred, "refined_staged", top_half_staged)
    b = _batch(pred)
    _, conf = pred.predict_batch(b, "depth", steps=1, return_confidence=True)
    assert torch.allclose(conf[:, : h // 2], torch.tensor(0.4)) and not torch.allclose(conf[:, h // 2 :], torch.tensor(0.4))
    s = b.cond_rgb[0]
    frames = [Frame(rgb=(s[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8), K=b.cond_K[0, i].numpy(), T_wc=b.cond_T_wc[0, i].numpy())
              for i in range(s.shape[0])]
    c = pred.predict(frames, b.tgt_K[0].numpy(), b.tgt_T_wc[0].numpy(), (h, w)).confidence
    assert np.allclose(c[: h // 2 - 1], 0.4)  # (bilinear at the seam)
    pred.calibration = None  # uncalibrated: the stage's own probability where it has one
    _, conf = pred.predict_batch(b, "depth", steps=1, return_confidence=True)
    assert torch.allclose(conf[:, : h // 2], torch.tensor(0.8))
