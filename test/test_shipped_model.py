"""The shipped default model (models/mvgd_default.pt): it loads, and its depth and RGB on held-out
procedural scenes stay at the quality MODEL_CARD.md reports (a regression guard for re-training
or any change to the model, sampler or SSN code).

Bounds are the model card's measured values with a margin for the smaller sample used here;
held-out seeds 2_000_000 / 2_000_001 are never used by training (data.seed 0..) or validation
(1_000_000..).
"""
from pathlib import Path

import numpy as np
import pytest
import torch

from mvgd_core.checkpoint import load_checkpoint
from mvgd_core.config import from_dict
from mvgd_core.data.sampler import DataConfig
from mvgd_core.inference import MVGDPredictor
from mvgd_core.model_eval import evaluate_samples, held_out_samples

MODEL = Path(__file__).resolve().parents[1] / "models" / "mvgd_default.pt"
NUM = 8  # targets per set
STEPS = 1  # the node's default (config/mvgd.yaml), the best measured step count
# Measured on these 8 + 8 targets when the model was shipped (matching-path model, stop 9):
# cond AbsRel 0.314 (median 0.277, δ1 0.549), novel AbsRel 0.662, novel PSNR 19.19 dB (plane
# sweep: cond AbsRel 0.861). Bounds leave ~25% headroom; a fresh random model of the same
# architecture fails them.
COND_ABS_REL_MAX = 0.40
COND_DELTA1_MIN = 0.42
NOVEL_ABS_REL_MAX = 0.83
NOVEL_PSNR_MIN = 17.0


@pytest.fixture(scope="module")
def results():
    assert MODEL.is_file(), f"the shipped model {MODEL} is missing (it is committed with the repository)"
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ckpt = load_checkpoint(MODEL)
        pred = MVGDPredictor.from_checkpoint(MODEL, device="cpu", steps=STEPS)
        data = from_dict(DataConfig, {**ckpt["config"]["train"]["data"], "image_hw": list(pred.image_size)}, where="train.data")
        sets = {"cond": held_out_samples(data, NUM, 2_000_000, 3, "cond"),
                "novel": held_out_samples(data, NUM, 2_000_001, 3, "novel")}
        res = evaluate_samples(pred, sets, steps=STEPS, baselines=True)
    finally:
        torch.set_num_threads(n)
    return ckpt, pred, res


def test_shipped_model_is_the_documented_one(results):
    ckpt, pred, _ = results
    assert "optimizer" not in ckpt and "ema" not in ckpt  # exported weights only
    assert pred.image_size == (96, 128)
    assert pred.model.cfg.matching and pred.model.cfg.decoder  # the matching path (issue 11)
    assert ckpt["config"]["diffusion"]["prediction_type"] == "x0"
    assert MODEL.stat().st_size < 30 * 2**20


def test_shipped_model_depth_quality(results):
    s = results[2]["summary"]
    assert s["cond/mvgd/abs_rel"] < COND_ABS_REL_MAX, s
    assert s["cond/mvgd/delta1"] > COND_DELTA1_MIN, s
    assert s["novel/mvgd/abs_rel"] < NOVEL_ABS_REL_MAX, s
    assert s["cond/mvgd/abs_rel"] < s["cond/plane_sweep/abs_rel"], s  # better than the naive sweep on the same views


def test_shipped_model_novel_rgb_quality(results):
    s = results[2]["summary"]
    assert s["novel/mvgd/psnr"] > NOVEL_PSNR_MIN, s


def test_shipped_model_depth_is_metric(results):
    """SSN carries the poses' scale: the median ratio of predicted to true depth is near 1."""
    recs = results[2]["records"]["cond"]
    ratios = [float(np.median((r["depth"] / r["sample"].tgt_depth)[r["sample"].tgt_depth > 0])) for r in recs]
    assert 0.6 < float(np.median(ratios)) < 1.6, ratios
