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
from mvgd_core.model_eval import evaluate_samples, held_out_samples, save_grid
from mvgd_core.train import TrainConfig, export_model, train

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


def test_evaluate_samples_scores_model_and_baselines(tiny_model, tmp_path):
    from mvgd_core.inference import MVGDPredictor

    pred = MVGDPredictor.from_checkpoint(tiny_model, device="cpu", steps=2)
    data = DataConfig(image_hw=(16, 16))
    sets = {"cond": held_out_samples(data, 2, 5, 2, "cond"), "novel": held_out_samples(data, 2, 6, 2, "novel")}
    res = evaluate_samples(pred, sets, steps=2, baselines=True)
    s = res["summary"]
    for key in ("cond/mvgd/abs_rel", "cond/plane_sweep/abs_rel", "cond/reprojection/delta1",
                "novel/mvgd/psnr", "novel/reprojection/psnr", "novel/plane_sweep/ssim"):
        assert key in s and s[key] == s[key], key  # present and not NaN
    assert "cond/mvgd/psnr" not in s  # RGB of a conditioning view is not scored
    assert len(res["per_sample"]["novel"]) == 2
    png = save_grid(tmp_path / "g.png", res, rows=1)
    assert png.stat().st_size > 0


def test_evaluate_model_cli_writes_json(tiny_model, tmp_path):
    out = tmp_path / "r.json"
    cmd = [sys.executable, str(ROOT / "training" / "evaluate_model.py"), "--model", str(tiny_model), "--out", str(out),
           "--num", "2", "--sweep-steps", "1,2", "--sweep-num", "2", "--tum-num", "2", "--threads", "1"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads(out.read_text())
    assert set(rep["sections"]) == {"procedural", "tum", "steps"}
    assert [row["steps"] for row in rep["sections"]["steps"]] == [1, 2]
    assert "| MVGD |" in r.stdout and "DDIM steps" in r.stdout
