"""Model evaluation used by validation and MODEL_CARD.md: held-out sets, metrics next to baselines, JSON."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mvgd_core.config import load_config
from mvgd_core.data.sampler import DataConfig
from mvgd_core.model_eval import evaluate_samples, grid_records, held_out_samples, save_grid
from mvgd_core.train import train
from mvgd_core.train_config import TrainConfig
from mvgd_core.train_state import export_model
from script_loader import load_script

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "training" / "configs" / "tiny_test.yaml"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("evalmodel")
    train(load_config(TrainConfig, TINY, {"run_dir": str(d / "run"), "steps": 1}), progress=False)
    return export_model(d / "run" / "checkpoint.pt", d / "tiny.pt")


def test_held_out_sets_are_what_they_claim():
    data = DataConfig(image_hw=(16, 16))
    cond = held_out_samples(data, 3, 2_000_000, 3, "cond")
    novel = held_out_samples(data, 3, 2_000_001, 3, "novel")
    for s in cond:  # the target pose is one of the conditioning poses
        assert (s.cond_T_wc - s.tgt_T_wc).abs().flatten(1).amax(1).min() < 1e-6
    for s in novel:
        assert (s.cond_T_wc - s.tgt_T_wc).abs().flatten(1).amax(1).min() > 1e-4
    again = held_out_samples(data, 3, 2_000_000, 3, "cond")  # deterministic
    assert all(torch.equal(a.tgt_rgb, b.tgt_rgb) for a, b in zip(cond, again))
    with pytest.raises(ValueError):
        held_out_samples(data, 1, 0, 2, "other")
    # a model trained on past-only view tuples is scored on the same targets as every other model
    import dataclasses

    past = dataclasses.replace(data, sampling=dataclasses.replace(data.sampling, p_past_only=1.0))
    assert all(torch.equal(a.tgt_T_wc, b.tgt_T_wc) and torch.equal(a.cond_T_wc, b.cond_T_wc)
               for a, b in zip(cond, held_out_samples(past, 3, 2_000_000, 3, "cond")))


def test_evaluate_samples_scores_model_baselines_references_and_regimes(tiny_model, tmp_path):
    from mvgd_core.inference import MVGDPredictor

    pred = MVGDPredictor.from_checkpoint(tiny_model, device="cpu", steps=2)
    data = DataConfig(image_hw=(16, 16))
    sets = {"cond": held_out_samples(data, 3, 5, 2, "cond"), "novel": held_out_samples(data, 2, 6, 2, "novel")}
    res = evaluate_samples(pred, sets, steps=2, baselines=True, train_median=2.5)
    s = res["summary"]
    for key in ("cond/mvgd/abs_rel", "cond/mvgd/abs_rel_median", "cond/plane_sweep/abs_rel", "cond/reprojection/delta1",
                "cond/const_gt_median/rmse_median", "cond/const_train_median/delta1",
                "novel/mvgd/psnr", "novel/reprojection/psnr", "novel/plane_sweep/ssim"):
        assert key in s and s[key] == s[key], key  # present and not NaN
    assert "cond/mvgd/psnr" not in s  # RGB of a conditioning view is not scored
    # every sample has a regime; the regime split adds up to all samples, per method
    per = res["per_sample"]["cond"]
    assert all(r["regime"] in ("observable", "weak", "none") and 0 <= r["observable_frac"] <= 1 for r in per)
    agg = res["regimes"]["cond"]
    assert sum(agg[r]["mvgd"]["n"] for r in ("observable", "weak", "none")) == agg["all"]["mvgd"]["n"] == 3
    assert sum(s[f"cond/{r}/n"] for r in ("observable", "weak", "none")) == 3
    # the constant rows are what they claim: train constant everywhere, true median per image
    rec = res["records"]["cond"][0]
    assert float(rec["references"]["const_train_median"].unique()) == 2.5
    gt = rec["sample"].tgt_depth
    assert float(rec["references"]["const_gt_median"][0, 0]) == float(gt[gt > 0].median())
    vals = sorted(r["mvgd/abs_rel"] for r in per)
    assert s["cond/mvgd/abs_rel_median"] == vals[1] and abs(s["cond/mvgd/abs_rel"] - sum(vals) / 3) < 1e-9
    png = save_grid(tmp_path / "g.png", res, rows=1)
    assert png.stat().st_size > 0
    n_obs = sum(r["regime"] == "observable" for r in per)
    worst = save_grid(tmp_path / "w.png", res, rows=2, worst=True)
    assert (worst is not None and worst.exists()) if n_obs else worst is None


def test_grid_records_observable_first_or_worst_observable():
    recs = [{"regime": g, "metrics": {"mvgd": {"abs_rel": e}}, "i": i}
            for i, (g, e) in enumerate([("none", 9.0), ("observable", 0.1), ("weak", 5.0), ("observable", 0.7), ("observable", 0.3)])]
    assert [r["i"] for r in grid_records(recs, 3)] == [1, 3, 4]
    assert [r["i"] for r in grid_records(recs, 2, worst=True)] == [3, 4]  # highest error, observable only
    assert grid_records(recs[:1], 3, worst=True) == []


def test_evaluate_model_cli_writes_json(tiny_model, tmp_path):
    out = tmp_path / "r.json"
    cmd = [sys.executable, str(ROOT / "training" / "evaluate_model.py"), "--model", str(tiny_model), "--out", str(out),
           "--num", "2", "--sections", "procedural,tum", "--sweep-steps", "1,2", "--sweep-num", "2", "--tum-num", "2", "--threads", "1"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads(out.read_text())
    assert set(rep["sections"]) == {"procedural", "tum", "steps"}
    assert [row["steps"] for row in rep["sections"]["steps"]] == [1, 2]
    assert rep["train_median_m"] > 0 and "checkpoint" in rep["train_median_source"]
    assert "Observable regime (headline)" in r.stdout and "| MVGD |" in r.stdout and "DDIM steps" in r.stdout
    assert "constant at the training median" in r.stdout and "evaluate_model.py --model" in r.stdout  # command next to the table


def test_training_median_is_stored_measured_or_unknown(tiny_model):
    from mvgd_core.checkpoint import load_checkpoint
    from mvgd_core.config import from_dict
    from mvgd_core.model_eval import checkpoint_depth_median, train_depth_median

    ck = load_checkpoint(tiny_model)
    med, src = checkpoint_depth_median(ck)
    assert med == ck["train_depth_median"] and "stored" in src  # the trainer wrote it
    del ck["train_depth_median"]
    med2, src2 = checkpoint_depth_median(ck, num=4)  # re-measured on the checkpoint's own training data config
    data = from_dict(DataConfig, {**ck["config"]["train"]["data"], "image_hw": [16, 16]})
    assert "training data" in src2 and med2 == train_depth_median(data, 4) > 0
    ck["config"].pop("train")
    med3, src3 = checkpoint_depth_median(ck)
    assert med3 is None and "unknown" in src3  # never guessed


def test_evaluate_model_real_sections_use_the_held_out_split(tiny_model, tmp_path, capsys):
    """The HoloLens section reads only the held-out last quarter (DeepVideoMVS layout), the
    tabletop section the whole 7-Scenes-layout folder; both print regime tables."""
    from mvgd_core.data.deepvideomvs import write_deepvideomvs
    from mvgd_core.data.render import render_sequence
    from mvgd_core.data.seven_scenes import write_seven_scenes

    frames = render_sequence(seed=4, num_frames=16, height=24, width=32, trajectory="forward")
    holo = write_deepvideomvs(frames, tmp_path / "holo")
    table = write_seven_scenes(frames[:8], tmp_path / "table")
    em = load_script("training/evaluate_model.py")
    out = tmp_path / "r.json"
    rc = em.main(["--model", str(tiny_model), "--out", str(out), "--sections", "hololens,tabletop", "--views", "2",
                  "--hololens", str(holo), "--hololens-num", "2", "--tabletop", str(table), "--tabletop-num", "2", "--threads", "1",
                  "--refine-settings", "propagate_radius=0", "--fusion-settings", "splat_radius=2"])
    assert rc == 0
    rep = json.loads(out.read_text())
    assert rep["refine"] and rep["refine_settings"]["propagate_radius"] == 0  # the ablation reruns from the command line
    assert rep["fusion"] and rep["fusion_settings"]["splat_radius"] == 2
    assert rep["sections"]["hololens"]["frames"] == [12, 15]  # last quarter of 16 frames
    for key in ("hololens", "tabletop"):
        agg = rep["sections"][key]["regimes"]["cond"]
        assert sum(agg[r]["mvgd"]["n"] for r in ("observable", "weak", "none")) == 2
        assert (tmp_path / f"{key}_grid.png").is_file()
    printed = capsys.readouterr().out
    assert "HoloLens office walk, held-out last quarter (frames 12..15" in printed and "Tabletop box" in printed
    assert "Observable regime (headline)" in printed
    assert em.main(["--card", str(out)]) == 0  # MODEL_CARD's compact tables from the saved JSON
    card = capsys.readouterr().out
    assert "#### hololens" in card and "#### tabletop" in card and "| **MVGD** (1 DDIM step + photometric refinement, node default) |" in card
    assert "| MVGD network alone (refinement and view synthesis off) |" in card
    with pytest.raises(SystemExit) as exit_info:  # not a field: the parser's clear error
        em.main(["--model", str(tiny_model), "--out", str(out), "--refine-settings", "radius=3"])
    assert exit_info.value.code == 2
    assert "expected key=value over" in capsys.readouterr().err


def test_observability_with_mask_matches_the_lead_s_summary():
    from mvgd_core.observability import observability_with_mask
    from mvgd_core.observability import sample_observability

    for s in held_out_samples(DataConfig(image_hw=(16, 16)), 3, 7, 2, "novel"):
        obs, mask = observability_with_mask(s.tgt_depth, s.tgt_K, s.tgt_T_wc, s.cond_K, s.cond_T_wc, (16, 16), (16, 16))
        ref = sample_observability(s, (16, 16))
        assert obs == ref and mask.shape == (16, 16) and mask.dtype == torch.bool


def test_check_error_by_pixel_oracle_scale_removes_a_wrong_scale_only():
    ebp = load_script("benchmarks/check_error_by_pixel.py")
    gt = torch.linspace(1.0, 4.0, 48).reshape(6, 8)
    none = torch.zeros_like(gt, dtype=torch.bool)
    r = ebp.split_scores(2.0 * gt, gt, none, none, none)  # right shape, twice too far
    assert r["abs_rel"] == pytest.approx(1.0) and r["abs_rel_oracle_scale"] == pytest.approx(0.0, abs=1e-6)
    flat = ebp.split_scores(torch.full_like(gt, 2.5), gt, none, none, none)  # wrong shape: no scale fixes it
    assert flat["abs_rel_oracle_scale"] > 0.2


def test_check_error_by_pixel_band_scores_tell_where_the_volume_holds_the_truth():
    """Pixels outside the band [net / 1.5, net * 1.5] are found; the better of the volume's two
    peaks is an oracle pick (the second peak at the truth scores 0); its mass near the truth is
    the probability within 25 %."""
    ebp = load_script("benchmarks/check_error_by_pixel.py")
    hyp = torch.tensor([1.0, 2.0, 4.0, 8.0])
    gt = torch.full((2, 3), 4.0)
    net = torch.tensor([[4.0, 4.0, 4.0], [1.0, 1.0, 1.0]])  # second row: the truth is 4x the network's depth
    prob = torch.zeros(4, 2, 3)
    prob[0], prob[2] = 0.7, 0.3  # two peaks: the higher at 1, the lower at the truth
    none = torch.zeros_like(gt, dtype=torch.bool)
    r = ebp.band_scores(net, net, gt, none, none, prob, hyp, 1.5)
    assert r["out_of_band_share"] == pytest.approx(0.5) and r["out_of_band_matchable_share"] == 0.0
    assert r["abs_rel_out_of_band"] == pytest.approx(0.75) and r["abs_rel_out_of_band_volume_best_peak"] == pytest.approx(0.0)
    assert r["volume_mass_near_truth_out_of_band"] == pytest.approx(0.3) and r["abs_rel_if_out_of_band_exact"] == pytest.approx(0.0)
    one_peak = torch.zeros(4, 2, 3)
    one_peak[0] = 1.0  # a single peak, far from the truth: no oracle pick can help
    assert ebp.band_scores(net, net, gt, none, none, one_peak, hyp, 1.5)["abs_rel_out_of_band_volume_best_peak"] == pytest.approx(0.75)


def test_check_error_by_pixel_splits_every_observable_target(tiny_model, tmp_path, capsys):
    """benchmarks/check_error_by_pixel.py end to end on a tiny model: pixel shares are shares, the
    'were these exact' AbsRel never exceeds the whole target's, and a set without observable
    targets (or a missing HoloLens folder) is reported, not a crash."""
    ebp = load_script("benchmarks/check_error_by_pixel.py")
    for targets in ("cond", "novel"):
        out, fig = tmp_path / f"{targets}.json", tmp_path / f"{targets}.png"
        assert ebp.main(["--model", str(tiny_model), "--num", "12", "--hololens", str(tmp_path / "none"), "--threads", "1",
                         "--targets", targets, "--out", str(out), "--figure", str(fig)]) == 0
        rep = json.loads(out.read_text())
        assert rep["targets"] == targets and set(rep["sets"]) == {"procedural"}
        rows = rep["sets"]["procedural"]
        assert rows, "the tiny procedural set should have observable targets"
        for r in rows.values():
            assert 0 <= r["matchable_textured_share"] <= r["matchable_share"] <= 1
            for k in ("abs_rel_if_matchable_exact", "abs_rel_if_prior_only_exact", "abs_rel_if_matchable_textured_exact"):
                assert r[k] <= r["abs_rel"] + 1e-9
        assert "out_of_band_share" not in rows["mvgd"]  # a raymap model has no matching volume to ask
        assert fig.is_file()
    assert "| procedural | mvgd |" in capsys.readouterr().out


def test_check_error_by_pixel_out_of_band_table_for_a_matching_model(tmp_path, capsys):
    """A matching model at live cameras gets the out-of-band table, with classical MVS there on --mvs."""
    from tiny_models import tiny_matching_model
    from mvgd_core.checkpoint import make_state, save_checkpoint
    from mvgd_core.diffusion import DiffusionConfig

    ckpt = tmp_path / "match.pt"
    save_checkpoint(ckpt, make_state(tiny_matching_model(), DiffusionConfig(match_weight=1.0), step=0))
    ebp = load_script("benchmarks/check_error_by_pixel.py")
    out = tmp_path / "band.json"
    assert ebp.main(["--model", str(ckpt), "--num", "12", "--hololens", str(tmp_path / "none"), "--threads", "1", "--mvs",
                     "--out", str(out)]) == 0
    band = json.loads(out.read_text())["sets"]["procedural"]["mvgd"]
    assert 0 <= band["out_of_band_share"] <= 1 and band["abs_rel_if_out_of_band_exact"] <= band["abs_rel"] + 1e-9
    assert 0 <= band["volume_mass_near_truth_in_band"] <= 1 and "out_of_band_mvs_kept_share" in band
    assert "outside the refinement's band" in capsys.readouterr().out
