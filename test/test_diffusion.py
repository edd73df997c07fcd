"""Noise process, losses and the DDIM / DDPM samplers (full loops with dummy models)."""
import numpy as np
import pytest
import torch

from mvgd_core.data.types import MultiViewBatch
from mvgd_core.diffusion import DiffusionConfig, GaussianDiffusion, cosine_alphas_cumprod, target_x0
from mvgd_core.model import MVGD, PRESETS
from mvgd_core.sampler import DDIMSampler, DDPMSampler
from mvgd_core.ssn import depth_to_param


def test_cosine_schedule_is_monotone_and_spans_signal_to_noise():
    ac = cosine_alphas_cumprod(1000)
    assert ac.shape == (1000,) and np.all(np.diff(ac) < 0)
    assert ac[0] > 0.999 and ac[-1] < 1e-3


def test_v_target_definition():
    d = GaussianDiffusion(DiffusionConfig(prediction_type="v"))
    x0, noise, t = torch.rand(1, 3, 2, 2), torch.randn(1, 3, 2, 2), torch.tensor([400])
    a = d.alphas_cumprod[400].float()
    np.testing.assert_allclose(d.target(x0, t, noise), a.sqrt() * noise - (1 - a).sqrt() * x0, atol=1e-6)
    assert torch.equal(GaussianDiffusion(DiffusionConfig(prediction_type="x0")).target(x0, t, noise), x0)
    assert torch.equal(GaussianDiffusion(DiffusionConfig(prediction_type="epsilon")).target(x0, t, noise), noise)


def test_training_timesteps_visit_pure_noise_by_terminal_prob():
    g = torch.Generator().manual_seed(0)
    t = GaussianDiffusion(DiffusionConfig(terminal_prob=0.25)).sample_timesteps(20000, g)
    assert t.min() >= 0 and t.max() == 999
    assert abs((t == 999).float().mean().item() - (0.25 + 0.75 / 1000)) < 0.01
    assert abs(t[t != 999].float().mean().item() - 499.5) < 10  # the rest uniform
    u = GaussianDiffusion(DiffusionConfig(terminal_prob=0.0)).sample_timesteps(20000, g)
    assert (u == 999).float().mean().item() < 0.003
    with pytest.raises(ValueError, match="terminal_prob"):
        DiffusionConfig(terminal_prob=1.0)


def test_q_sample_matches_closed_form():
    d = GaussianDiffusion()
    x0, noise = torch.ones(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    t = torch.tensor([0, 999])
    x = d.q_sample(x0, t, noise)
    a = d.alphas_cumprod[t].float()
    np.testing.assert_allclose(x[1], a[1].sqrt() * x0[1] + (1 - a[1]).sqrt() * noise[1], atol=1e-6)
    assert (x[0] - x0[0]).abs().max() < 0.1


def test_target_x0_layout_and_masks():
    cfg = DiffusionConfig()
    rgb = torch.rand(2, 3, 4, 4)
    depth = torch.full((2, 4, 4), 3.0)
    depth[:, 0, 0] = 0.0
    depth[:, 0, 1] = float("nan")
    scale = torch.tensor([2.0, 2.0])
    x0, mask = target_x0(rgb, depth, scale, torch.tensor([0, 1]), cfg)
    np.testing.assert_allclose(x0[0], rgb[0] * 2 - 1)  # rgb sample: [-1, 1]
    assert mask[0].all()
    p = depth_to_param(torch.tensor(1.5)).item()  # 3 m / s = 1.5 SSN units
    assert torch.allclose(x0[1, :, 1:, :], torch.full_like(x0[1, :, 1:, :], p))  # replicated over channels
    assert mask[1, 0, 0, 0] == 0 and mask[1, 0, 0, 1] == 0 and mask[1, 0, 1, 1] == 1
    assert torch.isfinite(x0).all()


def _batch(B=2, N=2, hw=(16, 16)):
    from mvgd_core.cameras import look_at

    g = torch.Generator().manual_seed(0)
    H, W = hw
    K = torch.tensor([[20.0, 0, 7.5], [0, 20.0, 7.5], [0, 0, 1]])
    T = torch.stack([torch.tensor(look_at([0.3 * i, -2, 0.5], [0, 0, 0.5]), dtype=torch.float32) for i in range(N + 1)])
    return MultiViewBatch(torch.rand(B, N, 3, H, W, generator=g), K.expand(B, N, 3, 3), T[:N].expand(B, N, 4, 4),
                          torch.rand(B, 3, H, W, generator=g), torch.rand(B, H, W, generator=g) * 3 + 0.5,
                          K.expand(B, 3, 3), T[N].expand(B, 4, 4))


class ConstModel(torch.nn.Module):
    """Predicts a learnable constant image; records self-conditioning inputs."""

    def __init__(self, C=3, H=16, W=16, L=4):
        super().__init__()
        self.img = torch.nn.Parameter(torch.zeros(1, C, H, W))
        self.L = L
        self.sc_seen = []

    def forward(self, x_t, t, task, *cams, latents_sc=None, **kw):
        self.sc_seen.append(latents_sc)
        return self.img.expand_as(x_t), torch.ones(x_t.shape[0], self.L, 2)


def test_training_losses_per_task_and_masking():
    batch = _batch()
    d = GaussianDiffusion(DiffusionConfig(self_cond_prob=0.0, prediction_type="epsilon"))
    m = ConstModel()
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    out = d.training_losses(m, batch, torch.tensor([0, 1]), generator=g())
    assert set(out) >= {"loss", "loss_rgb", "loss_depth"}
    # zero prediction, eps target: rgb L2 ~ E[eps^2] = 1, depth L1 ~ E|eps| = 0.8
    assert 0.6 < out["loss_rgb"].item() < 1.5 and 0.5 < out["loss_depth"].item() < 1.1
    assert out["loss"].item() == pytest.approx((out["loss_rgb"] + out["loss_depth"]).item() / 2, rel=1e-6)
    out["loss"].backward()
    assert m.img.grad.abs().sum() > 0
    # depth loss ignores invalid pixels: predicting garbage there changes nothing
    batch.tgt_depth[:, :8] = 0.0
    base = d.training_losses(m, batch, torch.tensor([1, 1]), generator=g())["loss"].item()
    with torch.no_grad():
        m.img[:, :, :8] = 100.0
    assert d.training_losses(m, batch, torch.tensor([1, 1]), generator=g())["loss"].item() == pytest.approx(base, rel=1e-6)
    only_rgb = d.training_losses(m, batch, torch.tensor([0, 0]), generator=g())
    assert only_rgb["loss_depth"].item() == 0.0


def test_training_self_conditioning_uses_no_grad_first_pass():
    d = GaussianDiffusion(DiffusionConfig(self_cond_prob=1.0))
    m = ConstModel()
    d.training_losses(m, _batch(), torch.tensor([0, 1]))
    assert len(m.sc_seen) == 2 and m.sc_seen[0] is None and m.sc_seen[1] is not None
    d0 = GaussianDiffusion(DiffusionConfig(self_cond_prob=0.0))
    m0 = ConstModel()
    d0.training_losses(m0, _batch(), torch.tensor([0, 1]))
    assert m0.sc_seen == [None]


def test_training_losses_through_mvgd_backprop():
    m = MVGD(PRESETS["tiny"])
    out = GaussianDiffusion().training_losses(m, _batch(), torch.tensor([0, 1]))
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and m.out.weight.grad.abs().sum() > 0


def _oracle(d: GaussianDiffusion, x0: torch.Tensor, calls: list):
    """A dummy model that knows the clean sample: outputs the exact eps, v or x0 for any x_t."""

    def fn(x_t, t, latents_sc):
        calls.append((int(t[0]), latents_sc))
        a = d.alphas_cumprod[t].float().view(-1, 1, 1, 1)
        eps = (x_t - a.sqrt() * x0) / (1 - a).sqrt()
        out = {"epsilon": eps, "v": a.sqrt() * eps - (1 - a).sqrt() * x0, "x0": x0.expand_as(x_t)}[d.cfg.prediction_type]
        return out, torch.full((x_t.shape[0], 3, 2), float(t[0]))

    return fn


@pytest.mark.parametrize("pred_type", ["epsilon", "v", "x0"])
def test_ddim_full_loop_recovers_x0_with_oracle(pred_type):
    d = GaussianDiffusion(DiffusionConfig(prediction_type=pred_type))
    x0 = torch.rand(2, 3, 8, 8) * 1.6 - 0.8
    calls = []
    s = DDIMSampler(d, eta=0.0)
    out = s.sample(_oracle(d, x0, calls), x0.shape, generator=torch.Generator().manual_seed(0), num_inference_steps=10)
    np.testing.assert_allclose(out, x0, atol=1e-4)
    assert [c[0] for c in calls] == list(range(999, 0, -100))  # trailing spacing: 999, 899, ..., 99
    assert calls[0][1] is None and calls[1][1][0, 0, 0].item() == 999  # latents fed back (self-conditioning)


def test_ddim_deterministic_per_seed_and_eta_noise():
    d = GaussianDiffusion(DiffusionConfig(prediction_type="v"))  # a zero v keeps x_T's noise in the output
    fn = lambda x, t, sc: (torch.zeros_like(x), None)  # noqa: E731
    s = DDIMSampler(d, eta=0.0)
    a = s.sample(fn, (1, 3, 4, 4), generator=torch.Generator().manual_seed(3), num_inference_steps=5)
    b = s.sample(fn, (1, 3, 4, 4), generator=torch.Generator().manual_seed(3), num_inference_steps=5)
    c = s.sample(fn, (1, 3, 4, 4), generator=torch.Generator().manual_seed(4), num_inference_steps=5)
    assert torch.equal(a, b) and not torch.equal(a, c)
    s1 = DDIMSampler(d, eta=1.0)
    e1 = s1.sample(fn, (1, 3, 4, 4), generator=torch.Generator().manual_seed(3), num_inference_steps=5)
    e2 = s1.sample(fn, (1, 3, 4, 4), generator=torch.Generator().manual_seed(3), num_inference_steps=5)
    assert torch.equal(e1, e2) and not torch.equal(e1, a)


def test_ddpm_step_with_oracle_converges():
    d = GaussianDiffusion()
    x0 = torch.rand(1, 3, 8, 8) - 0.5
    out = DDPMSampler(d).sample(_oracle(d, x0, []), x0.shape, generator=torch.Generator().manual_seed(0), num_inference_steps=50)
    np.testing.assert_allclose(out, x0, atol=1e-3)


def test_ddim_step_equation_by_hand():
    d = GaussianDiffusion(DiffusionConfig(prediction_type="epsilon"))
    s = DDIMSampler(d, eta=0.0, clip_sample=False)
    s.set_timesteps(4)  # 999, 749, 499, 249
    x_t, eps = torch.full((1, 1, 1, 1), 0.7), torch.full((1, 1, 1, 1), 0.2)
    a_t, a_p = d.alphas_cumprod[499].item(), d.alphas_cumprod[249].item()
    x0 = (0.7 - (1 - a_t) ** 0.5 * 0.2) / a_t ** 0.5
    expected = a_p ** 0.5 * x0 + (1 - a_p) ** 0.5 * 0.2
    assert s.step(eps, 499, x_t).prev_sample.item() == pytest.approx(expected, rel=1e-5)


def test_set_timesteps_validation():
    s = DDIMSampler(GaussianDiffusion())
    with pytest.raises(ValueError):
        s.set_timesteps(0)
    s.set_timesteps(1)
    assert s.timesteps.tolist() == [999]


class _Wrapper(torch.nn.Module):
    """Like DistributedDataParallel for training_losses: only forward, the network as .module."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, *a, **kw):
        return self.module(*a, **kw)


def test_match_loss_and_clamped_depth_mask():
    """match_weight adds the cost volume's own depth loss; depth_loss_when_clamped=False drops the
    depth loss of samples whose SSN scale was clamped (no baseline)."""
    import dataclasses as dc

    from mvgd_core.model import MVGD, PRESETS

    cfg = dc.replace(PRESETS["tiny"], image_size=(16, 32), decoder=True, matching=True, match_channels=8, match_depths=8,
                     match_width=16, match_out=8, decoder_width=8)
    torch.manual_seed(0)
    m = MVGD(cfg)
    H, W = cfg.image_size
    K = torch.tensor([[16.0, 0, (W - 1) / 2], [0, 16.0, (H - 1) / 2], [0, 0, 1]])
    T = torch.eye(4).repeat(2, 2, 1, 1)
    T[0, 1, 0, 3] = 0.5  # sample 0: a baseline; sample 1: both cameras on the target (clamped)
    T[1, 1, 0, 3] = 0.01
    batch = MultiViewBatch(cond_rgb=torch.rand(2, 2, 3, H, W), cond_K=K.expand(2, 2, 3, 3), cond_T_wc=T,
                           tgt_rgb=torch.rand(2, 3, H, W), tgt_depth=torch.full((2, H, W), 2.0), tgt_K=K.expand(2, 3, 3),
                           tgt_T_wc=torch.eye(4).expand(2, 4, 4))
    task = torch.tensor([1, 1])
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    base = GaussianDiffusion(DiffusionConfig(self_cond_prob=0.0)).training_losses(m, batch, task, generator=g())
    with_match = GaussianDiffusion(DiffusionConfig(self_cond_prob=0.0, match_weight=1.0)).training_losses(m, batch, task, generator=g())
    assert base["loss_match"].item() == 0.0 and with_match["loss_match"].item() > 0
    assert with_match["loss"].item() == pytest.approx(base["loss"].item() + with_match["loss_match"].item(), rel=1e-5)
    # a DDP-style wrapper (forward only: no encode_scene, the network under .module) gets the same term
    wrapped = GaussianDiffusion(DiffusionConfig(self_cond_prob=0.0, match_weight=1.0)).training_losses(_Wrapper(m), batch, task, generator=g())
    assert wrapped["loss_match"].item() == pytest.approx(with_match["loss_match"].item(), rel=1e-5)
    wrapped["loss"].backward()
    assert m.features.net[0].weight.grad.abs().sum() > 0  # the cost volume's features learn through the wrapper
    masked = GaussianDiffusion(DiffusionConfig(self_cond_prob=0.0, depth_loss_when_clamped=False)).training_losses(m, batch, task, generator=g())
    assert 0 < masked["loss"].item() < base["loss"].item()  # sample 0 still trains depth, sample 1 no longer
