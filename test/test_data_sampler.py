"""View selection, resizing, datasets, batch sampler and the data-mixture config."""
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mvgd_core.cameras import look_at
from mvgd_core.config import ConfigError, from_dict
from mvgd_core.data.render import render_sequence
from mvgd_core.data.sampler import (
    DataConfig,
    ProceduralDataset,
    SequenceDataset,
    ViewCountBatchSampler,
    ViewSamplingConfig,
    build_dataset,
    make_sample,
    overlap_fraction,
    resize_frame,
    select_views,
)
from mvgd_core.data.types import Frame, collate_samples

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def seq():
    return render_sequence(5, 8, 36, 48, trajectory="forward")


def _project(K, T_wc, p):
    q = np.linalg.inv(T_wc) @ np.append(p, 1.0)
    uvw = K @ q[:3]
    return uvw[:2] / uvw[2]


def test_resize_frame_keeps_projection_consistent(seq):
    f = seq[0]
    p = f.T_wc[:3, 3] + f.T_wc[:3, :3] @ np.array([0.2, -0.1, 2.0])  # a point in front of the camera
    uv = _project(f.K, f.T_wc, p)
    for hw, crop in [((18, 24), False), ((30, 30), True), ((40, 20), True)]:
        g = resize_frame(f, hw, crop)
        assert g.rgb.shape == (*hw, 3) and g.depth.shape == hw and g.depth.dtype == np.float32
        uv2 = _project(g.K, g.T_wc, p)
        if not crop:  # pixel centres at integers: u' = (u + 0.5) * w / W - 0.5
            np.testing.assert_allclose(uv2, (uv + 0.5) * np.array([24 / 48, 18 / 36]) - 0.5, atol=1e-9)
        # nearest-neighbour depth: resized values are a subset of the original ones
        assert set(np.unique(g.depth)).issubset(set(np.unique(f.depth)))


def test_overlap_fraction_identity_and_opposite(seq):
    f = seq[0]
    assert overlap_fraction(f, f) > 0.95
    back = Frame(rgb=f.rgb, K=f.K, T_wc=f.T_wc @ np.diag([-1.0, 1.0, -1.0, 1.0]), depth=f.depth)  # turned 180 deg
    assert overlap_fraction(f, back) == 0.0


@pytest.mark.parametrize("p_in, expect_in", [(1.0, True), (0.0, False)])
def test_select_views_target_in_conditioning_or_novel(seq, p_in, expect_in):
    cfg = ViewSamplingConfig(p_target_in_cond=p_in, min_overlap=0.0)
    rng = np.random.default_rng(0)
    for _ in range(10):
        cond, t = select_views(seq, 3, rng, cfg)
        assert len(cond) == 3 and len(set(cond)) == 3
        assert (t in cond) is expect_in


def test_select_views_respects_baseline_and_reports_short_sequences(seq):
    # a dolly along x facing a wall 2 m away: 21 frames 0.1 m apart
    K = np.array([[20.0, 0, 15.5], [0, 20.0, 11.5], [0, 0, 1]])
    line = [
        Frame(rgb=np.zeros((24, 32, 3), np.uint8), K=K, T_wc=look_at([0.1 * i, 0, 1], [0.1 * i, 5, 1]), depth=np.full((24, 32), 2.0, np.float32))
        for i in range(21)
    ]
    cfg = ViewSamplingConfig(p_target_in_cond=0.0, max_translation=0.35, min_overlap=0.5)
    rng = np.random.default_rng(1)
    for _ in range(20):
        cond, t = select_views(line, 3, rng, cfg)
        assert t not in cond and all(0.05 < abs(i - t) * 0.1 <= 0.35 + 1e-9 for i in cond)
    with pytest.raises(ValueError, match="sequence has 8 frames, need 9"):
        select_views(seq, 8, np.random.default_rng(0), ViewSamplingConfig(p_target_in_cond=0.0))


@pytest.mark.parametrize("p_in", [1.0, 0.0])
def test_select_views_past_only_as_a_robot_sees_it(seq, p_in):
    # p_past_only 1: every conditioning view precedes the target (the live camera's keyframes trail it)
    cfg = ViewSamplingConfig(p_target_in_cond=p_in, min_overlap=0.0, p_past_only=1.0)
    rng = np.random.default_rng(3)
    for _ in range(20):
        cond, t = select_views(seq, 3, rng, cfg)
        assert len(set(cond)) == 3 and all(i < t for i in cond if i != t) and (t in cond) is (p_in == 1.0)
    # 0 (the default) draws from both sides and keeps the old random stream
    both = [select_views(seq, 3, np.random.default_rng(k), ViewSamplingConfig(p_target_in_cond=0.0, min_overlap=0.0)) for k in range(30)]
    assert any(i > t for cond, t in both for i in cond)
    with pytest.raises(ValueError, match="p_past_only"):
        ViewSamplingConfig(p_past_only=1.5)


def test_make_sample_shapes_and_size_mismatch(seq):
    s = make_sample(seq, [0, 1], 2)
    assert s.cond_rgb.shape == (2, 3, 36, 48) and s.cond_rgb.dtype == torch.float32 and s.cond_rgb.max() <= 1.0
    assert s.tgt_depth.shape == (36, 48) and s.cond_depth.shape == (2, 36, 48) and s.tgt_T_wc.shape == (4, 4)
    small = resize_frame(seq[3], (18, 24))
    with pytest.raises(ValueError, match="different sizes"):
        make_sample([*seq[:3], small], [0, 3], 1)


def test_procedural_dataset_is_deterministic_and_batches_have_one_view_count():
    ds = ProceduralDataset((24, 32), ViewSamplingConfig(min_views=1, max_views=3), length=6, seed=7)
    a, b = ds[(4, 2)], ds[(4, 2)]
    assert a.num_views == 2 and torch.equal(a.cond_rgb, b.cond_rgb) and torch.equal(a.tgt_depth, b.tgt_depth)
    assert 1 <= ds[5].num_views <= 3
    bs = ViewCountBatchSampler(len(ds), batch_size=3, min_views=1, max_views=3, seed=0)
    batches = list(DataLoader(ds, batch_sampler=bs, collate_fn=collate_samples))
    assert len(batches) == 2
    for batch in batches:
        B, N = batch.cond_rgb.shape[:2]
        assert B == 3 and 1 <= N <= 3 and batch.tgt_rgb.shape == (3, 3, 24, 32)


def test_batch_sampler_shards_ranks_disjointly():
    r0 = [i for b in ViewCountBatchSampler(20, 2, 1, 4, rank=0, world_size=2) for i, _ in b]
    r1 = [i for b in ViewCountBatchSampler(20, 2, 1, 4, rank=1, world_size=2) for i, _ in b]
    assert len(r0) == len(r1) == 10 and not set(r0) & set(r1)


def test_sequence_dataset_resizes_and_samples(seq):
    ds = SequenceDataset([seq, seq[:2]], image_hw=(16, 16), length=5, seed=0)
    s = ds[(0, 3)]
    assert s.cond_rgb.shape == (3, 3, 16, 16) and s.tgt_K[0, 0] > 0
    with pytest.raises(ValueError, match="no frames"):
        SequenceDataset([[]])


def test_data_config_from_dict_and_errors():
    cfg = from_dict(
        DataConfig,
        {"image_hw": [24, 32], "sampling": {"min_views": 2, "max_views": 2}, "sources": [{"kind": "procedural", "weight": 1.0}], "length": 3},
    )
    ds = build_dataset(cfg)
    assert ds[0].cond_rgb.shape == (2, 3, 24, 32)
    with pytest.raises(ConfigError, match="kind"):
        from_dict(DataConfig, {"sources": [{"kind": "video"}]})
    with pytest.raises(ConfigError, match="min_views"):
        from_dict(DataConfig, {"sampling": {"min_views": 3, "max_views": 2}})
    with pytest.raises(ConfigError, match="weights"):
        from_dict(DataConfig, {"sources": [{"weight": 0.0}]})


def test_mixture_of_real_sources_from_yaml_like_dict():
    cfg = from_dict(
        DataConfig,
        {
            "image_hw": [24, 32],
            "length": 6,
            "sampling": {"min_views": 2, "max_views": 2, "min_overlap": 0.0},
            "sources": [
                {"kind": "tum", "path": str(ROOT / "data" / "tum_fr1_rpy_small"), "weight": 1.0, "max_frames": 8},
                {"kind": "rosbag", "path": str(ROOT / "data" / "bags" / "procedural_demo"), "weight": 1.0, "stride": 4},
            ],
        },
    )
    ds = build_dataset(cfg)
    batch = collate_samples([ds[(i, 2)] for i in range(6)])
    assert batch.cond_rgb.shape == (6, 2, 3, 24, 32) and (batch.tgt_depth > 0).float().mean() > 0.5
    with pytest.raises(FileNotFoundError, match="missing"):
        build_dataset(from_dict(DataConfig, {"sources": [{"kind": "tum", "path": "nope"}]}))


# --------------------------------------------------------------------------- observability, control, split


def test_observability_is_stored_on_samples_and_batches(seq):
    from mvgd_core.observability import sample_observability

    side = seq[4].T_wc @ np.array([[1, 0, 0, 1.0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])  # 1 m to the right
    pair = [seq[4], Frame(rgb=seq[4].rgb, K=seq[4].K, T_wc=side, depth=seq[4].depth)]
    moving = make_sample(pair, [1], 0)  # sideways baseline: strong parallax
    still = make_sample(seq, [2], 2)  # the conditioning view is the target itself: nothing observable
    for s in (moving, still):
        assert s.observability.shape == (2,) and s.observability.dtype == torch.float32
        assert torch.equal(s.observability, sample_observability(s, model_hw=None).as_tensor())
    assert moving.observability[0] > 0.4 and moving.observability[1] > 0.5  # scene ~8 m away, 48 px wide
    assert still.observability[0] == 0.0 and still.observability[1] < 1e-6
    batch = collate_samples([moving, still])
    assert batch.observability.shape == (2, 2)
    ds = ProceduralDataset((24, 32), ViewSamplingConfig(min_views=2, max_views=2), length=3, seed=1)
    assert all(ds[i].observability is not None for i in range(3))


def _obs_batch(frac):
    """A MultiViewBatch whose observable fractions are `frac` (B,), every target with depth."""
    B = len(frac)
    from mvgd_core.data.types import MultiViewBatch

    T = torch.eye(4).expand(B, 2, 4, 4).clone()
    T[:, 1, 0, 3] = 1.0  # novel targets: target pose differs from every conditioning pose
    tgt_T = torch.eye(4).expand(B, 4, 4).clone()
    tgt_T[:, 1, 3] = 0.5
    return MultiViewBatch(torch.rand(B, 2, 3, 4, 4), torch.eye(3).expand(B, 2, 3, 3), T, torch.rand(B, 3, 4, 4),
                          torch.ones(B, 4, 4), torch.eye(3).expand(B, 3, 3), tgt_T,
                          observability=torch.stack([torch.as_tensor(frac, dtype=torch.float32), torch.ones(B)], -1))


def test_min_observability_control_removes_unobservable_depth_targets():
    from mvgd_core.diffusion import TASK_DEPTH
    from mvgd_core.train_data import choose_tasks

    frac = torch.rand(4000, generator=torch.Generator().manual_seed(0))
    batch = _obs_batch(frac)
    observable = frac >= 0.5
    off = ViewSamplingConfig()
    g0, g1 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(choose_tasks(batch, 1.0, False, g0, off), choose_tasks(batch, 1.0, False, g1))  # off = as before
    assert torch.equal(g0.get_state(), g1.get_state())  # and draws nothing extra
    strict = ViewSamplingConfig(min_observable_frac=0.5)
    task = choose_tasks(batch, 1.0, False, torch.Generator().manual_seed(1), strict)
    assert torch.equal(task == TASK_DEPTH, observable)  # every depth target observable, every observable one kept
    mono = ViewSamplingConfig(min_observable_frac=0.5, monocular_share=0.2)
    task = choose_tasks(batch, 1.0, False, torch.Generator().manual_seed(1), mono)
    assert (task[observable] == TASK_DEPTH).all()
    unobs_share = (~observable[task == TASK_DEPTH]).float().mean()
    assert 0.18 < unobs_share < 0.22  # unobservable depth targets: the explicit monocular share of them
    everything = ViewSamplingConfig(min_observable_frac=0.5, monocular_share=1.0)
    assert (choose_tasks(batch, 1.0, False, torch.Generator(), everything) == TASK_DEPTH).all()
    with pytest.raises(ValueError, match="no observability"):
        choose_tasks(_obs_batch(frac[:2]).__class__(**{**_obs_batch(frac[:2]).__dict__, "observability": None}), 1.0, False,
                     torch.Generator(), strict)
    with pytest.raises(ValueError, match="monocular_share"):
        ViewSamplingConfig(monocular_share=1.5)


def test_split_never_leaks_heldout_frames_into_a_train_source(tmp_path, seq):
    from mvgd_core.data.deepvideomvs import write_deepvideomvs
    from mvgd_core.data.sampler import SourceConfig, load_source_frames
    from mvgd_core.data.seven_scenes import write_seven_scenes

    write_deepvideomvs(seq, tmp_path / "hololens_office")  # 8 frames: train 0-5, held out 6-7
    src = dict(kind="deepvideomvs", path=str(tmp_path / "hololens_office"))
    train = load_source_frames(SourceConfig(**src, split="train"))[0]
    held = load_source_frames(SourceConfig(**src, split="heldout"))[0]
    assert [f.frame_id for f in train] == [f"{k:05d}" for k in range(6)]
    assert [f.frame_id for f in held] == ["00006", "00007"]
    assert [f.frame_id for f in load_source_frames(SourceConfig(**src, split="train", stride=4))[0]] == ["00000", "00004"]
    with pytest.raises(ValueError, match="fixed held-out part"):
        load_source_frames(SourceConfig(**src, split="all"))
    write_seven_scenes(seq, tmp_path / "tabletop_box")
    with pytest.raises(ValueError, match="evaluation-only"):
        load_source_frames(SourceConfig(kind="seven_scenes", path=str(tmp_path / "tabletop_box"), split="train"))
    assert len(load_source_frames(SourceConfig(kind="seven_scenes", path=str(tmp_path / "tabletop_box"), split="heldout"))[0]) == 8
    # A training mixture on the train split never shows a held-out pose, as target or condition.
    cfg = from_dict(DataConfig, {"image_hw": [12, 16], "length": 40, "sampling": {"min_views": 2, "max_views": 3},
                                 "sources": [{**src, "split": "train"}]})
    ds = build_dataset(cfg)
    held_t = torch.stack([torch.as_tensor(seq[k].T_wc[:3, 3], dtype=torch.float32) for k in (6, 7)])
    for i in range(40):
        s = ds[i]
        t = torch.cat([s.cond_T_wc[:, :3, 3], s.tgt_T_wc[None, :3, 3]])
        assert torch.cdist(t, held_t).min() > 1e-4


def test_seven_scenes_source_with_given_intrinsics(tmp_path, seq):
    from mvgd_core.data.sampler import SourceConfig, load_source_frames
    from mvgd_core.data.seven_scenes import write_seven_scenes

    write_seven_scenes(seq, tmp_path / "chess")
    (tmp_path / "chess" / "intrinsics.K.txt").unlink()  # 7-Scenes proper ships none
    cfg = from_dict(DataConfig, {"sources": [{"kind": "seven_scenes", "path": str(tmp_path / "chess"), "intrinsics": [40, 41, 23.5, 17.5]}]})
    frames = load_source_frames(cfg.sources[0])[0]
    assert len(frames) == 8 and frames[0].K[1, 1] == 41 and frames[0].K[0, 2] == 23.5
