"""Trainer CLI: its own help example works, bad values give a config error (exit 2, no traceback)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mvgd_core.checkpoint import load_checkpoint
from mvgd_core.train import main
from mvgd_core.train_state import export_model

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "training" / "configs" / "tiny_test.yaml"


def test_help_example_lr_without_a_dot_trains_and_stores_the_training_median(tmp_path):
    run = tmp_path / "run"
    rc = main(["--config", str(TINY), "--run-dir", str(run), "--steps", "1", "--no-progress", "--set", "optim.lr=1e-4",
               "--set", "optim.min_lr=1e-5"])
    assert rc == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["optim"]["lr"] == 1e-4 and saved["optim"]["min_lr"] == 1e-5
    ck = load_checkpoint(run / "checkpoint.pt")
    assert 0.1 < ck["train_depth_median"] < 50  # the const_train_median reference, metres
    shipped = load_checkpoint(export_model(run / "checkpoint.pt", tmp_path / "m.pt"))
    assert shipped["train_depth_median"] == ck["train_depth_median"]


@pytest.mark.parametrize("over, words", [
    (["--set", "optim.lr=.nan"], ["optim", "lr", "NaN"]),
    (["--set", "optim.lr=nan"], ["optim", "lr"]),
    (["--set", "optim.lr=-1e-3"], ["optim.lr", "range"]),
    (["--set", "optim.lr=[1"], ["not valid YAML"]),
])
def test_bad_learning_rate_is_a_config_error(tmp_path, capsys, over, words):
    rc = main(["--config", str(TINY), "--run-dir", str(tmp_path / "r"), "--no-progress", *over])
    err = capsys.readouterr().err
    assert rc == 2 and "config error" in err and "Traceback" not in err
    assert all(w in err for w in words), err
    assert not (tmp_path / "r").exists()  # nothing started


def test_run_dir_that_is_a_file_is_a_config_error(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("not a folder")
    for run in (f, f / "sub"):
        rc = main(["--config", str(TINY), "--run-dir", str(run), "--steps", "1", "--no-progress"])
        err = capsys.readouterr().err
        assert rc == 2 and "config error" in err and "is a file" in err, err
    assert f.read_text() == "not a folder"


def test_validation_reports_medians_per_regime_and_reference_rows(tmp_path, capsys):
    import csv

    run = tmp_path / "val"
    rc = main(["--config", str(TINY), "--run-dir", str(run), "--steps", "1", "--no-progress",
               "--set", "val.every=1", "--set", "val.num_samples=2"])
    assert rc == 0
    row = next(csv.DictReader((run / "val.csv").open()))
    for key in ("cond/mvgd/abs_rel", "cond/mvgd/abs_rel_median", "novel/mvgd/delta1_median", "novel/mvgd/rmse_median",
                "cond/observable/mvgd/abs_rel_median", "cond/weak/mvgd/delta1_mean", "novel/none/n",
                "cond/const_gt_median/abs_rel_median",
                "cond/const_train_median/delta1_median", "cond/observable/plane_sweep/abs_rel_median", "novel/reprojection/psnr"):
        assert key in row, key
    assert "val step 1: cond: observable n=" in capsys.readouterr().err  # the headline regime first
    assert (run / "val" / "step0000001.png").is_file()


def test_export_half_stores_float16_and_loads_back_close(tmp_path):
    """--export-half: float16 weights (half the file), rebuilt as a float32 model whose outputs
    match the float32 export to float16 rounding."""
    import torch

    from mvgd_core.checkpoint import model_from_checkpoint

    run = tmp_path / "run"
    assert main(["--config", str(TINY), "--run-dir", str(run), "--steps", "1", "--no-progress",
                 "--export", str(tmp_path / "half.pt"), "--export-half"]) == 0
    full = load_checkpoint(export_model(run / "checkpoint.pt", tmp_path / "full.pt"))
    half = load_checkpoint(tmp_path / "half.pt")
    assert all(v.dtype == torch.float16 for v in half["model"].values() if v.is_floating_point())
    assert (tmp_path / "half.pt").stat().st_size < 0.6 * (tmp_path / "full.pt").stat().st_size
    m_full, m_half = model_from_checkpoint(full).eval(), model_from_checkpoint(half).eval()
    assert next(m_half.parameters()).dtype == torch.float32
    for (k, a), b in zip(m_full.state_dict().items(), m_half.state_dict().values()):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-6), k
