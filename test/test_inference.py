"""MVGDPredictor: checkpoint -> Prediction, input validation, SSN invariances through the model."""
import numpy as np
import pytest
import torch

from mvgd_core.cameras import look_at
from mvgd_core.checkpoint import make_state, save_checkpoint
from mvgd_core.data.types import Frame, MultiViewBatch
from mvgd_core.diffusion import DiffusionConfig
from mvgd_core.inference import MVGDPredictor, Prediction
from mvgd_core.model import MVGD, PRESETS
from geometry_helpers import random_rigid


def _random_model(seed=0):
    torch.manual_seed(seed)
    m = MVGD(PRESETS["tiny"])
    with torch.no_grad():  # non-trivial weights: a fresh model outputs exactly 0 everywhere
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return m


@pytest.fixture(scope="module")
def predictor():
    return MVGDPredictor(_random_model(), DiffusionConfig(), device="cpu", steps=3)


def _frames(n=2, hw=(30, 40), scale=1.0, rigid=np.eye(4)):
    rng = np.random.default_rng(0)
    K = np.array([[35.0, 0, 19.5], [0, 35.0, 14.5], [0, 0, 1]])
    out = []
    for i in range(n):
        T = rigid @ look_at([0.4 * i * scale, -2.0 * scale, 0.3 * scale], [0, 0, 0.3 * scale])
        out.append(Frame(rgb=rng.integers(0, 255, (*hw, 3), dtype=np.uint8), K=K, T_wc=T, frame_id=f"f{i}"))
    return out, K




def test_predict_depth_and_rgb_shapes(predictor):
    frames, K = _frames()
    tgt_T = look_at([0.2, -2.0, 0.3], [0, 0, 0.3])
    out = predictor.predict(frames, K, tgt_T, (30, 40), task="depth", seed=0)
    assert isinstance(out, Prediction) and out.rgb is None
    assert out.depth.shape == (30, 40) and out.depth.dtype == np.float32
    assert np.isfinite(out.depth).all() and (out.depth > 0).all()
    assert out.K.shape == (3, 3) and out.scale > 0
    out = predictor.predict(frames, K, tgt_T, (30, 40), task="rgb", seed=0)
    assert out.rgb.shape == (30, 40, 3) and out.rgb.dtype == np.uint8
    assert out.depth.shape == (30, 40)  # view synthesis (default) predicted the view's depth too
    assert predictor.predict(frames, K, tgt_T, (30, 40), task="rgb", seed=0, synthesize=False).depth is None


def test_predict_is_deterministic_per_seed(predictor):
    frames, K = _frames()
    a = predictor.predict(frames, K, frames[0].T_wc, (30, 40), seed=5).depth
    b = predictor.predict(frames, K, frames[0].T_wc, (30, 40), seed=5).depth
    c = predictor.predict(frames, K, frames[0].T_wc, (30, 40), seed=6).depth
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_scene_scale_scales_depth(predictor):
    """SSN: scaling every translation by s scales the output depth by s (same seed)."""
    frames, K = _frames(scale=1.0)
    frames3, _ = _frames(scale=3.0)
    tgt = look_at([0.2, -2.0, 0.3], [0, 0, 0.3])
    tgt3 = look_at([0.6, -6.0, 0.9], [0, 0, 0.9])
    d1 = predictor.predict(frames, K, tgt, (30, 40), seed=1)
    d3 = predictor.predict(frames3, K, tgt3, (30, 40), seed=1)
    assert d3.scale == pytest.approx(3 * d1.scale, rel=1e-5)
    np.testing.assert_allclose(d3.depth, 3 * d1.depth, rtol=1e-3)


def test_rigid_motion_leaves_prediction_unchanged(predictor):
    frames, K = _frames()
    M = random_rigid(3, 10)
    moved, _ = _frames(rigid=M)
    tgt = look_at([0.2, -2.0, 0.3], [0, 0, 0.3])
    a = predictor.predict(frames, K, tgt, (30, 40), seed=2)
    b = predictor.predict(moved, K, M @ tgt, (30, 40), seed=2)
    np.testing.assert_allclose(b.depth, a.depth, rtol=1e-3)


def test_single_view_is_target_degenerate_scale(predictor):
    frames, K = _frames(n=1)
    out = predictor.predict(frames, K, frames[0].T_wc, (30, 40), seed=0)
    assert np.isfinite(out.depth).all() and out.scale == pytest.approx(0.1)  # ssn_min_scale fallback


def test_observable_share_says_whether_views_see_depth(predictor):
    """Prediction.observable_share: exactly 0 with one view or views that only turn (no parallax),
    above 0 when the views translate across the scene; None for RGB."""
    moving, K = _frames(n=3)
    out = predictor.predict(moving, K, moving[0].T_wc, (30, 40), seed=0)
    assert out.observable_share > 0.1  # the tiny random model at 16x16: some parallax; exactly 0 below
    one = predictor.predict(moving[:1], K, moving[0].T_wc, (30, 40), seed=0)
    assert one.observable_share == 0.0
    turning = [Frame(rgb=f.rgb, K=K, T_wc=moving[0].T_wc @ _yaw(10.0 * i), frame_id=f.frame_id) for i, f in enumerate(moving)]
    assert predictor.predict(turning, K, turning[0].T_wc, (30, 40), seed=0).observable_share == 0.0
    assert predictor.predict(moving, K, moving[0].T_wc, (30, 40), task="rgb", seed=0).observable_share is None


def _yaw(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    T = np.eye(4)
    T[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]  # about the optical y axis: a camera turning in place
    return T


def test_bad_inputs_raise(predictor):
    frames, K = _frames()
    T = frames[0].T_wc
    with pytest.raises(ValueError, match="empty"):
        predictor.predict([], K, T, (30, 40))
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        predictor.predict(frames, np.eye(4), T, (30, 40))
    bad = T.copy()
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        predictor.predict(frames, K, bad, (30, 40))
    with pytest.raises(ValueError, match="task"):
        predictor.predict(frames, K, T, (30, 40), task="normals")
    with pytest.raises(ValueError, match="tgt_hw"):
        predictor.predict(frames, K, T, (0, 40))


def test_from_checkpoint_and_predict_batch(tmp_path):
    m = _random_model(1)
    path = tmp_path / "m.pt"
    save_checkpoint(path, make_state(m, DiffusionConfig(), step=3))
    p = MVGDPredictor.from_checkpoint(path, device="auto", steps=2)
    assert p.image_size == PRESETS["tiny"].image_size
    frames, K = _frames(hw=(16, 16))
    Kt = torch.tensor(K, dtype=torch.float32)
    B, N = 2, 2
    batch = MultiViewBatch(
        cond_rgb=torch.rand(B, N, 3, 32, 32), cond_K=Kt.expand(B, N, 3, 3),
        cond_T_wc=torch.stack([torch.tensor(f.T_wc, dtype=torch.float32) for f in frames]).expand(B, N, 4, 4),
        tgt_rgb=torch.rand(B, 3, 32, 32), tgt_depth=torch.ones(B, 32, 32), tgt_K=Kt.expand(B, 3, 3),
        tgt_T_wc=torch.tensor(frames[1].T_wc, dtype=torch.float32).expand(B, 4, 4))
    d = p.predict_batch(batch, "depth", seed=0)
    assert d.shape == (B, 32, 32) and torch.isfinite(d).all() and (d > 0).all()
    rgb = p.predict_batch(batch, "rgb", seed=0)
    assert rgb.shape == (B, 3, 32, 32) and rgb.min() >= 0 and rgb.max() <= 1


def test_matching_model_predicts_with_confidence(tmp_path):
    """A matching checkpoint round-trips; Prediction and predict_batch carry a confidence in [0, 1]
    at the requested size; a raymap-only model gives None."""
    from tiny_models import TINY_MATCHING as cfg, tiny_matching_model

    m = tiny_matching_model()
    path = tmp_path / "match.pt"
    save_checkpoint(path, make_state(m, DiffusionConfig(match_weight=1.0), step=1))
    p = MVGDPredictor.from_checkpoint(path, device="cpu", steps=2)
    assert p.model.cfg == cfg
    frames, K = _frames(3)
    out = p.predict(frames, K, frames[1].T_wc, (30, 40), task="depth")
    assert out.depth.shape == (30, 40) and np.isfinite(out.depth).all() and (out.depth > 0).all()
    assert out.confidence is not None and out.confidence.shape == (30, 40) and out.confidence.dtype == np.float32
    assert out.confidence.min() >= 0 and out.confidence.max() <= 1 + 1e-6
    quiet = p.predict(frames, K, frames[1].T_wc, (30, 40), task="depth", with_confidence=False)  # nobody wants it: not computed
    assert quiet.confidence is None and np.array_equal(quiet.depth, out.depth)
    assert p.predict(frames, K, frames[1].T_wc, (30, 40), task="rgb").rgb.shape == (30, 40, 3)
    assert MVGDPredictor(_random_model(), device="cpu", steps=1).predict(frames, K, frames[1].T_wc, (30, 40)).confidence is None


def test_refine_sources_limits_the_live_refinement_for_one_call(predictor, monkeypatch):
    """predict(refine_sources=k) hands the refinement max_sources=k for that call only (the node's
    lookahead uses it); None keeps RefineConfig's."""
    import mvgd_core.inference as inference

    seen = []
    real = inference.refine_batch

    def spy(*args):
        seen.append(args[-1].max_sources)
        return real(*args)

    monkeypatch.setattr(inference, "refine_batch", spy)
    frames, K = _frames(n=3)
    for k in (None, 5, None):
        predictor.predict(frames, K, frames[0].T_wc, (30, 40), seed=0, refine=True, refine_sources=k)
    default = predictor.refine.max_sources
    assert seen == [default, 5, default] and default != 5
