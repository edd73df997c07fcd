"""training/tune_keyframes.py: it replays the node's keyframe policy as mvgd-eval feeds the node
(held-out frames never conditioned on, the live frame last, the first frame from itself alone), and
parses its variants like the other tuning scripts."""
import types

import numpy as np
import pytest

from mvgd_core.data.types import Frame
from mvgd_ros.keyframes import KeyframeConfig
from script_loader import load_script


def _walk(n=20, step=0.06):
    """A camera moving 6 cm per frame along x (every frame a keyframe at pose_distance 0.05)."""
    frames = []
    for i in range(n):
        T = np.eye(4)
        T[0, 3] = i * step
        frames.append(Frame(rgb=np.zeros((8, 8, 3), np.uint8), K=np.diag([8.0, 8.0, 1.0]), T_wc=T,
                            depth=np.ones((8, 8), np.float32), stamp=0.2 * i))
    return frames


class _Recorder:
    def __init__(self):
        self.calls = []

    def score(self, seq_id, frames, i, window, task="depth", refine_sources=None):
        self.calls.append((seq_id, i, list(window), task))
        return {"abs_rel": 0.1 * (i % 3), "delta1": 0.9, "regime": "observable" if i % 2 else "weak", "psnr": 20.0 + i}


def test_replays_the_node_policy_as_mvgd_eval_feeds_it():
    tk = load_script("training/tune_keyframes.py")
    frames = _walk()
    rec = _Recorder()
    args = types.SimpleNamespace(holdout_every=4, warmup=2, novel=False)
    out = tk.run_variant(rec, [frames], KeyframeConfig(pose_distance=0.05, max_views=4), args)
    from mvgd_ros.eval_scoring import holdout_indices

    held = holdout_indices(len(frames), 4, 2)
    live = [i for _, i, _, _ in rec.calls]
    assert held and not set(live) & held  # held-out frames are novel views, never scored as live
    assert live == [i for i in range(len(frames)) if i not in held]  # frame 0 too, from itself alone, as the node publishes it
    for _, i, window, task in rec.calls:
        assert window[-1] == i and len(window) <= 4 and not set(window) & held and task == "depth"
    assert out["frames"] == len(live) and out["observable"] == sum(i % 2 for i in live)
    assert out["abs_rel_obs"] == pytest.approx(np.median([0.1 * (i % 3) for i in live if i % 2]))


def test_novel_scores_the_held_out_frames_as_target_renders():
    """--novel: only the withheld frames, rendered as targets (task rgb, PSNR kept), from sent
    frames only; with a lag, from frames on both sides."""
    tk = load_script("training/tune_keyframes.py")
    frames = _walk()
    from mvgd_ros.eval_scoring import holdout_indices

    held = holdout_indices(len(frames), 4, 2)
    for lag in (0, 2):
        rec = _Recorder()
        out = tk.run_variant(rec, [frames], KeyframeConfig(pose_distance=0.05, max_views=4), types.SimpleNamespace(holdout_every=4, warmup=2, novel=True), lag)
        assert sorted(i for _, i, _, _ in rec.calls) == sorted(held) and all(t == "rgb" for *_, t in rec.calls)
        assert all(not set(w) & held for _, _, w, _ in rec.calls)
        assert all((max(w) > i) == (lag > 0) for _, i, w, _ in rec.calls)  # live: past views only
        assert out["psnr_all"] == pytest.approx(np.median([20.0 + i for i in held]))


def test_variants_parse_like_the_other_tuning_scripts():
    tk = load_script("training/tune_keyframes.py")
    assert tk.parse_variant("shipped") == ("shipped", KeyframeConfig())
    name, cfg = tk.parse_variant("optimal_baseline=0.3,max_views=4")
    assert (cfg.optimal_baseline, cfg.max_views, cfg.pose_distance) == (0.3, 4, KeyframeConfig().pose_distance)
    with pytest.raises(ValueError, match="pose_distance"):
        tk.parse_variant("baseline=0.3")


def test_procedural_sequences_follow_the_chosen_camera_motion():
    tk = load_script("training/tune_keyframes.py")
    fwd, = tk.load_set("procedural", types.SimpleNamespace(sequences=1, trajectory="forward"))
    wide, = tk.load_set("procedural", types.SimpleNamespace(sequences=1, trajectory="wide"))
    assert len(fwd) == len(wide) == 48 and fwd[0].frame_id == wide[0].frame_id  # same tuning seed, same scene
    assert not np.allclose(fwd[-1].T_wc, wide[-1].T_wc)  # another path through it
