"""Eval helpers without ROS: stamp matching, hold-out choice, resampling into the output camera, report."""
import json

import numpy as np
import pytest

from mvgd_core.report import FrameResult, aggregate, headline, latency_stats, write_report
from mvgd_ros import eval as E


def test_match_by_stamp_nearest_within_tolerance():
    ref = [10.0, 10.5, 11.0, 12.0]  # ground-truth stamps (any order works)
    got = E.match_by_stamp([10.0004, 11.0, 11.5, 9.0, 12.0009], ref[::-1], tol=1e-3)
    # indices into ref[::-1] = [12.0, 11.0, 10.5, 10.0]
    assert got == {0: 3, 1: 1, 4: 0}
    assert E.match_by_stamp([1.0], []) == {}


def test_holdout_indices():
    assert E.holdout_indices(12, 4, warmup=2) == {5, 9}
    assert E.holdout_indices(12, 0) == set() and E.holdout_indices(12, 1) == set()
    assert min(E.holdout_indices(100, 3, warmup=5)) >= 5


def test_resample_to_camera_depth_nearest_and_rgb_area():
    H, W = 48, 64
    K = np.array([[60.0, 0, 31.5], [0, 60.0, 23.5], [0, 0, 1]])
    depth = np.zeros((H, W), np.float32)
    depth[:, : W // 2] = 1.0
    depth[:, W // 2 :] = 3.0
    depth[0, 0] = 0.0  # invalid stays invalid-or-neighbour, never mixed
    # half resolution + a 4-pixel crop on the left in output pixels
    K2 = np.array([[30.0, 0, 15.25 - 4], [0, 30.0, 11.25], [0, 0, 1]])
    d2 = E.resample_to_camera(depth, K, K2, (24, 32), depth=True)
    assert d2.shape == (24, 32)
    assert set(np.unique(d2)) <= {0.0, 1.0, 3.0}  # nearest: no blended depths
    # the 1 m / 3 m edge sits at source u = 31.5, i.e. output u = (31.5 + 0.5) / 2 - 0.5 - 4 = 11.5
    assert (d2[5, :11] == 1.0).all() and (d2[5, 12:24] == 3.0).all()
    assert (d2[:, 28:] == 0).all() and (d2[:, 27] == 3.0).all()  # past the source's right edge: invalid
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[::2] = 255  # 1-px stripes: area resampling averages, a naive remap would alias
    r2 = E.resample_to_camera(rgb, K, K2, (24, 28), depth=False)
    assert abs(float(r2[2:20, 2:20].mean()) - 127.5) < 10


def test_report_aggregates_and_writes(tmp_path):
    res = [
        FrameResult(1.0, "depth_live", {"mvgd": {"abs_rel": 0.1, "rmse": 0.5}, "plane_sweep": {"abs_rel": 0.3, "coverage": 1.0}}),
        FrameResult(2.0, "depth_live", {"mvgd": {"abs_rel": 0.2, "rmse": float("nan")}}),
        FrameResult(3.0, "novel", {"mvgd": {"psnr": 20.0, "ssim": 0.5}}, picture="frames/x.png"),
    ]
    agg = aggregate(res)
    assert agg["depth_live"]["mvgd"]["abs_rel"] == pytest.approx(0.15)
    assert agg["depth_live"]["mvgd"]["rmse"] == pytest.approx(0.5)  # NaN skipped
    assert agg["depth_live"]["mvgd"]["n"] == 2 and agg["novel"]["mvgd"]["n"] == 1
    lat = latency_stats([0.1, 0.2, 0.3, None])
    assert lat["n"] == 3 and lat["p50_ms"] == pytest.approx(200.0)
    readme = write_report(tmp_path, {"bag": "b", "latency": lat, "notes": ["no depth"]}, res, overview="overview.png")
    text = readme.read_text()
    assert "Depth at the live camera" in text and "Novel views" in text and "no depth" in text
    assert "| MVGD (node) | 2 | 0.150 |" in text
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data["aggregate"]["novel"]["mvgd"]["psnr"] == 20.0 and len(data["frames"]) == 3
    assert (tmp_path / "index.html").read_text().count("<table>") == 3
    assert any("PSNR 20.00" in line for line in headline(data))


def test_eval_cli_errors_for_missing_bag(tmp_path, capsys):
    rc = E.main([str(tmp_path / "nope"), "--out", str(tmp_path / "r"), "--quiet"])
    assert rc == 2 and "bag not found" in capsys.readouterr().err
