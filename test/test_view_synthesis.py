"""Novel-view RGB from predicted depth (mvgd_core/view_synthesis.py): with the true depth the
warped views reproduce the target image of a textured plane; with a wrong depth they do not;
pixels no view sees keep the network's RGB; the predictor uses it for RGB unless told not to."""
import dataclasses

import numpy as np
import pytest
import torch

from mvgd_core.metrics import psnr
from mvgd_core.view_synthesis import SynthesisConfig, synthesize_batch, warp_views
from test_cost_volume import _scene, render_plane


def _novel():
    rgb, cK, cT, tK, depth = _scene(False)  # 3 views around a target at the identity; images in [-1, 1]
    target = (render_plane(torch.eye(4))[0] + 1) / 2
    return (rgb[0] + 1) / 2, cK[0], cT[0], tK[0], torch.eye(4), depth, target


def _inner(x):
    return x[..., 6:-6, 6:-6]


def test_true_depth_reproduces_the_target_and_a_wrong_one_does_not():
    rgb, cK, cT, tK, tT, depth, target = _novel()
    good, seen = warp_views(rgb, cK, cT, tK, tT, depth)
    bad, _ = warp_views(rgb, cK, cT, tK, tT, depth * 1.5)
    assert seen[6:-6, 6:-6].float().mean() > 0.9
    p_good, p_bad = psnr(_inner(good), _inner(target)), psnr(_inner(bad), _inner(target))
    assert p_good > 21 and p_good > p_bad + 6, (p_good, p_bad)  # measured 24.5 vs 15.6 (bilinear lookup of a fine texture)


def test_unseen_pixels_keep_the_network_rgb_and_invalid_depth_is_unseen():
    rgb, cK, cT, tK, tT, depth, target = _novel()
    depth = depth.clone()
    depth[:10] = 0.0  # unknown depth: no colour may be looked up there
    depth[10:20] = float("nan")
    fallback = torch.full((1, 3) + depth.shape, 0.25)
    out = synthesize_batch(rgb[None], cK[None], cT[None], tK[None], tT[None], depth[None], fallback)
    assert torch.equal(out[0, :, :20], fallback[0, :, :20])
    assert not torch.allclose(out[0, :, 30:40, 20:40], fallback[0, :, 30:40, 20:40])
    off = synthesize_batch(rgb[None], cK[None], cT[None], tK[None], tT[None], depth[None], fallback, SynthesisConfig(enabled=False))
    assert off is fallback


def test_far_from_the_origin_gives_the_same_image():
    rgb, cK, cT, tK, tT, depth, _ = _novel()
    shift = torch.eye(4, dtype=torch.float64)
    shift[:3, 3] = torch.tensor([3e6, 1e6, -2e5])
    near, _ = warp_views(rgb, cK, cT.double(), tK, tT.double(), depth)
    far, _ = warp_views(rgb, cK, shift @ cT.double(), tK, shift @ tT.double(), depth)
    assert (near - far).abs().max() < 2e-3


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="SynthesisConfig"):
        SynthesisConfig(sources=0)


def test_predictor_rgb_uses_the_warped_views_unless_told_not_to(monkeypatch):
    """The network (random, tiny) outputs grey; with the plane's true depth as its depth the RGB
    of a novel view becomes the target image; synthesize=False keeps the network's RGB."""
    from mvgd_core.data.types import Frame
    from mvgd_core.inference import MVGDPredictor
    from mvgd_core.model import MVGD, PRESETS
    from mvgd_core.refine import RefineConfig

    rgb, cK, cT, tK, tT, depth, target = _novel()
    model = MVGD(dataclasses.replace(PRESETS["tiny"], image_size=tuple(depth.shape)))
    pred = MVGDPredictor(model, device="cpu", steps=1, refine=RefineConfig(enabled=False))
    monkeypatch.setattr(pred, "to_depth", lambda x0, scale: depth[None].expand(x0.shape[0], -1, -1))
    frames = [Frame(rgb=(rgb[i].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8), K=cK[i].double().numpy(),
                    T_wc=cT[i].double().numpy()) for i in range(rgb.shape[0])]
    args = (frames, tK.double().numpy(), tT.double().numpy(), tuple(depth.shape))
    as_float = lambda im: torch.from_numpy(im).permute(2, 0, 1).float() / 255  # noqa: E731
    warped = as_float(pred.predict(*args, task="rgb").rgb)
    network = as_float(pred.predict(*args, task="rgb", synthesize=False).rgb)
    assert psnr(_inner(warped), _inner(target)) > 21 > psnr(_inner(network), _inner(target)) + 5
    # the view's depth comes with the synthesized RGB, identical to task "depth" (no second inference needed)
    with_rgb = pred.predict(*args, task="rgb", seed=3)
    assert np.array_equal(with_rgb.depth, pred.predict(*args, task="depth", seed=3).depth)
    assert pred.predict(*args, task="rgb", synthesize=False).depth is None


class _TruePredictor:
    """Stands in for MVGDPredictor in training/tune_synthesis.py: true depth, grey network RGB."""

    def view_depths(self, batch, steps, seed):
        return torch.zeros(batch.cond_rgb.shape[:2] + batch.cond_rgb.shape[-2:])

    def predict_batch(self, batch, task, steps, seed, view_depth=None, synthesize=None):
        if task == "depth":
            return batch.tgt_depth.clone()
        return torch.full_like(batch.tgt_rgb, 0.5)


def test_tune_synthesis_scores_every_variant_on_every_target():
    """With the true depth, warping views beats the network's (grey) RGB on the same targets, and a
    malformed variant is a clear error."""
    from mvgd_core.data.sampler import ProceduralDataset, ViewSamplingConfig
    from script_loader import load_script

    ts = load_script("training/tune_synthesis.py")
    sampling = ViewSamplingConfig(min_views=3, max_views=3, p_target_in_cond=0.0)
    ds = ProceduralDataset((24, 32), sampling, length=3, seed=5)
    samples = [ds[(i, 3)] for i in range(3)]
    variants = {"off": SynthesisConfig(enabled=False), "sources=2": ts.parse_variant("sources=2")}
    res, picks = ts.run(_TruePredictor(), samples, variants, batch=2)
    assert [r["targets"] for r in res.values()] == [3, 3] and len(picks) == 3
    assert res["sources=2"]["psnr_median"] > res["off"]["psnr_median"] + 3
    with pytest.raises(ValueError, match="sourcez"):
        ts.parse_variant("sourcez=2")


def test_tune_fusion_oracle_picks_the_vote_nearest_the_truth_and_is_exact_with_true_view_depth():
    from mvgd_core.data.sampler import ProceduralDataset, ViewSamplingConfig
    from script_loader import load_script

    tf = load_script("training/tune_fusion.py")
    gt = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    cands = torch.stack([torch.tensor([[1.5, 0.0], [2.0, 0.0]]), torch.tensor([[0.9, 0.0], [3.5, 0.0]])])
    fallback = torch.full_like(gt, 7.0)
    assert torch.equal(tf.best_candidate(cands, gt, fallback), torch.tensor([[0.9, 7.0], [3.5, 7.0]]))  # no vote: the fallback

    sampling = ViewSamplingConfig(min_views=3, max_views=3, p_target_in_cond=0.0)
    s = ProceduralDataset((24, 32), sampling, length=1, seed=6)[(0, 3)]  # the views see 99 % of this target
    net = s.tgt_depth * 1.5  # a network 50 % too far
    exact = tf.oracle_scores(net, s, s.cond_depth.clone(), radius=0)
    far = tf.oracle_scores(net, s, s.cond_depth * 1.3, radius=0)
    assert exact[tf.ORACLE_ROWS[0]]["abs_rel"] < 1e-6 and far[tf.ORACLE_ROWS[0]]["abs_rel"] == pytest.approx(0.3, abs=1e-3)
    assert exact[tf.ORACLE_ROWS[1]]["abs_rel"] < 0.5 * far[tf.ORACLE_ROWS[1]]["abs_rel"]
    # the network's vote can only help the oracle
    assert far[tf.ORACLE_ROWS[2]]["abs_rel"] <= far[tf.ORACLE_ROWS[1]]["abs_rel"] + 1e-6
    with pytest.raises(ValueError, match="no depth of their conditioning views"):
        tf.oracle_scores(net, dataclasses.replace(s, cond_depth=None), s.cond_depth, radius=0)
    with pytest.raises(SystemExit):
        tf.main(["--oracle", "-1"])
