"""training/parallax_report.py: observable targets split by their median parallax, per report."""
import math

import pytest

from script_loader import load_script


def _report(errors, disparities, regime="observable"):
    rows = [{"regime": regime, "median_disparity_px": d, "mvgd/abs_rel": e, "mvgd_net/abs_rel": 2 * e} for e, d in zip(errors, disparities)]
    return {"sections": {"procedural": {"per_sample": {"cond": rows + [{"regime": "none", "median_disparity_px": 1.0, "mvgd/abs_rel": 9.0}]}}}}


def test_bins_take_the_median_of_their_targets_only():
    pr = load_script("training/parallax_report.py")
    a = _report([0.1, 0.3, 0.2, 0.5], [1.0, 1.5, 5.0, 20.0])
    b = _report([0.1, 0.1, 0.1, 0.1], [1.0, 1.5, 5.0, 20.0])
    out = pr.series([a, b], ["a", "b"], "procedural", "cond")
    first = out["MVGD, a"]
    assert [x["n"] for x in first] == [2, 0, 1, 1]  # the unobservable row is left out
    assert first[0]["abs_rel_median"] == pytest.approx(0.2) and math.isnan(first[1]["abs_rel_median"])
    assert first[3]["abs_rel_median"] == pytest.approx(0.5)
    assert out["MVGD, b"][3]["abs_rel_median"] == pytest.approx(0.1)
    assert out["network alone"][2]["abs_rel_median"] == pytest.approx(0.4)  # reference rows come from the first report
    assert "mvs, kept pixels" not in out  # no such rows in these reports


def test_reports_of_different_targets_or_sections_are_clear_errors():
    pr = load_script("training/parallax_report.py")
    with pytest.raises(ValueError, match="different observable targets"):
        pr.series([_report([0.1], [1.0]), _report([0.1, 0.2], [1.0, 2.0])], ["a", "b"], "procedural", "cond")
    with pytest.raises(ValueError, match="no per-target rows"):
        pr.series([_report([0.1], [1.0])], ["a"], "hololens", "cond")
