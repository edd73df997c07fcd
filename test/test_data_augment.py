"""Training augmentation (mvgd_core.data.augment): off = unchanged, colour, crops, view order."""
import dataclasses

import numpy as np
import pytest
import torch

from mvgd_core.config import ConfigError, from_dict
from mvgd_core.data.augment import AugmentConfig, apply_colour, augment_views, crop_resize_frame, draw_crop, pre_crop_hw
from mvgd_core.data.render import render_sequence
from mvgd_core.data.sampler import (DataConfig, ProceduralDataset, SequenceDataset, ViewSamplingConfig, _item, build_dataset,
                                    make_sample, select_views)
from mvgd_core.data.types import Frame, MultiViewSample
from mvgd_core.observability import sample_observability

HW = (24, 32)
SAMPLING = ViewSamplingConfig(min_views=2, max_views=3, p_target_in_cond=0.5)
COLOUR = AugmentConfig(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05, gamma=0.2, per_view=0.2)
CROP = AugmentConfig(crop_scale=(0.6, 1.0))
ALL = dataclasses.replace(COLOUR, crop_scale=(0.6, 1.0), permute_views=True)
FIELDS = [f.name for f in dataclasses.fields(MultiViewSample)]


def _equal(a: MultiViewSample, b: MultiViewSample) -> bool:
    return all((getattr(a, f) is None and getattr(b, f) is None) or torch.equal(getattr(a, f), getattr(b, f)) for f in FIELDS)


@pytest.fixture(scope="module")
def seq():
    """A 'real' sequence (rendered, larger than the sample size, so cropping has pixels to use)."""
    return render_sequence(11, 8, 60, 80, trajectory="forward")


def _pose_key(T: torch.Tensor) -> tuple:
    return tuple(np.round(T.numpy().ravel(), 5))


# --------------------------------------------------------------------------- off = unchanged


def test_off_is_bit_identical_to_the_plain_path(seq):
    assert not DataConfig().augment.enabled and not AugmentConfig().enabled
    proc = ProceduralDataset(HW, SAMPLING, length=4, seed=3)
    real = SequenceDataset([seq], HW, SAMPLING, length=4, seed=3)
    for i in range(3):
        # the pre-augmentation code path, written out
        idx, n, rng = _item((i, 2), 3, SAMPLING.min_views, SAMPLING.max_views)
        frames = render_sequence(int(rng.integers(2**62)), max(SAMPLING.max_views + 2, n + 1), *HW)
        cond, tgt = select_views(frames, n, rng, SAMPLING)
        assert _equal(proc[(i, 2)], make_sample(frames, cond, tgt))
        idx, n, rng = _item((i, 2), 3, SAMPLING.min_views, SAMPLING.max_views)
        lens = np.array([len(seq)], dtype=np.float64)
        rng.choice(1, p=lens / lens.sum())
        cond, tgt = select_views(real.sequences[0], n, rng, SAMPLING)
        assert _equal(real[(i, 2)], make_sample(real.sequences[0], cond, tgt))


# --------------------------------------------------------------------------- colour


def test_colour_stays_in_range_changes_pixels_and_nothing_else(seq):
    for ds_off, ds_on in [(ProceduralDataset(HW, SAMPLING, length=6, seed=1), ProceduralDataset(HW, SAMPLING, length=6, seed=1, augment=COLOUR)),
                          (SequenceDataset([seq], HW, SAMPLING, length=6, seed=1), SequenceDataset([seq], HW, SAMPLING, length=6, seed=1, augment=COLOUR))]:
        for i in range(4):
            off, on = ds_off[(i, 3)], ds_on[(i, 3)]
            for f in FIELDS:
                if f not in ("cond_rgb", "tgt_rgb"):  # geometry, depth, observability untouched
                    assert (getattr(off, f) is None and getattr(on, f) is None) or torch.equal(getattr(off, f), getattr(on, f)), f
            for x in (on.cond_rgb, on.tgt_rgb):
                assert x.min() >= 0.0 and x.max() <= 1.0 and torch.isfinite(x).all()
            assert (on.cond_rgb - off.cond_rgb).abs().mean() > 0.005
            # a target that is also a conditioning view keeps exactly its copy's colours
            same = [k for k in range(on.num_views) if torch.equal(on.cond_T_wc[k], on.tgt_T_wc)]
            if same:
                assert torch.equal(on.cond_rgb[same[0]], on.tgt_rgb)


def test_colour_per_view_variation_is_controlled():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(1, 3, 8, 8, generator=g).expand(4, 3, 8, 8).contiguous()  # 4 identical views
    from mvgd_core.data.augment import draw_colour

    shared = apply_colour(img, draw_colour(np.random.default_rng(0), dataclasses.replace(COLOUR, per_view=0.0), 4))
    assert all(torch.equal(shared[0], shared[k]) for k in range(4))  # per_view 0: identical changes
    assert (shared - img).abs().mean() > 0.01
    indep = dataclasses.replace(COLOUR, per_view=1.0)
    own = apply_colour(img, draw_colour(np.random.default_rng(0), indep, 4))
    assert (own[0] - own[1]).abs().mean() > 0.005
    # views without their own deviation (a novel target) get exactly the shared draw
    vals = draw_colour(np.random.default_rng(0), dataclasses.replace(COLOUR, per_view=0.5), 4, own=np.array([True, False, True, False]))
    assert np.array_equal(vals[1], vals[3]) and not np.array_equal(vals[0], vals[2])
    assert np.allclose(vals[1], draw_colour(np.random.default_rng(0), dataclasses.replace(COLOUR, per_view=0.0), 1)[0])
    grey = torch.full((1, 3, 4, 4), 0.5)  # a grey image stays grey under saturation and hue changes
    out = apply_colour(grey, np.array([[0.0, 0.0, 0.5, 0.2, 0.0]]))
    assert torch.allclose(out, grey, atol=1e-4)


# --------------------------------------------------------------------------- crops


def _ray_to_source(K_new, K_old, u, v):
    """Continuous source coordinates of new-image pixel centres (u, v): K_old K_new^-1 [u, v, 1]."""
    p = np.stack([u, v, np.ones_like(u)], -1) @ (K_old @ np.linalg.inv(K_new)).T
    return p[..., 0] / p[..., 2], p[..., 1] / p[..., 2]


@pytest.mark.parametrize("out_hw", [(24, 32), (37, 41)])
def test_crop_keeps_pixels_on_their_rays(out_hw):
    """Each cropped pixel's depth comes from the source pixel its ray (new K) passes through,
    and its colour matches the source image at that exact position (linear ramp)."""
    H, W = 60, 80
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    depth = (1.0 + (v * W + u) * 1e-3).astype(np.float32)  # unique per pixel: decodes the source pixel
    rgb = np.stack([3.0 * u, 4.0 * v, np.full_like(u, 128.0)], -1).round().astype(np.uint8)
    K = np.array([[70.0, 0.0, 39.2], [0.0, 71.0, 30.7], [0.0, 0.0, 1.0]])
    fr = Frame(rgb=rgb, K=K, T_wc=np.eye(4), depth=depth)
    rng = np.random.default_rng(0)
    for _ in range(6):
        box = draw_crop(rng, (H, W), AugmentConfig(crop_scale=(0.4, 1.0)))
        out = crop_resize_frame(fr, box, out_hw)
        assert out.rgb.shape == (*out_hw, 3) and out.depth.shape == out_hw
        vv, uu = np.mgrid[0 : out_hw[0], 0 : out_hw[1]].astype(np.float64)
        us, vs = _ray_to_source(out.K, K, uu, vv)
        code = np.round((out.depth.astype(np.float64) - 1.0) / 1e-3).astype(int)
        si, sj = code // W, code % W
        assert np.abs(us - sj).max() <= 0.5 + 1e-6 and np.abs(vs - si).max() <= 0.5 + 1e-6
        # colour: the ramp at the continuous source position (interior, away from clamped borders)
        inner = (us > 1) & (us < W - 2) & (vs > 1) & (vs < H - 2)
        assert np.abs(out.rgb[..., 0].astype(float) - 3.0 * us)[inner].mean() < 0.75
        assert np.abs(out.rgb[..., 1].astype(float) - 4.0 * vs)[inner].mean() < 0.75


def _reproject(a: Frame, b: Frame) -> tuple[float, float, int]:
    """a's pixels (3-D points from a's depth and K) projected into b with b's K: (share whose
    depth agrees with b's depth there within 5 %, median RGB difference 0-255, pixels compared)."""
    v, u = np.mgrid[0 : a.height, 0 : a.width].astype(np.float64)
    z = a.depth.astype(np.float64)
    p_c = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(a.K).T * z[..., None]
    p_w = p_c @ a.T_wc[:3, :3].T + a.T_wc[:3, 3]
    T_bw = np.linalg.inv(b.T_wc)
    q = p_w @ T_bw[:3, :3].T + T_bw[:3, 3]
    uvw = q @ b.K.T
    with np.errstate(divide="ignore", invalid="ignore"):
        ub, vb = np.round(uvw[..., 0] / q[..., 2]).astype(int), np.round(uvw[..., 1] / q[..., 2]).astype(int)
    ok = (z > 0) & (q[..., 2] > 0.05) & (ub >= 0) & (ub < b.width) & (vb >= 0) & (vb < b.height)
    zb = b.depth[vb[ok], ub[ok]]
    good = zb > 0
    agree = float((np.abs(zb[good] - q[..., 2][ok][good]) < 0.05 * zb[good]).mean()) if good.any() else 0.0
    drgb = np.abs(b.rgb[vb[ok], ub[ok]].astype(float) - a.rgb[ok].astype(float)).mean(-1)[good]
    return agree, float(np.median(drgb)) if good.any() else 255.0, int(good.sum())


def test_crop_keeps_two_view_geometry_consistent():
    """A 3-D point seen in cropped view A lands, through B's new K, on B's cropped pixel with the
    same depth and colour; an unadjusted K, or a principal point 1 px off, does not."""
    frames = render_sequence(2, 6, 60, 80, trajectory="forward")  # a scene with strong depth structure
    cfg = AugmentConfig(crop_scale=(0.5, 0.9))
    rng = np.random.default_rng(1)
    for ia, ib in [(0, 2), (1, 4), (3, 5)]:
        a = crop_resize_frame(frames[ia], draw_crop(rng, (60, 80), cfg), (30, 40))
        b = crop_resize_frame(frames[ib], draw_crop(rng, (60, 80), cfg), (30, 40))
        agree, drgb, n = _reproject(a, b)
        assert n > 300 and agree > 0.9 and drgb < 12, (agree, drgb, n)
        for K_bad in (frames[ib].K * np.array([[0.5], [0.5], [1.0]]), b.K + np.array([[0, 0, 1.0], [0, 0, 1.0], [0, 0, 0]])):
            bad, _, _ = _reproject(a, Frame(rgb=b.rgb, K=K_bad, T_wc=b.T_wc, depth=b.depth))
            assert bad < agree - 0.15, (bad, agree)


def test_augmented_sample_geometry_and_observability(seq):
    """Datasets with crops: shapes are the sample size, the target-in-cond copy shares its crop,
    and observability is measured on the augmented views."""
    samp = dataclasses.replace(SAMPLING, p_target_in_cond=1.0)
    assert pre_crop_hw(HW, CROP) == (40, 54)
    for ds in (ProceduralDataset(HW, samp, length=6, seed=2, augment=ALL), SequenceDataset([seq], HW, samp, length=6, seed=2, augment=ALL)):
        plain = type(ds)(*(() if isinstance(ds, ProceduralDataset) else ([seq],)), HW, samp, length=6, seed=2)
        differs = 0
        for i in range(4):
            s = ds[(i, 3)]
            assert s.cond_rgb.shape == (3, 3, *HW) and s.tgt_depth.shape == HW
            k = [j for j in range(3) if torch.equal(s.cond_T_wc[j], s.tgt_T_wc)]
            assert len(k) == 1 and torch.equal(s.cond_K[k[0]], s.tgt_K) and torch.equal(s.cond_rgb[k[0]], s.tgt_rgb)
            assert torch.equal(s.cond_depth[k[0]], s.tgt_depth)
            assert torch.allclose(s.observability, sample_observability(s, model_hw=None).as_tensor())
            differs += not torch.allclose(s.observability, plain[(i, 3)].observability)
        assert differs > 0  # crops change observability: it was not copied from the uncropped views


# --------------------------------------------------------------------------- view order


def test_permutation_keeps_each_view_together(seq):
    perm = AugmentConfig(permute_views=True)
    moved = 0
    for ds_off, ds_on in [(ProceduralDataset(HW, SAMPLING, length=8, seed=5), ProceduralDataset(HW, SAMPLING, length=8, seed=5, augment=perm)),
                          (SequenceDataset([seq], HW, SAMPLING, length=8, seed=5), SequenceDataset([seq], HW, SAMPLING, length=8, seed=5, augment=perm))]:
        for i in range(6):
            off, on = ds_off[(i, 3)], ds_on[(i, 3)]
            views_off = {_pose_key(off.cond_T_wc[k]): k for k in range(3)}
            order = [views_off[_pose_key(on.cond_T_wc[k])] for k in range(3)]
            assert sorted(order) == [0, 1, 2]
            for k, j in enumerate(order):  # rgb, K, depth travel with their pose
                assert torch.equal(on.cond_rgb[k], off.cond_rgb[j]) and torch.equal(on.cond_K[k], off.cond_K[j])
                assert torch.equal(on.cond_depth[k], off.cond_depth[j])
            assert torch.equal(on.tgt_rgb, off.tgt_rgb) and torch.equal(on.tgt_T_wc, off.tgt_T_wc)
            assert torch.allclose(on.observability, off.observability, atol=1e-5)
            moved += order != [0, 1, 2]
    assert moved >= 3


def test_augment_views_index_bookkeeping():
    frames = render_sequence(2, 6, 24, 32)
    cond, tgt = [4, 1, 3], 1  # target is conditioning view 1
    out, c2, t2 = augment_views(frames, cond, tgt, HW, AugmentConfig(permute_views=True), np.random.default_rng(3))
    assert len(out) == 3 and sorted(c2) == [0, 1, 2] and t2 in c2
    assert sorted(out[c].frame_id for c in c2) == sorted(frames[c].frame_id for c in cond)
    assert out[t2].frame_id == frames[tgt].frame_id


# --------------------------------------------------------------------------- determinism, config


def test_deterministic_per_seed_and_index_in_any_order(seq):
    def make():
        return SequenceDataset([seq], HW, SAMPLING, length=8, seed=9, augment=ALL), ProceduralDataset(HW, SAMPLING, length=8, seed=9, augment=ALL)

    a, b = make(), make()
    for da, db in zip(a, b):
        fwd = [da[(i, 2)] for i in range(4)]
        back = [db[(i, 2)] for i in reversed(range(4))][::-1]  # another access order (other workers)
        assert all(_equal(x, y) for x, y in zip(fwd, back))
        assert not torch.equal(fwd[0].cond_rgb, fwd[1].cond_rgb)
    other = SequenceDataset([seq], HW, SAMPLING, length=8, seed=10, augment=ALL)
    assert not _equal(other[(0, 2)], a[0][(0, 2)])


@pytest.mark.parametrize("bad", [dict(brightness=-0.1), dict(brightness=1.0), dict(contrast=1.5), dict(saturation=1.2),
                                 dict(hue=0.6), dict(gamma=-1.0), dict(per_view=1.5), dict(hue=float("nan")),
                                 dict(crop_scale=(0.9, 0.8)), dict(crop_scale=(0.1, 1.0)), dict(crop_scale=(0.8, 1.2)),
                                 dict(crop_scale=(0.5, 0.7, 0.9))])
def test_config_validation(bad):
    with pytest.raises(ValueError, match="AugmentConfig"):
        AugmentConfig(**bad)


def test_data_config_reads_augment_section():
    cfg = from_dict(DataConfig, {"image_hw": [24, 32], "augment": {"brightness": 0.2, "crop_scale": [0.7, 1.0], "permute_views": True}})
    assert cfg.augment == AugmentConfig(brightness=0.2, crop_scale=(0.7, 1.0), permute_views=True)
    with pytest.raises((ConfigError, ValueError)):
        from_dict(DataConfig, {"augment": {"flip": True}})
    with pytest.raises((ConfigError, ValueError)):
        from_dict(DataConfig, {"augment": {"hue": 0.9}})
    ds = build_dataset(dataclasses.replace(cfg, length=2))
    assert ds.augment == cfg.augment and ds[(0, 2)].cond_rgb.shape[-2:] == (24, 32)
