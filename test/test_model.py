"""MVGD network: shapes, dtypes, zero-init, linear attention cost, latent growth."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from mvgd_core.cameras import look_at
from mvgd_core.model import MVGD, PRESETS, ModelConfig, grow_latents, model_config

TINY = PRESETS["tiny"]


def make_inputs(cfg: ModelConfig, B=2, N=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    H, W = cfg.image_size
    K = torch.tensor([[20.0, 0, (W - 1) / 2], [0, 20.0, (H - 1) / 2], [0, 0, 1]])
    T = torch.stack([torch.tensor(look_at([0.3 * i - 0.5, -1.0, 0.2 * i], [0, 2, 0]), dtype=torch.float32) for i in range(N)])
    return dict(
        x_t=torch.randn(B, cfg.channels, H, W, generator=g),
        t=torch.randint(0, 1000, (B,), generator=g),
        task=torch.arange(B) % 2,
        cond_rgb=torch.rand(B, N, 3, H, W, generator=g) * 2 - 1,
        cond_K=K.expand(B, N, 3, 3),
        cond_T=T.expand(B, N, 4, 4),
        tgt_K=K.expand(B, 3, 3),
        tgt_T=torch.eye(4).expand(B, 4, 4),
    )


def perturb_zero_init(model: MVGD, seed=1):
    """Randomize all weights so outputs depend on every input (fresh models output exactly 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def test_forward_shapes_and_dtypes():
    m = MVGD(TINY)
    inp = make_inputs(TINY)
    pred, lat = m(**inp)
    assert pred.shape == inp["x_t"].shape and pred.dtype == torch.float32
    assert lat.shape == (2, TINY.num_latents, TINY.dim_latent)
    pred2, _ = m(**inp, latents_sc=lat)  # self-conditioning path
    assert torch.isfinite(pred2).all()


def test_output_layer_zero_init():
    pred, _ = MVGD(TINY)(**make_inputs(TINY))
    assert torch.count_nonzero(pred) == 0  # DiT initialize_weights: a fresh model predicts 0


def test_wrong_image_size_raises():
    m = MVGD(TINY)
    inp = make_inputs(TINY)
    inp["x_t"] = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match="model expects"):
        m(**inp)


def test_bad_config_raises():
    with pytest.raises(ValueError, match="patch_size"):
        ModelConfig(image_size=(48, 64), patch_size=7)
    with pytest.raises(ValueError, match="unknown model preset"):
        model_config("huge")


def test_views_are_permutation_invariant_and_matter():
    m = perturb_zero_init(MVGD(TINY)).eval()
    inp = make_inputs(TINY, N=3)
    out, _ = m(**inp)
    perm = torch.tensor([2, 0, 1])
    inp_p = dict(inp, cond_rgb=inp["cond_rgb"][:, perm], cond_K=inp["cond_K"][:, perm], cond_T=inp["cond_T"][:, perm])
    out_p, _ = m(**inp_p)
    assert torch.allclose(out, out_p, atol=1e-5)  # a set of views, not a sequence
    out_c, _ = m(**dict(inp, cond_rgb=-inp["cond_rgb"]))
    assert (out - out_c).abs().max() > 1e-4  # the scene is actually read


def _record_attention(monkeypatch):
    sizes = []
    orig = F.scaled_dot_product_attention

    def spy(q, k, v, *a, **kw):
        sizes.append((q.shape[-2], k.shape[-2]))
        return orig(q, k, v, *a, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    return sizes


@pytest.mark.parametrize("N", [1, 4, 16])
def test_no_data_to_data_attention(monkeypatch, N):
    """Every attention score matrix has the latents (L tokens) on one side: cost linear in N."""
    sizes = _record_attention(monkeypatch)
    m = MVGD(TINY)
    m(**make_inputs(TINY, B=1, N=N))
    L1, P = TINY.num_latents, TINY.num_patches
    assert sizes, "no attention call recorded"
    for q, k in sizes:
        assert q == L1 or k == L1, (q, k)
    assert max(q * k for q, k in sizes) == L1 * (N + 1) * P  # the read step: latents x all data tokens


def test_attention_cost_grows_linearly(monkeypatch):
    sizes = _record_attention(monkeypatch)
    m = MVGD(TINY)
    totals = []
    for N in (8, 16, 32):
        sizes.clear()
        m(**make_inputs(TINY, B=1, N=N))
        totals.append(sum(q * k for q, k in sizes))
    d1, d2 = totals[1] - totals[0], totals[2] - totals[1]
    assert d2 == 2 * d1  # exactly affine in N (quadratic would give d2 = 3 * d1 for these N)


def test_grow_latents_keeps_function_and_weights():
    m = perturb_zero_init(MVGD(TINY)).eval()
    g = grow_latents(m, 2 * TINY.num_latents, noise_std=0.0).eval()
    assert g.cfg.num_latents == 2 * TINY.num_latents
    old, new = m.state_dict(), g.state_dict()
    for k, v in old.items():
        if k != "latents":
            assert torch.equal(v, new[k]), k
    assert torch.equal(new["latents"][: TINY.num_latents], old["latents"])
    inp = make_inputs(TINY)
    # duplicated keys/values leave every softmax average unchanged: same function
    assert torch.allclose(m(**inp)[0], g(**inp)[0], atol=1e-5)
    g2 = grow_latents(m, 2 * TINY.num_latents, noise_std=1e-3, generator=torch.Generator().manual_seed(0))
    lat = g2.latents.detach()
    assert not torch.equal(lat[: TINY.num_latents], lat[TINY.num_latents:])  # symmetry broken
    with pytest.raises(ValueError, match="shrink"):
        grow_latents(m, TINY.num_latents - 1)


def test_presets_build():
    for name in ("tiny", "small"):
        cfg = model_config(name)
        assert dataclasses.is_dataclass(cfg)
        n = sum(p.numel() for p in MVGD(cfg).parameters())
        assert n > 0
