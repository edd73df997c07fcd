"""training/compare_models.py: a paired bootstrap over the same targets says "level" for noise and
names the better model when the difference is real; it refuses evaluations of other targets."""
from __future__ import annotations

import json

import numpy as np
import pytest

from script_loader import load_script


def _eval(abs_rel, seed_frac=0):
    rows = [{"regime": "observable" if i % 5 else "none", "observable_frac": 0.5 + 0.001 * (i + seed_frac), "mvgd/abs_rel": float(x),
             "mvgd/delta1": float(1 - x)} for i, x in enumerate(abs_rel)]
    return {"model": "m", "sections": {"hololens": {"per_sample": {"cond": rows, "novel": rows}}}}


def test_real_difference_is_named_and_noise_is_level(tmp_path):
    cm = load_script("training/compare_models.py")
    rng = np.random.default_rng(1)
    a = rng.uniform(0.1, 0.3, 60)
    rows = cm.compare(_eval(a), _eval(a * 0.8))  # B 20 % better on every target
    cell = {(r["task"], r["metric"]): r for r in rows}
    assert cell["cond", "abs_rel"]["verdict"] == "B better" and cell["cond", "delta1"]["verdict"] == "B better"
    assert cell["cond", "abs_rel"]["n"] == 48  # observable targets only
    assert cm.compare(_eval(a * 0.8), _eval(a))[0]["verdict"] == "A better"
    noisy = a * rng.choice([0.97, 1.03], size=a.size)  # +-3 % either way: no winner
    assert {r["verdict"] for r in cm.compare(_eval(a), _eval(noisy))} == {"level"}
    pa, pb, out = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "cmp.json"
    pa.write_text(json.dumps(_eval(a)))
    pb.write_text(json.dumps(_eval(a * 0.8)))
    assert cm.main([str(pa), str(pb), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["rows"][0]["verdict"] == "B better"


def test_other_targets_are_refused(tmp_path, capsys):
    cm = load_script("training/compare_models.py")
    a = np.full(30, 0.2)
    with pytest.raises(cm.CompareError, match="targets"):
        cm.compare(_eval(a), _eval(a[:20]))
    with pytest.raises(cm.CompareError, match="not the same targets"):
        cm.compare(_eval(a), _eval(a, seed_frac=1))
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps(_eval(a)))
    pb.write_text(json.dumps(_eval(a[:20])))
    assert cm.main([str(pa), str(pb)]) == 2 and "same arguments" in capsys.readouterr().err
