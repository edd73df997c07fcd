"""training/finish_model.py: a new network's stage, head and calibration in one resumable command,
end to end on a tiny matching model (procedural sets only: a fresh clone has no HoloLens folder)."""
import json

import pytest
import torch

from mvgd_core.checkpoint import load_checkpoint, make_state, save_checkpoint
from mvgd_core.diffusion import DiffusionConfig
from mvgd_core.inference import MVGDPredictor
from mvgd_core.refine_net import CHECKPOINT_KEY
from script_loader import load_script
from tiny_models import tiny_matching_model


def test_finish_model_builds_stage_head_and_calibration_and_resumes(tmp_path, capsys):
    fm = load_script("training/finish_model.py")
    net = tmp_path / "net.pt"
    save_checkpoint(net, make_state(tiny_matching_model(), DiffusionConfig(match_weight=1.0), step=0))
    out, work = tmp_path / "finished.pt", tmp_path / "work"
    args = ["--model", str(net), "--write", str(out), "--work", str(work), "--only", "val_procedural", "proc_a", "proc_b",
            "--scale", "0.002", "--steps", "2", "--head-steps", "2", "--threads", "1",
            "--calibrate-args", "--fit-num 4 --eval-num 2 --fit-sets procedural --hololens '' --tabletop ''"]
    assert fm.main(args) == 0
    ckpt = load_checkpoint(out)
    stage = ckpt[CHECKPOINT_KEY]
    assert stage["config"]["uncertainty"] and stage["meta"]["uncertainty"] and stage["meta"]["started_from"]["steps"] == 2
    assert stage["meta"]["weights"] == [0.5, 0.5]  # the shipped weights of the sets it was given
    pred = MVGDPredictor.from_checkpoint(out, device="cpu", steps=1)
    assert pred.confidence_calibrated and len(pred.calibration.stage_x) > 0  # the fourth table was fitted
    assert json.loads((work / "calibration.json").read_text())["written"] == str(out)
    # a rerun keeps every step's output (resumes) and writes the same result
    before = {p.name: p.stat().st_mtime_ns for p in work.glob("*.pt")}
    capsys.readouterr()
    assert fm.main(args) == 0
    assert {p.name: p.stat().st_mtime_ns for p in work.glob("*.pt")} == before
    assert capsys.readouterr().out.count("exists: kept") == 3
    a, b = (load_checkpoint(p)[CHECKPOINT_KEY]["state"] for p in (out, work / "head.pt"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(SystemExit, match="must differ"):
        fm.main(["--model", str(net), "--write", str(net)])
    with pytest.raises(SystemExit, match="tuning set"):
        fm.main(["--model", str(net), "--write", str(out), "--only", "proc_a"])
