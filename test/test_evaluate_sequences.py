"""training/evaluate_sequences.py: it scores the live frames the node would answer (its keyframe
policy and lag), pairs MVGD with `mvs` on the same views, leaves out what `mvs` could not
estimate, and runs end to end on a held-out sequence with the shipped model."""
import json

import numpy as np
import pytest

from mvgd_core.data.types import Frame
from script_loader import load_script
from test_tune_keyframes import _walk


class _Scorer:
    """Records calls; MVGD AbsRel 0.1 on odd frames (observable), `mvs` 0.3, none at frame 3."""

    def __init__(self):
        self.calls, self.live_depth, self.fused = [], {}, []

    def score(self, seq_id, frames, i, window, task="depth", refine_sources=None, view_depth=None, tag=None):
        self.calls.append(("mvgd", seq_id, i, list(window), refine_sources))
        if task == "depth":
            self.live_depth[self._live_key(seq_id, i, window, refine_sources)] = (f"depth of {i}", None)
        else:
            self.fused.append((i, list(window), view_depth, tag))
        return {"abs_rel": 0.1, "delta1": 0.9, "regime": "observable" if i % 2 else "weak"}

    def _live_key(self, *key):
        from sequence_replay import Scorer

        return Scorer._live_key(*key)

    def kept_depth(self, seq_id, i, window, refine_sources):
        from sequence_replay import Scorer

        return Scorer.kept_depth(self, seq_id, i, window, refine_sources)  # the real lookup over this fake's live_depth

    def mvs(self, seq_id, frames, i, window):
        self.calls.append(("mvs", seq_id, i, list(window), None))
        nan = i == 3
        return {"abs_rel": np.nan if nan else 0.3, "delta1": np.nan if nan else 0.6, "coverage": 0.0 if nan else 0.5}


def _pose_x(x: float) -> np.ndarray:
    T = np.eye(4)
    T[0, 3] = x
    return T


class _Bar:
    n = 0

    def update(self, k=1):
        self.n += k


def test_scores_each_answer_with_mvs_on_the_same_views():
    es = load_script("training/evaluate_sequences.py")
    seqs = [_walk(), _walk(12)]
    for lag in (0, 2):
        jobs = es.answers(seqs, lag)
        from sequence_replay import replay
        from mvgd_ros.keyframes import KeyframeConfig

        assert jobs == [(s, i, w) for s, f in enumerate(seqs) for i, w in replay(f, KeyframeConfig(), lag)]
        sc, bar = _Scorer(), _Bar()
        rows = es.score_set(sc, seqs, jobs, lag, True, bar)
        assert bar.n == len(jobs) == len(rows)
        mvgd = [c for c in sc.calls if c[0] == "mvgd"]
        mvs = [c for c in sc.calls if c[0] == "mvs"]
        assert [c[1:4] for c in mvgd] == [c[1:4] for c in mvs] == [(s, i, w) for s, i, w in jobs]  # same frames, same views
        assert {c[4] for c in mvgd} == {5 if lag else None}  # the lag's refinement sources, as the node's renderer
        assert all(w[-1] == i for _, i, w in jobs)  # the live frame last, as the node
        assert any(max(w) > i for _, i, w in jobs) == (lag > 0)  # lagged: newer views too
    assert "mvs_abs_rel" not in es.score_set(_Scorer(), seqs, jobs[:1], 0, False, _Bar())[0]


def test_summary_medians_pairs_and_leaves_out_what_mvs_missed():
    es = load_script("training/evaluate_sequences.py")
    rows = es.score_set(_Scorer(), [_walk()], es.answers([_walk()], 0), 0, True, _Bar())
    s = es.summary(rows)
    obs = [r for r in rows if r["regime"] == "observable"]
    assert s["frames"] == len(rows) and s["observable"] == len(obs)
    assert s["abs_rel_obs"] == pytest.approx(0.1) and s["mvs_abs_rel_obs"] == pytest.approx(0.3)  # frame 3's NaN left out
    assert s["vs_mvs_abs_rel"]["n"] == len(obs) - 1 and s["vs_mvs_abs_rel"]["verdict"] == "B better"  # B = MVGD, lower AbsRel
    assert s["vs_mvs_delta1"]["verdict"] == "B better"
    for r in rows:
        r["mvs_abs_rel"], r["mvs_delta1"] = 0.05, 0.99
    s = es.summary(rows)
    assert s["vs_mvs_abs_rel"]["verdict"] == "A better" and s["vs_mvs_delta1"]["verdict"] == "A better"
    assert "| 0.100 / 0.900 [0.900, 0.900] | 0.050 / 0.990 |" in es.table({"walk": {0: {"live": s}}})


def test_virtual_views_fuse_the_live_depth_of_older_views_only():
    """Target poses are rendered (task rgb) with the live depth each view got at the same lag, as
    the node's ViewDepths holds it when the target leaves the queue: views newer than the target
    have none yet."""
    es = load_script("training/evaluate_sequences.py")
    seqs = [_walk()]
    for lag in (0, 2):
        sc = _Scorer()
        live_jobs = es.answers(seqs, lag)
        es.score_set(sc, seqs, live_jobs, lag, False, _Bar())
        targets = es.answers(seqs, lag, novel=True)
        rows = es.score_set(sc, seqs, targets, lag, False, _Bar(), {(s, i): w for s, i, w in live_jobs})
        assert len(rows) == len(targets) == len(sc.fused) > 0
        newer = 0
        for i, window, views, tag in sc.fused:
            assert tag == ("fused", lag) and i not in window and len(views) == len(window)
            for j, v in zip(window, views):
                had = j < i and any(k == j for _, k, _ in live_jobs)  # frame 0 alone got no live depth
                assert v == ((f"depth of {j}", None) if had else None)
                newer += j > i
        assert (newer > 0) == (lag > 0)


def test_held_out_seeds_are_no_one_elses():
    es = load_script("training/evaluate_sequences.py")
    seeds = set(es.SEQUENCE_SEEDS.values())
    assert len(seeds) == len(es.SEQUENCE_SEEDS)
    taken = {7, 2_000_000, 2_000_001} | set(range(6_000_001, 6_000_400))  # demo bag, evaluation tables, tuning sets
    assert not {s + k for s in seeds for k in range(100)} & taken


def test_a_bag_without_depth_is_refused(tmp_path):
    from mvgd_core.data.rosbag_io import write_bag

    es = load_script("training/evaluate_sequences.py")
    frames = [Frame(rgb=np.zeros((8, 8, 3), np.uint8), K=np.diag([8.0, 8.0, 1.0]), T_wc=np.eye(4), stamp=0.1 * i) for i in range(3)]
    write_bag(frames, tmp_path / "nodepth", stamp_offset=10.0)
    with pytest.raises(SystemExit, match="evaluate_sequences: .*depth"):
        es.bag_sets([str(tmp_path / "nodepth")])
    with pytest.raises(SystemExit, match="evaluate_sequences: "):
        es.bag_sets([str(tmp_path / "missing")])


def test_real_sets_read_the_held_out_quarter_only(monkeypatch):
    es = load_script("training/evaluate_sequences.py")
    monkeypatch.setitem(es.REAL, "tabletop", "no/such/folder|nor/this")
    with pytest.raises(SystemExit, match="none of no/such/folder"):
        es.real_sets(["tabletop"])
    path = next((es.ROOT / p for p in es.REAL["hololens"].split("|") if (es.ROOT / p).is_dir()), None)
    if path is None:
        pytest.skip("the HoloLens walk is not here (a fresh clone has only its bag)")
    from mvgd_core.data.deepvideomvs import read_deepvideomvs

    (name, [frames]), = es.real_sets(["hololens"]).items()
    assert name.startswith("hololens held-out") and len(frames) == 94  # frames 279-372, never trained on
    first = read_deepvideomvs(path, indices=[279])[0]
    assert np.allclose(frames[0].T_wc, first.T_wc) and frames[0].depth is not None


def test_end_to_end_on_a_held_out_sequence(tmp_path, monkeypatch, capsys):
    es = load_script("training/evaluate_sequences.py")
    from mvgd_core.data.make_bag import PROCEDURAL

    monkeypatch.setitem(PROCEDURAL, "num_frames", 10)
    out = tmp_path / "seq.json"
    assert es.main(["--trajectories", "forward", "wide", "--sequences", "1", "--lookahead", "0", "--no-mvs", "--novel", "--quiet", "--threads", "1",
                    "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    seq = es.procedural_sets(["forward"], 1)["procedural forward"]
    for cam, novel in (("live", False), ("virtual", True)):
        s = res["results"]["procedural forward"]["0"][cam]
        assert s["frames"] == len(s["rows"]) == len(es.answers(seq, 0, novel)) > 0
        assert all(0 <= r["abs_rel"] < 10 and 0 <= r["delta1"] <= 1 for r in s["rows"])
        assert all(("psnr" in r) == novel for r in s["rows"])
    first = [res["results"][f"procedural {k}"]["0"]["live"]["rows"][0] for k in ("forward", "wide")]
    assert first[0]["frame"] == first[1]["frame"] == 0 and first[0]["abs_rel"] != first[1]["abs_rel"]  # two scenes, not one cached answer
    assert res["seeds"] == {k: es.SEQUENCE_SEEDS[k] for k in ("forward", "wide")} and "--novel" in res["command"]
    printed = capsys.readouterr().out
    assert "| procedural forward | 0 | live |" in printed and "| procedural forward | 0 | virtual |" in printed
    with pytest.raises(SystemExit):
        es.main(["--trajectories", "--out", str(out)])  # nothing to evaluate
    fig = tmp_path / "live.png"
    assert es.main(["--from-json", str(out), "--figure", str(fig)]) == 0  # redrawn from the JSON, nothing evaluated
    from PIL import Image

    assert Image.open(fig).size[0] > 200 and "| procedural wide | 0 | live |" in capsys.readouterr().out


def test_scene_scaled_keyframes_replay_with_the_predicted_depth(tmp_path, monkeypatch):
    es = load_script("training/evaluate_sequences.py")
    from mvgd_core.data.make_bag import PROCEDURAL

    monkeypatch.setitem(PROCEDURAL, "num_frames", 10)
    runs = {}
    for ref in ("0", "50"):  # 50 m: every indoor scene is "close", thresholds shrink with its depth
        out = tmp_path / f"ref{ref}.json"
        assert es.main(["--trajectories", "forward", "--sequences", "1", "--lookahead", "0", "--no-mvs", "--novel", "--quiet",
                        "--threads", "1", "--keyframe-reference-depth", ref, "--out", str(out)]) == 0
        runs[ref] = json.loads(out.read_text())["results"]["procedural forward"]["0"]
    for cam in ("live", "virtual"):
        assert len(runs["0"][cam]["rows"]) == len(runs["50"][cam]["rows"]) > 0  # the same answers ...
    # the views follow the depth fed back (a walk 0.05 m a frame; the scene 0.5 m away vs. a room)
    from mvgd_ros.keyframes import KeyframeConfig

    walk = [Frame(rgb=np.zeros((8, 8, 3), np.uint8), K=np.diag([8.0, 8.0, 1.0]), T_wc=_pose_x(0.05 * i), stamp=0.1 * i,
                  depth=np.ones((8, 8), np.float32)) for i in range(24)]
    cfg, fed = KeyframeConfig(reference_depth=2.5), []

    def depth_of(s, frames):
        return lambda i, views: fed.append(i) or np.full((4, 4), 0.5)

    near, room = es.answers([walk], 0, False, cfg, depth_of), es.answers([walk], 0, False, cfg)
    assert fed == [i for _, i, _ in near] and [i for _, i, _ in near] == [i for _, i, _ in room]
    assert sum(max(i - j for j in w) for _, i, w in near) < sum(max(i - j for j in w) for _, i, w in room)  # nearer views
    with pytest.raises(SystemExit):
        es.parse_args(["--trajectories", "forward", "--keyframe-reference-depth", "-1"])


def test_fusion_and_refine_settings_are_parsed_and_bad_ones_refused(capsys):
    es = load_script("training/evaluate_sequences.py")
    assert es.parse_args(["--trajectories", "forward", "--fusion-settings", "splat_radius=1"]).fusion.splat_radius == 1
    assert es.parse_args(["--trajectories", "forward"]).fusion.splat_radius == 0
    with pytest.raises(SystemExit):
        es.parse_args(["--trajectories", "forward", "--fusion-settings", "splat_radius=-2"])
    assert "splat_radius must be >= 0" in capsys.readouterr().err
    a = es.parse_args(["--trajectories", "forward", "--refine-settings", "hypotheses=11"])
    assert a.refine.hypotheses == 11 and a.refine.enabled and es.parse_args(["--trajectories", "forward"]).refine.hypotheses == 7
    with pytest.raises(SystemExit):
        es.parse_args(["--trajectories", "forward", "--refine-settings", "no_such_field=1"])
    assert "--refine-settings" in capsys.readouterr().err


def test_mvs_needs_two_views_and_scores_the_live_camera_from_them():
    from mvgd_core.data.render import render_sequence
    from sequence_replay import Scorer

    frames = render_sequence(5, 4, 48, 64, trajectory="forward")
    sc = Scorer(None, (48, 64))
    alone = sc.mvs(0, frames, 0, [0])
    assert np.isnan(alone["abs_rel"]) and alone["coverage"] == 0.0  # the first frame's single-view answer: no stereo
    both = sc.mvs(0, frames, 3, [1, 2, 3])
    assert 0 <= both["abs_rel"] < 1 and 0 < both["coverage"] <= 1


def test_scores_in_the_camera_the_node_publishes():
    """The node publishes at the model's height and the image's aspect (96x144 for a 3:2 camera);
    mvgd-eval scores there, so the replay does too: the same image, resampled, with K scaled."""
    from sequence_replay import Scorer

    sc = Scorer(None, (96, 128))
    K = np.array([[240.0, 0, 134.5], [0, 240.0, 89.5], [0, 0, 1]])
    big = Frame(rgb=np.full((180, 270, 3), 7, np.uint8), K=K, T_wc=np.eye(4), depth=np.full((180, 270), 2.0, np.float32))
    g, K_out, hw = sc.output_camera(big)
    assert hw == (96, 144) and g.rgb.shape == (96, 144, 3) and g.depth.shape == hw
    assert K_out[0, 0] == pytest.approx(240.0 * 144 / 270) and np.allclose(g.depth, 2.0)
    same = Frame(rgb=np.arange(96 * 128 * 3, dtype=np.uint8).reshape(96, 128, 3), K=K, T_wc=np.eye(4))
    g, K_out, hw = sc.output_camera(same)
    assert hw == (96, 128) and np.array_equal(g.rgb, same.rgb) and np.array_equal(K_out, K)  # already the published camera
