"""mvgd_core.view_cache and MVGDPredictor.predict's use of it: per-frame work (model-size image,
matching features) is reused only for the very same frame, and never changes a prediction."""

import numpy as np
import pytest
import torch

from mvgd_core.cameras import look_at
from mvgd_core.data.types import Frame
from mvgd_core.diffusion import DiffusionConfig
from mvgd_core.inference import MVGDPredictor
from mvgd_core.view_cache import CachedView, ViewCache
from tiny_models import tiny_matching_model


def _frame(i, hw=(30, 40), seed=0):
    rng = np.random.default_rng(seed + i)
    K = np.array([[35.0, 0, 19.5], [0, 35.0, 14.5], [0, 0, 1]])
    return Frame(rgb=rng.integers(0, 255, (*hw, 3), dtype=np.uint8), K=K, T_wc=look_at([0.3 * i, -2.0, 0.3], [0, 0, 0.3]),
                 stamp=0.1 * i, frame_id="cam")


def _view(v=0.0):
    return CachedView(torch.full((3, 2, 2), v), torch.eye(3, dtype=torch.float64), None)


def test_cache_answers_only_for_the_same_unchanged_frame():
    cache = ViewCache(4)
    f = _frame(0)
    batch = torch.ones(2, 3, 2, 2)
    cache.put(f, CachedView(batch[1], torch.eye(3, dtype=torch.float64), None))  # a slice of a batch ...
    kept = cache.get(f).rgb
    assert kept[0, 0, 0] == 1.0 and kept.untyped_storage().size() < batch.untyped_storage().size()  # ... kept as a copy of its own
    assert cache.get(_frame(0)) is None  # equal content, another object: the cache keys identity only
    f.rgb = f.rgb.copy()  # a new image array in the same frame
    assert cache.get(f) is None
    cache.put(f, _view(2.0))
    f.K = f.K * 1.01  # new intrinsics
    assert cache.get(f) is None
    assert (cache.hits, cache.misses) == (1, 3)


def test_cache_is_a_bounded_lru_and_forgets_dead_frames():
    cache = ViewCache(2)
    a, b, c = _frame(0), _frame(1), _frame(2)
    cache.put(a, _view())
    cache.put(b, _view())
    assert cache.get(a) is not None  # a is now the most recent
    cache.put(c, _view())
    assert len(cache) == 2 and cache.get(b) is None and cache.get(a) is not None and cache.get(c) is not None
    del a
    d = _frame(3)  # may reuse the dead frame's id: still a miss
    assert cache.get(d) is None
    with pytest.raises(ValueError):
        ViewCache(-1)
    off = ViewCache(0)
    off.put(d, _view())
    assert len(off) == 0


def test_views_makes_only_the_missing_frames_in_one_call():
    cache, made = ViewCache(8), []

    def make(frames):
        made.append([f.stamp for f in frames])
        return [_view(f.stamp) for f in frames]

    fr = [_frame(i) for i in range(4)]
    cache.views(fr[:3], make)
    out = cache.views(fr[1:], make)
    assert made == [[0.0, 0.1, 0.2], [0.30000000000000004]]
    assert [float(v.rgb[0, 0, 0]) for v in out] == pytest.approx([0.1, 0.2, 0.3])


@pytest.fixture(scope="module")
def matching_predictor():
    return MVGDPredictor(tiny_matching_model(), DiffusionConfig(), device="cpu", steps=1)


def test_predict_from_a_sliding_window_is_unchanged_by_the_cache(matching_predictor, monkeypatch):
    """A node's stream: each prediction sees the last 4 frames, the newest the live camera. With the
    cache, depth, confidence and RGB equal those computed without it (capacity 0: every view of
    every `sample` call encoded, as before the cache), and the feature encoder sees each frame once."""
    p = matching_predictor
    frames = [_frame(i) for i in range(7)]
    encoded = []
    orig = p.model.features.forward
    monkeypatch.setattr(p.model.features, "forward", lambda x: (encoded.append(x.shape[0]), orig(x))[1])
    results = {}
    for cap in (0, 64):
        p.view_cache = ViewCache(cap)
        encoded.clear()
        outs = []
        for i in range(3, 7):
            cond = frames[i - 3:i + 1]
            outs.append(p.predict(cond, cond[-1].K, cond[-1].T_wc, (30, 40), task="depth", seed=i))
            outs.append(p.predict(cond, cond[-1].K, frames[i - 1].T_wc, (30, 40), task="rgb", seed=i))  # samples depth too
        results[cap] = (outs, sum(encoded))
    (ref, images_off), (got, images_on) = results[0], results[64]
    for a, b in zip(ref, got):
        for key in ("depth", "rgb", "confidence"):
            x, y = getattr(a, key), getattr(b, key)
            assert (x is None) == (y is None)
            if x is not None:
                np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    assert images_off == 4 * (4 + 2 * 4)  # 4 views; depth samples once, RGB with view synthesis twice
    assert images_on == 7  # each frame once


def test_more_views_than_the_cache_holds_bypass_it(matching_predictor):
    p = matching_predictor
    p.view_cache = ViewCache(2)
    frames = [_frame(i) for i in range(3)]
    out = p.predict(frames, frames[-1].K, frames[-1].T_wc, (30, 40), task="depth")
    assert np.isfinite(out.depth).all() and len(p.view_cache) == 0 and p.view_cache.misses == 0
    p.view_cache = ViewCache()


def test_encode_context_takes_the_views_features_or_refuses_wrong_ones(matching_predictor):
    m = matching_predictor.model
    torch.manual_seed(0)
    rgb = torch.rand(1, 3, 3, 16, 32) * 2 - 1
    K = torch.tensor([[20.0, 0, 15.5], [0, 20.0, 7.5], [0, 0, 1]])
    T = torch.stack([torch.tensor(look_at([0.2 * i, 0, 0], [0, 0, 3], up=(0, -1, 0)), dtype=torch.float32) for i in range(3)])[None]
    T = torch.linalg.inv(T[:, 0])[:, None] @ T  # the target is view 0
    with torch.no_grad():
        a = m.encode_context(rgb, K.expand(1, 3, 3, 3), T, K[None])
        b = m.encode_context(rgb, K.expand(1, 3, 3, 3), T, K[None], feats=m.view_features(rgb))
        assert torch.equal(a.maps, b.maps)
        with pytest.raises(ValueError, match="feats must be"):
            m.encode_context(rgb, K.expand(1, 3, 3, 3), T, K[None], feats=torch.zeros(1, 2, 8, 4, 8))
