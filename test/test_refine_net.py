"""The learned second stage (mvgd_core/refine_net.py): identity at start, checkpoint round trip,
band resampling, where the predictor applies it, and the training script end to end."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from mvgd_core.checkpoint import load_checkpoint, make_state, save_checkpoint
from mvgd_core.data.sampler import DataConfig
from mvgd_core.data.types import Frame, collate_samples
from mvgd_core.diffusion import DiffusionConfig
from mvgd_core.inference import MVGDPredictor
from mvgd_core.model import MVGD, PRESETS
from mvgd_core.model_eval import held_out_samples
from mvgd_core.refine import refine_batch
from mvgd_core.refine_net import (CHECKPOINT_KEY, BandCost, RefineNet, RefineNetConfig, _resampled, apply_refine_net,
                                  refine_net_from_dict, refine_net_to_dict, stage_confidence, with_uncertainty)
from script_loader import load_script

HW = (16, 32)


def _inputs(B=2, n=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    ref = 1 + torch.rand(B, *HW, generator=g) * 3
    band = [BandCost(torch.rand(n, *HW, generator=g) * 2, torch.rand(n, *HW, generator=g), torch.rand(HW, generator=g) > 0.5)
            for _ in range(B)]
    return torch.rand(B, 3, *HW, generator=g), ref * 1.1, ref, torch.rand(B, *HW, generator=g) > 0.5, torch.rand(B, *HW, generator=g), band


def test_untrained_stage_is_the_identity_and_keeps_invalid_depth():
    rgb, net, ref, acc, conf, band = _inputs()
    ref[0, 0, 0] = 0.0
    out, stage_conf = apply_refine_net(RefineNet(), rgb, net, ref, acc, conf, band)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert out[0, 0, 0] == 0 and stage_conf is None  # no uncertainty output: no confidence of its own


def test_stage_output_is_a_log_correction_of_the_refined_depth():
    m = RefineNet()
    with torch.no_grad():
        m.out.bias.fill_(math.log(2.0))
    rgb, net, ref, acc, conf, band = _inputs()
    torch.testing.assert_close(apply_refine_net(m, rgb, net, ref, acc, conf, band)[0], 2 * ref, rtol=1e-4, atol=1e-4)


def test_band_of_another_size_is_resampled_along_the_band():
    lin = torch.linspace(0, 1, 11)[None, :, None, None].expand(2, 11, 3, 4)
    out = _resampled(lin, 7)
    torch.testing.assert_close(out, torch.linspace(0, 1, 7)[None, :, None, None].expand(2, 7, 3, 4))
    assert _resampled(out, 7) is out
    rgb, net, ref, acc, conf, _ = _inputs()
    _, _, _, _, _, band11 = _inputs(n=11)
    assert apply_refine_net(RefineNet(), rgb, net, ref, acc, conf, band11)[0].shape == ref.shape  # 11 depths (refine_hypotheses on CUDA)


def test_checkpoint_entry_round_trip_and_malformed_entry():
    m = RefineNet()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    d = refine_net_to_dict(m, {"steps": 3})
    assert all(v.dtype == torch.float16 for v in d["state"].values() if v.is_floating_point()) and d["meta"] == {"steps": 3}
    back = refine_net_from_dict(d)
    rgb, net, ref, acc, conf, band = _inputs()
    torch.testing.assert_close(apply_refine_net(back, rgb, net, ref, acc, conf, band)[0],
                               apply_refine_net(m, rgb, net, ref, acc, conf, band)[0], rtol=2e-2, atol=2e-2)
    with pytest.raises(ValueError, match=CHECKPOINT_KEY):
        refine_net_from_dict({**d, "state": {}})
    with pytest.raises(ValueError, match="channels"):
        RefineNetConfig(channels=(16,))


def _jittered(m: RefineNet, seed: int = 0, prefix: str = "") -> RefineNet:
    """m with the parameters named prefix... jittered (a fresh stage is the identity: outputs want weights)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.startswith(prefix):
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return m


def test_uncertainty_head_never_changes_the_depth_and_trains_alone():
    """with_uncertainty adds a head over detached features: the trained stage's depth is bit-identical,
    only the head's parameters train, and its confidence is a probability (NaN where depth is invalid)."""
    m = _jittered(RefineNet())
    u = _jittered(with_uncertainty(m), seed=1, prefix="unc.")  # a trained-looking head, the stage's own weights untouched
    rgb, net, ref, acc, conf, band = _inputs()
    ref[0, 0, 0] = 0.0
    d0, c0 = apply_refine_net(m, rgb, net, ref, acc, conf, band)
    d1, c1 = apply_refine_net(u, rgb, net, ref, acc, conf, band)
    assert c0 is None and torch.equal(d0, d1)
    assert torch.isnan(c1[0, 0, 0]) and ((c1 > 0) & (c1 < 1)).flatten()[1:].all()
    d2, c2 = apply_refine_net(u, rgb, net, ref, acc, conf, band, with_confidence=False)  # not asked for: the head does not run
    assert c2 is None and torch.equal(d2, d0)
    assert {n for n, p in u.named_parameters() if p.requires_grad} == {n for n, _ in u.named_parameters() if n.startswith("unc.")}
    x = torch.randn(2, u.cfg.in_channels, *HW)
    fresh = _jittered(RefineNet(RefineNetConfig(uncertainty=True)))  # everything trainable: the head's loss still reaches only the head
    fresh.outputs(x)[1].sum().backward()
    assert all(p.grad is None for n, p in fresh.named_parameters() if not n.startswith("unc."))
    log_scale = u.outputs(x)[1].detach()
    back = refine_net_from_dict(refine_net_to_dict(u))  # the checkpoint keeps the head
    assert back.cfg.uncertainty and torch.allclose(back.outputs(x)[1], log_scale, atol=5e-2)
    # the Laplace model's P(|log error| < log 1.25): falls as the predicted scale grows
    s = stage_confidence(torch.tensor([-6.0, -2.0, 0.0, 2.0]))
    assert s[0] > 0.999 and (s.diff() < 0).all() and s[-1] < 0.05


def _tiny_matching_model():
    torch.manual_seed(0)
    cfg = dataclasses.replace(PRESETS["tiny"], image_size=HW, scale_input=True, decoder=True, matching=True,
                              match_channels=8, match_depths=8, match_width=16, match_out=8, decoder_width=8)
    return MVGD(cfg)


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """(checkpoint without a stage, with a stage that doubles the live depth)."""
    d = tmp_path_factory.mktemp("refine_net")
    state = make_state(_tiny_matching_model(), DiffusionConfig(match_weight=1.0), step=1)
    stage = RefineNet()
    with torch.no_grad():
        stage.out.bias.fill_(math.log(2.0))
    plain, with_stage = d / "plain.pt", d / "staged.pt"
    save_checkpoint(plain, state)
    save_checkpoint(with_stage, {**state, CHECKPOINT_KEY: refine_net_to_dict(stage)})
    return plain, with_stage


def _samples(mode, num=2):
    return held_out_samples(DataConfig(image_hw=HW), num, 6_000_000, 3, mode)


def test_refine_batch_returns_bands_for_live_targets_only():
    b = collate_samples(_samples("cond") + _samples("novel"))
    depth = torch.full((4, *HW), 3.0)
    out, acc = refine_batch(b.cond_rgb, b.cond_K, b.cond_T_wc, b.tgt_K, b.tgt_T_wc, depth)
    out2, acc2, band = refine_batch(b.cond_rgb, b.cond_K, b.cond_T_wc, b.tgt_K, b.tgt_T_wc, depth, bands=True)
    torch.testing.assert_close(out, out2)
    assert [x is None for x in band] == [False, False, True, True]
    assert band[0].cost.shape == band[0].agg.shape == (7, *HW) and band[0].checked.dtype == torch.bool


def test_predictor_applies_the_stage_at_live_cameras_only(staged):
    plain, with_stage = staged
    p0 = MVGDPredictor.from_checkpoint(plain, device="cpu", steps=1)
    p1 = MVGDPredictor.from_checkpoint(with_stage, device="cpu", steps=1)
    assert p0.refine_net is None and p1.refine_net is not None and p1.use_refine_net  # on by default since stop 31
    live0 = collate_samples(_samples("cond"))
    p1.use_refine_net = False  # the ablation switch: the refinement alone
    torch.testing.assert_close(p1.predict_batch(live0, "depth", steps=1), p0.predict_batch(live0, "depth", steps=1))
    p1.use_refine_net = True
    live, novel = collate_samples(_samples("cond")), collate_samples(_samples("novel"))
    torch.testing.assert_close(p1.predict_batch(live, "depth", steps=1), 2 * p0.predict_batch(live, "depth", steps=1), rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(p1.predict_batch(novel, "depth", steps=1), p0.predict_batch(novel, "depth", steps=1))
    # no refinement: no band, no stage
    torch.testing.assert_close(p1.predict_batch(live, "depth", steps=1, refine=False), p0.predict_batch(live, "depth", steps=1, refine=False))
    # the node's single-target path, and the ablation switch
    s = live.cond_rgb[0]
    frames = [Frame(rgb=(s[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8), K=live.cond_K[0, i].numpy(),
                    T_wc=live.cond_T_wc[0, i].numpy(), frame_id=str(i)) for i in range(s.shape[0])]
    args = (frames, live.tgt_K[0].numpy(), live.tgt_T_wc[0].numpy(), HW)
    d0, d1 = p0.predict(*args).depth, p1.predict(*args).depth
    ok = d0 > 0
    np.testing.assert_allclose(d1[ok], 2 * d0[ok], rtol=1e-3)
    p1.use_refine_net = False
    np.testing.assert_allclose(p1.predict(*args).depth, d0, rtol=1e-6)


def test_predictor_runs_the_uncertainty_head_only_when_a_confidence_is_asked_for(staged, tmp_path):
    """A stage with an uncertainty head: the head runs only for a confidence (nobody pays for one not
    asked for), the depth is the same either way, and the live confidence is the stage's own score."""
    plain, _ = staged
    stage = _jittered(RefineNet(RefineNetConfig(uncertainty=True)))
    path = tmp_path / "head.pt"
    save_checkpoint(path, {**load_checkpoint(plain), CHECKPOINT_KEY: refine_net_to_dict(stage)})
    pred = MVGDPredictor.from_checkpoint(path, device="cpu", steps=1)
    calls = []
    pred.refine_net.unc.register_forward_hook(lambda *a: calls.append(1))
    live = collate_samples(_samples("cond"))
    d0 = pred.predict_batch(live, "depth", steps=1)
    assert calls == []
    d1, conf = pred.predict_batch(live, "depth", steps=1, return_confidence=True)
    assert len(calls) == 1 and torch.equal(d0, d1)
    no_head = RefineNet(RefineNetConfig())
    no_head.load_state_dict({k: v for k, v in stage.state_dict().items() if not k.startswith("unc.")})
    save_checkpoint(path, {**load_checkpoint(plain), CHECKPOINT_KEY: refine_net_to_dict(no_head)})
    d2, peak_mass = MVGDPredictor.from_checkpoint(path, device="cpu", steps=1).predict_batch(live, "depth", steps=1, return_confidence=True)
    torch.testing.assert_close(d2, d1, rtol=1e-3, atol=1e-3)  # the same stage's depth (float16 round trip)
    assert (conf - peak_mass).abs().mean() > 0.01  # uncalibrated: the live confidence is the head's, not the peak mass


def test_train_refine_net_end_to_end(staged, tmp_path, capsys):
    script = load_script("training/train_refine_net.py")
    plain, _ = staged
    data, out = tmp_path / "proc.pt", tmp_path / "model.pt"
    assert script.main(["gather", "--model", str(plain), "--source", "procedural", "--num", "4", "--views", "2", "3",
                        "--seed", "8000000", "--batch", "2", "--out", str(data)]) == 0
    rec = torch.load(data)
    assert rec["cost"].shape == (4, 7, *HW) and len(rec["regime"]) == 4 and rec["meta"]["source"] == "procedural"
    assert script.main(["train", "--model", str(plain), "--data", str(data), "--steps", "3", "--batch", "2",
                        "--write", str(out), "--report", str(data)]) == 0
    entry = load_checkpoint(out)[CHECKPOINT_KEY]
    assert entry["meta"]["steps"] == 3 and entry["meta"]["targets"] == 4
    assert CHECKPOINT_KEY not in load_checkpoint(plain)  # the input is untouched
    fig = tmp_path / "stage.png"
    assert script.main(["eval", "--model", str(out), "--data", str(data), "--figure", str(fig), "--rows", "2"]) == 0
    assert "-> stage" in capsys.readouterr().out
    assert fig.stat().st_size > 1000
    with pytest.raises(SystemExit, match="no 'refine_net'"):
        script.main(["eval", "--model", str(plain), "--data", str(data)])
    # fine-tuning starts from the stage --model carries; a model without one is refused
    tuned = tmp_path / "tuned.pt"
    assert script.main(["train", "--model", str(out), "--data", str(data), str(data), "--weights", "1", "0", "--steps", "1",
                        "--batch", "2", "--lr", "0", "--init-stage", "--write", str(tuned)]) == 0
    a, b = (load_checkpoint(p)[CHECKPOINT_KEY]["state"] for p in (out, tuned))
    assert all(torch.equal(a[k], b[k]) for k in a)  # lr 0: the stage it started from, unchanged
    assert load_checkpoint(tuned)[CHECKPOINT_KEY]["meta"]["started_from"]["steps"] == 3
    # an uncertainty head on the stage --model carries: only the head trains, so the depth stays bit-identical
    unc = tmp_path / "unc.pt"
    capsys.readouterr()
    assert script.main(["train", "--model", str(out), "--data", str(data), "--steps", "2", "--batch", "2", "--init-stage", "--uncertainty",
                        "--report", str(data), "--write", str(unc)]) == 0
    a, b = (load_checkpoint(p)[CHECKPOINT_KEY]["state"] for p in (out, unc))
    assert all(torch.equal(a[k], b[k]) for k in a) and any(k.startswith("unc.") for k in b)
    assert load_checkpoint(unc)[CHECKPOINT_KEY]["meta"]["uncertainty"] is True
    assert "sparsification 25 / 50 / 75 / 100 % by stage uncertainty" in capsys.readouterr().out
    # fine-tuning a stage that has a head (no --uncertainty) keeps the head and trains it along
    assert script.main(["train", "--model", str(unc), "--data", str(data), "--steps", "1", "--batch", "2", "--init-stage",
                        "--write", str(tuned)]) == 0
    c = load_checkpoint(tuned)[CHECKPOINT_KEY]
    assert c["meta"]["uncertainty"] is True and any(k.startswith("unc.") for k in c["state"])
    with pytest.raises(SystemExit, match="no 'refine_net'"):
        script.main(["train", "--model", str(plain), "--data", str(data), "--steps", "1", "--init-stage", "--write", str(tuned)])
    with pytest.raises(SystemExit, match="one non-negative weight per --data"):
        script.main(["train", "--model", str(plain), "--data", str(data), "--weights", "1", "1", "--write", str(tuned)])
    # a capacity ablation: other widths, with a learning curve on the --report sets
    wide = tmp_path / "wide.pt"
    assert script.main(["train", "--model", str(plain), "--data", str(data), "--steps", "4", "--batch", "2", "--channels", "8", "16", "24",
                        "--curve-every", "2", "--report", str(data), "--write", str(wide)]) == 0
    meta = load_checkpoint(wide)[CHECKPOINT_KEY]["meta"]
    assert meta["channels"] == [8, 16, 24] and [p["step"] for p in meta["curve"]] == [2, 4]
    assert all(0 <= p[str(data)][0] and 0 <= p[str(data)][1] <= 1 and p["train_s"] >= 0 for p in meta["curve"])
    assert MVGDPredictor.from_checkpoint(wide, device="cpu", steps=1).refine_net.cfg.channels == (8, 16, 24)
    with pytest.raises(SystemExit, match="--hypotheses build a new stage"):
        script.main(["train", "--model", str(out), "--data", str(data), "--init-stage", "--channels", "8", "16", "--write", str(tuned)])
    # a wider band gathered (the refinement's own settings), and a stage that reads it at its size
    wide_band = tmp_path / "wide_band.pt"
    assert script.main(["gather", "--model", str(plain), "--source", "procedural", "--num", "2", "--views", "2", "--seed", "8000000",
                        "--refine-settings", "span=3.0,hypotheses=9", "--out", str(wide_band)]) == 0
    rec = torch.load(wide_band)
    assert rec["cost"].shape[1] == 9 and rec["meta"]["refine_settings"]["span"] == 3.0
    assert script.main(["train", "--model", str(plain), "--data", str(wide_band), "--steps", "1", "--batch", "2", "--hypotheses", "9",
                        "--write", str(wide)]) == 0
    assert load_checkpoint(wide)[CHECKPOINT_KEY]["meta"]["hypotheses"] == 9
    # one stage reads one band: sets of other spans are never mixed or scored with it, and the
    # predictor refuses to run it after a refinement of another span
    with pytest.raises(SystemExit, match="different band spans"):
        script.main(["train", "--model", str(plain), "--data", str(data), str(wide_band), "--steps", "1", "--write", str(tuned)])
    with pytest.raises(SystemExit, match="span 3.0, this set has 1.5"):
        script.main(["eval", "--model", str(wide), "--data", str(data)])
    pred = MVGDPredictor.from_checkpoint(wide, device="cpu", steps=1)
    assert pred.refine_net.cfg.span == 3.0
    b = collate_samples(held_out_samples(DataConfig(image_hw=HW), 1, 8000000, 2, "cond"))
    x0, scale, match = pred.sample(b.cond_rgb, b.cond_K, b.cond_T_wc, b.tgt_K, b.tgt_T_wc, "depth", 1, 0, return_match=True)
    with pytest.raises(ValueError, match="band of span 3.0"):
        pred.refined(pred.to_depth(x0, scale), b.cond_rgb, b.cond_K, b.cond_T_wc, b.tgt_K, b.tgt_T_wc, match=match)
    pred.refine = dataclasses.replace(pred.refine, span=3.0, hypotheses=9)
    assert pred.refined(pred.to_depth(x0, scale), b.cond_rgb, b.cond_K, b.cond_T_wc, b.tgt_K, b.tgt_T_wc, match=match)[0].shape[-2:] == HW
    with pytest.raises(SystemExit, match="--curve-every needs --report"):
        script.main(["train", "--model", str(plain), "--data", str(data), "--curve-every", "2", "--write", str(tuned)])


def test_weighted_draw_follows_the_weights_and_stays_in_its_set():
    script = load_script("training/train_refine_net.py")
    torch.manual_seed(0)
    idx = np.array(script.draw_targets([10, 1000], [3.0, 1.0], 4000))
    assert ((idx >= 0) & (idx < 1010)).all()
    assert 0.70 < (idx < 10).mean() < 0.80  # weight 3 of 4 on the 10-target set, though it is 1 % of the targets
    assert set(idx[idx < 10]) == set(range(10))
    assert (np.array(script.draw_targets([10, 1000], [0.0, 1.0], 500)) >= 10).all()


def test_stage_is_never_skipped_silently_and_the_evaluation_scores_it(staged):
    from mvgd_core.model_eval import _predict

    _, with_stage = staged
    p1 = MVGDPredictor.from_checkpoint(with_stage, device="cpu", steps=1)
    p1.use_refine_net = True
    live = collate_samples(_samples("cond"))
    depth = torch.full((2, *HW), 3.0)
    with pytest.raises(ValueError, match="match"):
        p1.refined(depth, live.cond_rgb, live.cond_K, live.cond_T_wc, live.tgt_K, live.tgt_T_wc)
    # evaluate_model's rows are what predict_batch (the node's depth) gives, the stage included
    got, _, net, _ = _predict(p1, _samples("cond"), False, 1, 0, 2)
    torch.testing.assert_close(got, p1.predict_batch(live, "depth", steps=1, seed=0))
    p1.use_refine_net = False
    torch.testing.assert_close(net[0], p1.predict_batch(live, "depth", steps=1, seed=0, refine=False))
    assert not torch.allclose(got, p1.predict_batch(live, "depth", steps=1, seed=0))


def test_gather_records_the_nodes_own_live_inputs_on_replayed_sequences(staged, tmp_path):
    """--source replay_*: one target per live answer the node publishes with a band (its keyframe
    sets at each lag), holding the refined depth the node publishes, GT in the model's camera."""
    script = load_script("training/train_refine_net.py")
    seq = load_script("training/evaluate_sequences.py")
    plain, _ = staged
    data = tmp_path / "replay.pt"
    assert script.main(["gather", "--model", str(plain), "--source", "replay_procedural", "--seed", "8300000", "--sequences", "1",
                        "--trajectories", "forward", "--lookahead", "0", "2", "--out", str(data)]) == 0
    rec = torch.load(data)
    frames = script.replay_sequences(script.build_parser().parse_args(
        ["gather", "--model", "x", "--source", "replay_procedural", "--seed", "8300000", "--sequences", "1", "--trajectories", "forward",
         "--out", "x"]))[0]
    jobs = [(lag, i, w) for lag in (0, 2) for _, i, w in seq.answers([frames], lag) if len(w) >= 2]
    assert len(rec["regime"]) == len(jobs) > 20 and rec["meta"]["lookahead"] == [0, 2]
    assert rec["gt"].shape[1:] == HW and rec["cost"].shape[1:] == (7, *HW) and rec["rgb"].shape[1:] == (3, *HW)
    # the first target: the depth the node publishes from those views, at the model's resolution
    pred = MVGDPredictor.from_checkpoint(plain, device="cpu", steps=1)
    _, i, w = jobs[0]
    K = seq.Scorer(pred, HW).output_camera(frames[i])[1:]
    from mvgd_core.cameras import resize_intrinsics
    K_model = resize_intrinsics(torch.as_tensor(K[0], dtype=torch.float32), K[1], HW).numpy()
    depth = pred.predict([frames[j] for j in w], K_model, frames[i].T_wc, HW, steps=1).depth
    np.testing.assert_allclose(rec["ref"][0].numpy(), depth, rtol=1e-4)
    assert (rec["gt"][0] > 0).float().mean() > 0.9
