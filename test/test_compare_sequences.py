"""training/compare_sequences.py: two evaluate_sequences runs paired frame by frame."""
import json

import pytest

from script_loader import load_script


def _run(path, absrels, regimes=None, lag="0"):
    rows = [{"sequence": 0, "frame": i, "abs_rel": a, "delta1": 1 - a, "regime": (regimes or ["observable"] * len(absrels))[i]}
            for i, a in enumerate(absrels)]
    path.write_text(json.dumps({"results": {"walk": {lag: {"live": {"rows": rows}}}}}))
    return path


def test_pairs_shared_observable_frames_counts_gains_beyond_float_noise_and_draws(tmp_path, capsys):
    cs = load_script("training/compare_sequences.py")
    a = _run(tmp_path / "a.json", [0.20, 0.10, 0.30, 0.40, 0.50], ["observable", "observable", "observable", "observable", "weak"])
    b = _run(tmp_path / "b.json", [0.10, 0.10 - 1e-6, 0.31, 0.20, 0.01])
    out, fig = tmp_path / "cmp.json", tmp_path / "cmp.png"
    assert cs.main([str(a), str(b), "--out", str(out), "--figure", str(fig), "--labels", "old", "new"]) == 0
    row = json.loads(out.read_text())["rows"][0]
    assert row["frames"] == 4  # the weak frame is left out
    assert row["b_better"] == 2  # 0.20 -> 0.10 and 0.40 -> 0.20; 1e-6 is a tie, 0.31 is worse
    assert row["abs_rel"]["median_a"] == pytest.approx(0.25) and row["abs_rel"]["median_b"] == pytest.approx(0.15)
    assert "| walk | 0 | 4 |" in capsys.readouterr().out
    assert fig.stat().st_size > 1000


def test_runs_without_shared_frames_are_refused(tmp_path):
    cs = load_script("training/compare_sequences.py")
    a = _run(tmp_path / "a.json", [0.2, 0.1])
    b = _run(tmp_path / "b.json", [0.2, 0.1], lag="2")
    with pytest.raises(SystemExit, match="share no observable live frame"):
        cs.main([str(a), str(b)])
    with pytest.raises(SystemExit, match="compare_sequences"):
        cs.main([str(a), str(tmp_path / "missing.json")])
