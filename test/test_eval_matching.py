"""Eval helpers without ROS: stamp matching, hold-out choice, resampling into the output camera, report."""
import json

import numpy as np
import pytest

from mvgd_core.report import FrameResult, aggregate, headline, latency_stats, write_report
from mvgd_ros import eval as E
from mvgd_ros import eval_scoring as S


def test_match_by_stamp_nearest_within_tolerance():
    ref = [10.0, 10.5, 11.0, 12.0]  # ground-truth stamps (any order works)
    got = S.match_by_stamp([10.0004, 11.0, 11.5, 9.0, 12.0009], ref[::-1], tol=1e-3)
    # indices into ref[::-1] = [12.0, 11.0, 10.5, 10.0]
    assert got == {0: 3, 1: 1, 4: 0}
    assert S.match_by_stamp([1.0], []) == {}


def test_holdout_indices():
    assert S.holdout_indices(12, 4, warmup=2) == {5, 9}
    assert S.holdout_indices(12, 0) == set() and S.holdout_indices(12, 1) == set()
    assert min(S.holdout_indices(100, 3, warmup=5)) >= 5


def test_resample_to_camera_depth_nearest_and_rgb_area():
    H, W = 48, 64
    K = np.array([[60.0, 0, 31.5], [0, 60.0, 23.5], [0, 0, 1]])
    depth = np.zeros((H, W), np.float32)
    depth[:, : W // 2] = 1.0
    depth[:, W // 2 :] = 3.0
    depth[0, 0] = 0.0  # invalid stays invalid-or-neighbour, never mixed
    # half resolution + a 4-pixel crop on the left in output pixels
    K2 = np.array([[30.0, 0, 15.25 - 4], [0, 30.0, 11.25], [0, 0, 1]])
    d2 = S.resample_to_camera(depth, K, K2, (24, 32), depth=True)
    assert d2.shape == (24, 32)
    assert set(np.unique(d2)) <= {0.0, 1.0, 3.0}  # nearest: no blended depths
    # the 1 m / 3 m edge sits at source u = 31.5, i.e. output u = (31.5 + 0.5) / 2 - 0.5 - 4 = 11.5
    assert (d2[5, :11] == 1.0).all() and (d2[5, 12:24] == 3.0).all()
    assert (d2[:, 28:] == 0).all() and (d2[:, 27] == 3.0).all()  # past the source's right edge: invalid
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[::2] = 255  # 1-px stripes: area resampling averages, a naive remap would alias
    r2 = S.resample_to_camera(rgb, K, K2, (24, 28), depth=False)
    assert abs(float(r2[2:20, 2:20].mean()) - 127.5) < 10


def test_report_aggregates_and_writes(tmp_path):
    res = [
        FrameResult(1.0, "depth_live", {"mvgd": {"abs_rel": 0.1, "rmse": 0.5, "delta1": 0.9}, "mvs": {"abs_rel": 0.05, "delta1": 0.95, "coverage": 0.5},
                                        "plane_sweep": {"abs_rel": 0.3, "coverage": 1.0}}, regime="observable", observable_frac=0.8),
        FrameResult(2.0, "depth_live", {"mvgd": {"abs_rel": 0.2, "rmse": float("nan")}}, regime="none", observable_frac=0.0),
        FrameResult(2.5, "depth_live", {"mvgd": {"abs_rel": 0.9}}, regime="observable", observable_frac=0.6),
        FrameResult(3.0, "novel", {"mvgd": {"psnr": 20.0, "ssim": 0.5}}, picture="frames/x.png"),
    ]
    agg = aggregate(res)
    assert agg["depth_live"]["mvgd"]["abs_rel"] == pytest.approx(0.4)
    assert agg["depth_live"]["mvgd"]["abs_rel_median"] == pytest.approx(0.2)  # the median next to the mean
    assert agg["depth_live"]["mvgd"]["rmse"] == pytest.approx(0.5)  # NaN skipped
    assert agg["depth_live"]["mvgd"]["n"] == 3 and agg["novel"]["mvgd"]["n"] == 1
    lat = latency_stats([0.1, 0.2, 0.3, None])
    assert lat["n"] == 3 and lat["p50_ms"] == pytest.approx(200.0)
    readme = write_report(tmp_path, {"bag": "b", "latency": lat, "notes": ["no depth"]}, res, overview="overview.png")
    text = readme.read_text()
    assert "Depth at the live camera" in text and "Novel views" in text and "no depth" in text
    assert "Observable regime (the headline)" in text and "Every regime" in text
    # observable headline: the two observable frames, median (mean) = 0.5 (0.5); not the none-regime frame
    assert "| MVGD (node) | 2 | 0.500 (0.500) |" in text
    assert "| MVGD (node) | 3 | 0.400 |" in text  # all frames, means
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data["regimes"]["depth_live"]["none"]["mvgd"]["abs_rel"]["median"] == pytest.approx(0.2)
    assert data["aggregate"]["novel"]["mvgd"]["psnr"] == 20.0 and len(data["frames"]) == 4
    assert data["frames"][0]["regime"] == "observable"
    assert (tmp_path / "index.html").read_text().count("<table>") == 5  # depth: observable, regimes, all; novel (no depth): all; latency
    lines = headline(data)
    assert lines[0].startswith("depth@live: 3 frames = 2 observable + 0 weak + 1 none")
    mv = next(x for x in lines if x.strip().startswith("mvgd "))
    assert "0.500 (0.500)" in mv  # observable AbsRel median (mean) comes first
    ci = next(x for x in lines if "95 % interval" in x)
    assert "mvgd AbsRel [" in ci and " δ1 [" in ci  # how far another draw of frames could move the headline
    assert data["regimes"]["depth_live"]["observable"]["mvgd"]["abs_rel"]["median_ci95"][0] <= 0.5
    assert any(x.strip().startswith("mvs ") for x in lines) and any(x.strip().startswith("plane_sweep ") for x in lines)
    assert any("PSNR 20.00 (20.00)" in line for line in lines)


def test_eval_cli_errors_for_missing_bag(tmp_path, capsys):
    rc = E.main([str(tmp_path / "nope"), "--out", str(tmp_path / "r"), "--quiet"])
    assert rc == 2 and "bag not found" in capsys.readouterr().err


def test_out_dir_not_ours_is_refused_and_left_alone(tmp_path, capsys):
    from mvgd_core.data.render import render_sequence
    from mvgd_core.data.rosbag_io import write_bag

    frames = render_sequence(seed=1, num_frames=3, height=8, width=8, trajectory="forward")
    bag = write_bag(frames, tmp_path / "bag", storage="sqlite3", stamp_offset=100.0)
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    rc = E.main([str(bag), "--out", str(home), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "did not create" in err and "Traceback" not in err
    assert sorted(p.name for p in home.iterdir()) == ["thesis.tex"] and (home / "thesis.tex").read_text() == "years of work"
    # a file is refused too
    rc = E.main([str(bag), "--out", str(home / "thesis.tex"), "--quiet"])
    assert rc == 2 and "is a file" in capsys.readouterr().err


def test_out_dir_policy_claims_new_and_empty_folders_and_cleans_only_our_files(tmp_path):
    new = tmp_path / "a" / "b"
    E.prepare_out_dir(new)
    assert (new / E.REPORT_MARKER).is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    E.prepare_out_dir(empty)
    assert (empty / E.REPORT_MARKER).is_file()
    (new / "frames").mkdir()
    (new / "frames" / "x.png").write_bytes(b"x")
    (new / "metrics.json").write_text("{}")
    (new / "notes.txt").write_text("mine")  # the user's file in our folder survives a clean
    E.prepare_out_dir(new)  # ours: accepted again
    E.clean_report(new)
    assert sorted(p.name for p in new.iterdir()) == [E.REPORT_MARKER, "notes.txt"]
    legacy = tmp_path / "legacy"  # a report written before the marker existed: only our file names
    (legacy / "frames").mkdir(parents=True)
    for name in ("metrics.json", "README.md", "node.log"):
        (legacy / name).write_text("old")
    E.prepare_out_dir(legacy)
    assert (legacy / E.REPORT_MARKER).is_file()


def test_camera_info_with_zero_K_is_a_clear_error(tmp_path, capsys, monkeypatch):
    from mvgd_core.data import rosbag_io
    from mvgd_core.data.render import render_sequence

    real = rosbag_io._camera_info_msg
    monkeypatch.setattr(rosbag_io, "_camera_info_msg", lambda ts, stamp, fid, K, h, w, lens=None: real(ts, stamp, fid, np.zeros((3, 3)), h, w, lens))
    frames = render_sequence(seed=1, num_frames=3, height=8, width=8, trajectory="forward")
    bag = rosbag_io.write_bag(frames, tmp_path / "zeroK", storage="sqlite3", stamp_offset=100.0)
    out = tmp_path / "r"
    rc = E.main([str(bag), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "K is all zero" in err and "focal lengths must be positive" in err and "/camera/color/camera_info" in err
    assert not (out / "metrics.json").exists()


def test_most_confident_keeps_the_share_of_gt_pixels_with_the_highest_confidence():
    from mvgd_ros.eval_scoring import most_confident

    gt = np.array([[1.0, 2.0, 3.0, 0.0], [4.0, 5.0, np.nan, 6.0]], np.float32)  # 6 valid GT pixels
    pred = np.full_like(gt, 2.0)
    pred[1, 3] = 0.0  # no prediction there
    conf = np.array([[0.9, 0.1, 0.8, 1.0], [0.5, 0.7, 1.0, 1.0]], np.float32)
    kept = most_confident(pred, conf, gt, 0.5)  # 3 of 6: the three most confident pixels with GT and depth
    assert kept.shape == gt.shape and sorted(zip(*np.nonzero(kept))) == [(0, 0), (0, 2), (1, 1)]
    assert most_confident(pred, conf, gt, 1.0).astype(bool).sum() == 5  # never more than have both
    assert not most_confident(pred, conf, gt, 0.0).any()  # mvs kept nothing: nothing to compare


def test_frame_metrics_score_mvgd_at_the_coverage_mvs_kept():
    """"mvgd_confident": MVGD on its most confident pixels, as many as mvs kept on the frame; its
    confident pixels are its accurate ones here, so it beats MVGD on all pixels."""
    from mvgd_core.data.types import Frame
    from mvgd_ros.eval_scoring import frame_metrics

    rng = np.random.default_rng(0)
    gt = rng.uniform(1, 4, (20, 30)).astype(np.float32)
    pred = gt.copy()
    bad = rng.random(gt.shape) < 0.5
    pred[bad] *= 1.5
    conf = np.where(bad, 0.2, 0.9).astype(np.float32)
    sparse = np.where(rng.random(gt.shape) < 0.3, gt, 0.0).astype(np.float32)  # mvs kept 30 %
    f = Frame(rgb=np.zeros((20, 30, 3), np.uint8), K=np.array([[20.0, 0, 15], [0, 20, 10], [0, 0, 1]]), T_wc=np.eye(4), depth=gt)
    base = {"mvs": {"depth": gt, "depth_sparse": sparse, "coverage": 1.0, "rgb": None}}
    m, _ = frame_metrics("depth_live", f, pred, None, base, None, conf)
    assert m["mvgd_confident"]["coverage"] == pytest.approx(m["mvs_confident"]["coverage"], abs=1e-3)
    assert m["mvgd_confident"]["abs_rel"] < 1e-6 < m["mvgd"]["abs_rel"]
    # the frame's sparsification: its most confident quarter and half are its exact pixels, three quarters are not
    assert m["mvgd"]["abs_rel_conf25"] < 1e-6 and m["mvgd"]["abs_rel_conf50"] < 0.02 < m["mvgd"]["abs_rel_conf75"] < m["mvgd"]["abs_rel"]
    plain = frame_metrics("depth_live", f, pred, None, base, None, None)[0]  # no confidence collected
    assert "mvgd_confident" not in plain and "abs_rel_conf25" not in plain["mvgd"]


def test_frame_metrics_without_valid_ground_truth_score_nothing_and_do_not_fail():
    from mvgd_core.data.types import Frame
    from mvgd_ros.eval_scoring import frame_metrics

    gt = np.zeros((4, 6), np.float32)
    f = Frame(rgb=np.zeros((4, 6, 3), np.uint8), K=np.array([[5.0, 0, 3], [0, 5, 2], [0, 0, 1]]), T_wc=np.eye(4), depth=gt)
    base = {"mvs": {"depth": gt + 1, "depth_sparse": gt + 1, "coverage": 1.0, "rgb": None}}
    m, _ = frame_metrics("depth_live", f, gt + 2, None, base, None, np.ones_like(gt))
    assert "mvgd" not in m and "mvgd_confident" not in m


def test_headline_prints_the_sparsification_only_when_there_is_one():
    def frame(conf):
        extra = {"abs_rel_conf25": 0.05, "abs_rel_conf50": 0.08, "abs_rel_conf75": 0.11} if conf else {}
        return FrameResult(1.0, "depth_live", {"mvgd": {"abs_rel": 0.2, "delta1": 0.7, **extra}}, regime="observable", observable_frac=0.9)

    from mvgd_core.report import regime_aggregate

    line = [x for x in headline({"regimes": regime_aggregate([frame(True)])}) if "sparsification" in x]
    assert line == ["  mvgd sparsification (observable medians): AbsRel of the most confident 25 % 0.050, 50 % 0.080, 75 % 0.110, all 0.200"]
    assert not [x for x in headline({"regimes": regime_aggregate([frame(False)])}) if "sparsification" in x]


def test_eval_runs_the_node_without_its_clock_skew_check_unless_asked():
    """mvgd-eval plays bags on wall time on purpose: the node is told so (clock_skew_warn_s 0), and
    the report's parameter values say what the node got; a user's --param still wins."""
    from types import SimpleNamespace

    from mvgd_ros.eval_node import EVAL_NODE_PARAMS, node_param_values

    assert "clock_skew_warn_s:=0.0" in EVAL_NODE_PARAMS
    assert node_param_values(SimpleNamespace(param=[])).clock_skew_warn_s == 0.0
    assert node_param_values(SimpleNamespace(param=["clock_skew_warn_s:=5.0"])).clock_skew_warn_s == 5.0
