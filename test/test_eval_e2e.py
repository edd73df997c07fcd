"""mvgd-eval end to end over real DDS: a tiny bag from our writer, a tiny random checkpoint,
the real `mvgd_node` subprocess, and the report it writes. Also the clear errors for bags
without images / depth. Deadlines only turn hangs into failures; nothing here is timed."""
import json
import os
import shutil

import pytest

pytest.importorskip("rclpy")

from mvgd_core.data.rosbag_io import write_bag  # noqa: E402
from mvgd_ros import eval as E  # noqa: E402
from mvgd_ros.eval_bag import detect_topics  # noqa: E402


@pytest.fixture(scope="module")
def tiny_bag(tmp_path_factory):
    from mvgd_core.data.render import render_sequence

    frames = render_sequence(seed=3, num_frames=8, height=24, width=32, trajectory="forward")
    return write_bag(frames, tmp_path_factory.mktemp("bag") / "tiny", storage="mcap", stamp_offset=100.0)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    import torch

    from mvgd_core.checkpoint import make_state, save_checkpoint
    from mvgd_core.diffusion import DiffusionConfig
    from mvgd_core.model import MVGD, PRESETS

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, make_state(MVGD(PRESETS["tiny"]), DiffusionConfig(), step=0))
    return path


def _args(bag, ckpt, out, *extra):
    return [str(bag), "--model", str(ckpt), "--out", str(out), "--quiet", "--param", "steps:=2",
            "--first-timeout", "40", "--timeout", "20", "--sweep-planes", "16", *extra]


@pytest.mark.ros
def test_eval_end_to_end_writes_report(tiny_bag, tiny_ckpt, tmp_path, capsys):
    if not (shutil.which("mvgd_node") or os.path.exists(os.path.join(os.path.dirname(os.sys.executable), "mvgd_node"))):
        pytest.skip("mvgd_node console script not installed (make venv)")
    out = tmp_path / "report"
    rc = E.main(_args(tiny_bag, tiny_ckpt, out, "--holdout-every", "3", "--train-median", "2.0"))
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    assert "report:" in printed.out and "depth@live: 6 frames" in printed.out
    assert all(f"  {m} " in printed.out for m in ("mvgd", "plane_sweep", "const_gt_median", "const_train_median"))
    m = json.loads((out / "metrics.json").read_text())
    agg = m["aggregate"]
    # held out: frames 4 and 7 (warm-up 2, every 3rd); the other 6 go to the node
    assert m["frames_info"]["frames"] == 8 and m["frames_info"]["held_out"] == 2
    live = agg["depth_live"]
    assert live["mvgd"]["n"] == 6 and 0 <= live["mvgd"]["delta1"] <= 1 and live["mvgd"]["abs_rel"] >= 0
    assert {"plane_sweep", "reprojection", "const_gt_median", "const_train_median"} <= set(live)  # every number has a reference
    assert "abs_rel_median" in live["mvgd"] and "sq_rel" in live["mvgd"] and 0 <= live["mvgd"]["coverage"] <= 1
    reg = m["regimes"]["depth_live"]
    assert sum(reg[r]["mvgd"]["n"] for r in ("observable", "weak", "none")) == 6
    assert all(f["regime"] in ("observable", "weak", "none") for f in m["frames"] if f["kind"] == "depth_live")
    assert m["references_info"]["const_train_median"].startswith("2.000 m: --train-median")
    novel = agg["novel"]
    assert novel["mvgd"]["n"] == 2 and "psnr" in novel["mvgd"] and "ssim" in novel["mvgd"]
    assert "psnr" in novel["reprojection"] and "abs_rel" in novel["plane_sweep"]
    assert m["latency"]["n"] == 6 and m["latency"]["p50_ms"] > 0
    assert (out / "overview.png").is_file() and (out / "index.html").is_file()
    pics = [f["picture"] for f in m["frames"]]
    assert len(pics) == 8 and all((out / p).is_file() for p in pics)
    text = (out / "README.md").read_text()
    assert "Depth at the live camera" in text and "Latency" in text and "Observable regime (the headline)" in text
    assert (out / E.REPORT_MARKER).is_file() and "`mvgd-eval " in text  # the command next to the tables
    log = (out / "node.log").read_text()
    assert "deprecated" not in log  # subscribed to <base>/image, not the pre-0.2 names
    assert "totals:" in log and "Failed to publish" not in log  # a clean Ctrl-C: no log call on a shut-down context


@pytest.mark.ros
def test_eval_with_fixed_lag_depth_gets_every_frame(tiny_bag, tiny_ckpt, tmp_path, capsys):
    """lookahead_frames: the gate waits for the depth of the image sent two earlier, the last two
    come after lookahead_max_wait_s; every sent frame is scored, none missed."""
    if not (shutil.which("mvgd_node") or os.path.exists(os.path.join(os.path.dirname(os.sys.executable), "mvgd_node"))):
        pytest.skip("mvgd_node console script not installed (make venv)")
    out = tmp_path / "report"
    rc = E.main(_args(tiny_bag, tiny_ckpt, out, "--holdout-every", "0", "--no-baselines", "--max-pictures", "0",
                      "--param", "lookahead_frames:=2", "--param", "keyframe_pose_distance:=0.0"))
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    m = json.loads((out / "metrics.json").read_text())
    assert m["aggregate"]["depth_live"]["mvgd"]["n"] == 8 and m["latency"]["n"] == 8
    assert not any("no output within the gate timeout" in n for n in m.get("notes", [])), m.get("notes")


@pytest.fixture(scope="module")
def tiny_matching_ckpt(tmp_path_factory):
    from mvgd_core.checkpoint import make_state, save_checkpoint
    from mvgd_core.diffusion import DiffusionConfig
    from tiny_models import tiny_matching_model

    path = tmp_path_factory.mktemp("ckpt") / "tiny_matching.pt"
    save_checkpoint(path, make_state(tiny_matching_model(jitter=0.0), DiffusionConfig(), step=0))
    return path


@pytest.mark.ros
def test_eval_scores_mvgd_at_the_coverage_mvs_keeps(tiny_bag, tiny_matching_ckpt, tmp_path, capsys):
    """A model with a confidence: mvgd-eval collects the confidence the node publishes beside each
    depth map and adds the "mvgd (confident px)" row, as many pixels as mvs kept on each frame."""
    if not (shutil.which("mvgd_node") or os.path.exists(os.path.join(os.path.dirname(os.sys.executable), "mvgd_node"))):
        pytest.skip("mvgd_node console script not installed (make venv)")
    out = tmp_path / "report"
    rc = E.main(_args(tiny_bag, tiny_matching_ckpt, out, "--holdout-every", "0", "--max-pictures", "0", "--rgb-out", ""))
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    live = json.loads((out / "metrics.json").read_text())["aggregate"]["depth_live"]
    assert live["mvgd_confident"]["n"] >= 1 and live["mvgd_confident"]["n"] == live["mvs_confident"]["n"]
    assert live["mvgd_confident"]["coverage"] == pytest.approx(live["mvs_confident"]["coverage"], abs=0.02)
    assert "mvgd (confident px)" in printed.out
    assert 0 <= live["mvgd"]["abs_rel_conf25"] and live["mvgd"]["n"] == 8  # each frame's sparsification points


@pytest.mark.ros
def test_eval_node_that_cannot_start_reports_its_stderr(tiny_bag, tmp_path, capsys):
    bad = tmp_path / "not_a_checkpoint.pt"
    bad.write_bytes(b"garbage")
    out = tmp_path / "r"  # an earlier report of ours: a failed run must not delete it
    E.prepare_out_dir(out)
    (out / "metrics.json").write_text('{"earlier": true}')
    rc = E.main(_args(tiny_bag, bad, out, "--startup-timeout", "60"))
    err = capsys.readouterr().err
    assert rc == 2 and "node exited" in err and "checkpoint" in err
    assert (out / "metrics.json").read_text() == '{"earlier": true}'


def test_eval_bag_without_depth_or_images(tmp_path, capsys):
    from mvgd_core.data.render import render_sequence

    frames = render_sequence(seed=1, num_frames=3, height=8, width=8, trajectory="forward")
    for f in frames:
        f.depth = None
    bag = write_bag(frames, tmp_path / "nodepth", storage="sqlite3", stamp_offset=100.0)
    args = E.build_parser().parse_args([str(bag)])
    detect_topics(bag, args)
    assert args.image_topic == "/camera/color/image_raw" and args.depth_topic == ""  # evaluate what is possible
    rc = E.main([str(bag), "--image-topic", "/nope", "--out", str(tmp_path / "r")])
    assert rc == 2 and "--image-topic /nope is not in the bag" in capsys.readouterr().err


def test_collector_close_joins_its_spin_thread():
    """mvgd-eval's in-process collector: close() returns only after its spin thread has left
    (once, a spin thread still running after the executor shut down kept a core busy and the
    evaluation waiting), and a second collector in the same process starts cleanly."""
    import threading
    from types import SimpleNamespace

    from mvgd_ros.eval_node import Collector

    args = SimpleNamespace(depth_out="/mvgd_test/depth", rgb_out="", virtual_depth_out="", target_pose_topic="/mvgd_test/target")
    before = set(threading.enumerate())
    for _ in range(2):
        col = Collector(args)
        assert col.spinner._thread.is_alive()
        col.close()
        assert not col.spinner._thread.is_alive()
        assert not col.ctx.ok()
    assert [t.name for t in set(threading.enumerate()) - before if t.is_alive()] == []
