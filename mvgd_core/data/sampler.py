"""Training samples from posed frame sequences: view selection, resizing, datasets, batching.

A sample is N conditioning views + 1 target (`MultiViewSample`). With probability
`p_target_in_cond` the target *is* one of the conditioning views (depth for the live camera,
which the node also conditions on); otherwise it is a held-out novel view. Conditioning views
are drawn among frames within a baseline range of the target (translation, rotation) that
overlap it (fraction of the target's pixels, back-projected with its depth, that land inside
the other view in front of it and agree with that view's depth when it has one).

Trainer usage (one view count per batch, because `collate_samples` stacks along N):

    cfg = from_dict(DataConfig, yaml_dict["data"], where="data")
    ds = build_dataset(cfg)                                  # map-style, item = (index, num_views)
    bs = ViewCountBatchSampler(len(ds), batch_size=8, min_views=cfg.sampling.min_views,
                               max_views=cfg.sampling.max_views, seed=cfg.seed, rank=r, world_size=w)
    dl = DataLoader(ds, batch_sampler=bs, collate_fn=collate_samples, num_workers=2,
                    worker_init_fn=worker_init_fn)
    for epoch in ...: bs.set_epoch(epoch); for batch in dl: ...   # batch: MultiViewBatch

`ds[i]` with a plain int draws the view count from the index; everything is deterministic
per (seed, index), independent of worker assignment. Training augmentation (view order,
crops with exact intrinsics, colour): `DataConfig.augment`, mvgd_core/data/augment.py, off
by default.
"""
from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from mvgd_core.cameras import crop_intrinsics, resize_intrinsics
from mvgd_core.data.augment import AugmentConfig, augment_views, colour_views, pre_crop_hw
from mvgd_core.data.render import ProceduralConfig, render_sequence, single_thread
from mvgd_core.data.types import Frame, MultiViewSample
from mvgd_core.observability import sample_observability


@dataclass(frozen=True)
class ViewSamplingConfig:
    """How conditioning views and targets are picked from a sequence.

    min_views/max_views: conditioning view count range N (the batch sampler draws N per batch).
    p_target_in_cond: probability that the target is one of the conditioning views.
    max_translation (m) / max_rotation_deg: baseline limit between target and each conditioning view.
    min_translation (m) / min_rotation_deg: a *novel* target differs from every conditioning
        view by at least one of these (no near-duplicates posing as novel views).
    min_overlap: per conditioning view, fraction of target pixels it sees (see `overlap_fraction`).
    max_frame_gap: only frames within this index distance of the target (0 = whole sequence).
    overlap_hw: resolution (H, W) at which overlap is computed (cheap proxy).
    p_past_only: probability that every conditioning view comes from before the target in the
        sequence, as on a robot, whose keyframes trail its live camera (SimpleRecon and
        DeepVideoMVS train on such tuples of past frames); 0 = views from both sides.
    When too few frames satisfy the limits, the best-overlapping remaining frames fill up.

    Depth-target observability control (applied by the trainer's task choice, see
    `depth_target_allowed`; every sample carries its observability, mvgd_core.observability):
    min_observable_frac: a sample may train the *depth* task only when at least this share of
        its valid target pixels is observable (moves >= 1 px at sample resolution when depth
        changes by 25 %). 0 = off. Samples below it still train RGB: turn-in-place and jitter
        samples stay in the mixture for novel-view synthesis.
    monocular_share: the explicitly kept share of *depth targets* that may be unobservable
        (per batch, in expectation): depth from appearance alone (monocular cues), which the
        live camera needs before it has moved. 0 = every depth target is observable.
    """

    min_views: int = 2
    max_views: int = 4
    p_target_in_cond: float = 0.5
    max_translation: float = 3.0
    max_rotation_deg: float = 75.0
    min_translation: float = 0.02
    min_rotation_deg: float = 2.0
    min_overlap: float = 0.2
    max_frame_gap: int = 0
    overlap_hw: tuple[int, int] = (24, 32)
    min_observable_frac: float = 0.0
    monocular_share: float = 0.0
    p_past_only: float = 0.0

    def __post_init__(self):
        if not 1 <= self.min_views <= self.max_views:
            raise ValueError(f"ViewSamplingConfig: need 1 <= min_views <= max_views, got {self.min_views}, {self.max_views}")
        if not 0.0 <= self.p_target_in_cond <= 1.0:
            raise ValueError(f"ViewSamplingConfig.p_target_in_cond must be in [0, 1], got {self.p_target_in_cond}")
        for name in ("min_observable_frac", "monocular_share", "p_past_only"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"ViewSamplingConfig.{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True)
class SourceConfig:
    """One data source of the training mixture.

    kind: "procedural" (rendered on the fly; path unused), "scene_folder" (path = a scene folder
    or a folder of scene folders), "tum" (path = a TUM RGB-D sequence folder), "rosbag" (path =
    a rosbag2 folder), "deepvideomvs" (images/, depth/, poses.txt, K.txt), "seven_scenes"
    (frame-NNNNNN.color/depth/pose files, intrinsics.K.txt). weight: relative sampling weight.
    split: "train" | "heldout" | "all" part of each sequence (mvgd_core.data.splits: the last
    quarter is held out); applied before stride. The protected real sets (hololens_office,
    tabletop_box) refuse "all", and tabletop_box has no train part.
    stride: keep every stride-th frame. max_frames: cap per sequence (0 = all).
    tum_camera: "fr1" | "fr2" | "fr3" intrinsics. intrinsics: [fx, fy, cx, cy] for a seven_scenes
    folder without intrinsics.K.txt (7-Scenes proper: [585, 585, 320, 240]).
    Topic/frame settings apply to rosbag sources.
    """

    kind: Literal["procedural", "scene_folder", "tum", "rosbag", "deepvideomvs", "seven_scenes"] = "procedural"
    weight: float = 1.0
    path: str = ""
    split: Literal["train", "heldout", "all"] = "all"
    stride: int = 1
    max_frames: int = 0
    tum_camera: str = "fr1"
    intrinsics: tuple[float, ...] = ()
    rgb_topic: str = "/camera/color/image_raw"
    depth_topic: str = "/camera/depth/image_raw"
    info_topic: str = "/camera/color/camera_info"
    fixed_frame: str = "map"


@dataclass(frozen=True)
class DataConfig:
    """The training data mixture (load with mvgd_core.config.from_dict(DataConfig, d)).

    image_hw: (H, W) of every sample. length: items per epoch. seed: base seed of everything.
    frames_per_scene: frames rendered per procedural scene (0 = max_views + 2).
    crop_to_aspect: centre-crop real images to the aspect of image_hw before resizing (else
    stretch, with fx != fy).
    augment: training augmentation (mvgd_core.data.augment; default off). Validation and
    evaluation sets never use it (model_eval builds its datasets without it).
    """

    image_hw: tuple[int, int] = (128, 128)
    sampling: ViewSamplingConfig = field(default_factory=ViewSamplingConfig)
    procedural: ProceduralConfig = field(default_factory=ProceduralConfig)
    sources: tuple[SourceConfig, ...] = (SourceConfig(),)
    length: int = 100_000
    seed: int = 0
    frames_per_scene: int = 0
    crop_to_aspect: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self):
        if not self.sources:
            raise ValueError("DataConfig.sources: at least one source is needed")
        if any(s.weight < 0 for s in self.sources) or sum(s.weight for s in self.sources) <= 0:
            raise ValueError(f"DataConfig.sources: weights must be >= 0 with a positive sum, got {[s.weight for s in self.sources]}")
        if min(self.image_hw) <= 0:
            raise ValueError(f"DataConfig.image_hw must be positive, got {self.image_hw}")


# --------------------------------------------------------------------------- resizing


def resize_frame(frame: Frame, hw: tuple[int, int], crop_to_aspect: bool = True) -> Frame:
    """Frame resized to hw = (H, W) with matching intrinsics.

    RGB uses cv2.INTER_AREA (anti-aliased downscale), depth nearest-neighbour (no mixing of
    foreground and background depths). With crop_to_aspect, first centre-crop to W/H.
    """
    H, W = hw
    rgb, depth, K = frame.rgb, frame.depth, torch.as_tensor(frame.K)
    if crop_to_aspect:
        h0, w0 = rgb.shape[:2]
        if w0 * H > W * h0:  # too wide
            cw = int(round(h0 * W / H))
            left = (w0 - cw) // 2
            rgb, K = rgb[:, left : left + cw], crop_intrinsics(K, 0, left)
            depth = None if depth is None else depth[:, left : left + cw]
        elif w0 * H < W * h0:  # too tall
            ch = int(round(w0 * H / W))
            top = (h0 - ch) // 2
            rgb, K = rgb[top : top + ch], crop_intrinsics(K, top, 0)
            depth = None if depth is None else depth[top : top + ch]
    src = rgb.shape[:2]
    if src != (H, W):
        rgb = cv2.resize(np.ascontiguousarray(rgb), (W, H), interpolation=cv2.INTER_AREA)
        depth = None if depth is None else cv2.resize(np.ascontiguousarray(depth), (W, H), interpolation=cv2.INTER_NEAREST)
        K = resize_intrinsics(K, src, (H, W))
    return Frame(rgb=rgb, K=K.numpy(), T_wc=frame.T_wc, depth=depth, stamp=frame.stamp, frame_id=frame.frame_id)


# --------------------------------------------------------------------------- view selection


def _rotation_deg(Ra: np.ndarray, Rb: np.ndarray) -> np.ndarray:
    """Angle (degrees) of the relative rotation between (..., 3, 3) rotations."""
    cos = (np.einsum("...ij,...ij->...", Ra, Rb) - 1.0) / 2.0  # trace(Ra^T Rb) = sum(Ra * Rb)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def overlap_fraction(tgt: Frame, other: Frame, hw: tuple[int, int] = (24, 32), default_depth: float = 2.0, rel_tol: float = 0.1) -> float:
    """Fraction of `tgt`'s pixels that `other` sees.

    Target pixels (subsampled to hw) are back-projected with the target depth (or, without
    depth, at `default_depth` m: a frustum proxy), projected into `other`, and counted when
    they land inside its image in front of it and, if `other` has depth, within rel_tol of it
    (occlusion-aware). Pixels with invalid target depth count as not visible.
    """
    h, w = hw
    H, W = tgt.height, tgt.width
    v, u = np.meshgrid((np.arange(h) + 0.5) * H / h - 0.5, (np.arange(w) + 0.5) * W / w - 0.5, indexing="ij")
    if tgt.depth is not None:
        z = tgt.depth[np.clip(np.round(v), 0, H - 1).astype(int), np.clip(np.round(u), 0, W - 1).astype(int)]
    else:
        z = np.full(v.shape, default_depth)
    pix = np.stack([u, v, np.ones_like(u)], -1).reshape(-1, 3)
    z = z.reshape(-1)
    p_c = (pix @ np.linalg.inv(tgt.K).T) * z[:, None]
    p_w = p_c @ tgt.T_wc[:3, :3].T + tgt.T_wc[:3, 3]
    T_cw = np.linalg.inv(other.T_wc)
    q = p_w @ T_cw[:3, :3].T + T_cw[:3, 3]
    zq = q[:, 2]
    uvw = q @ other.K.T
    with np.errstate(divide="ignore", invalid="ignore"):
        uo, vo = uvw[:, 0] / zq, uvw[:, 1] / zq
    ok = (z > 0) & (zq > 1e-3) & (uo > -0.5) & (uo < other.width - 0.5) & (vo > -0.5) & (vo < other.height - 0.5)
    if other.depth is not None and ok.any():
        d = other.depth[np.round(vo[ok]).astype(int).clip(0, other.height - 1), np.round(uo[ok]).astype(int).clip(0, other.width - 1)]
        vis = (d <= 0) | (np.abs(d - zq[ok]) <= rel_tol * zq[ok])  # unknown depth: give benefit of the doubt
        ok[np.flatnonzero(ok)] = vis
    return float(ok.mean())


def select_views(frames: list[Frame], num_views: int, rng: np.random.Generator, cfg: ViewSamplingConfig = ViewSamplingConfig()) -> tuple[list[int], int]:
    """Pick (conditioning indices (num_views,), target index) from a sequence.

    See the module docstring; raises ValueError when the sequence is too short.
    """
    n = len(frames)
    tgt_in_cond = rng.random() < cfg.p_target_in_cond
    need = num_views if tgt_in_cond else num_views + 1
    if n < need:
        raise ValueError(f"select_views: sequence has {n} frames, need {need} for {num_views} conditioning views")
    past = cfg.p_past_only > 0 and rng.random() < cfg.p_past_only  # drawn only when on: default streams unchanged
    t = int(rng.integers(need - 1, n)) if past else int(rng.integers(n))  # past only: enough frames before it
    before = (lambda i: i < t) if past else (lambda i: i != t)
    others = np.array([i for i in range(n) if before(i) and (cfg.max_frame_gap <= 0 or abs(i - t) <= cfg.max_frame_gap)])
    if len(others) < need - 1:
        others = np.array([i for i in range(n) if before(i)])
    T = np.stack([frames[i].T_wc for i in others])
    dist = np.linalg.norm(T[:, :3, 3] - frames[t].T_wc[:3, 3], axis=1)
    rot = _rotation_deg(T[:, :3, :3], frames[t].T_wc[:3, :3])
    in_range = (dist <= cfg.max_translation) & (rot <= cfg.max_rotation_deg)
    if not tgt_in_cond:  # a novel target must not be a near-duplicate of a conditioning view
        in_range &= (dist >= cfg.min_translation) | (rot >= cfg.min_rotation_deg)
    # Overlap only for the cheap-test survivors (plus a few others in case too few survive).
    order = np.concatenate([rng.permutation(np.flatnonzero(in_range)), rng.permutation(np.flatnonzero(~in_range))])[:64]
    ov = np.array([overlap_fraction(frames[t], frames[others[j]], cfg.overlap_hw) for j in order])
    good = order[in_range[order] & (ov >= cfg.min_overlap)]
    k = num_views - 1 if tgt_in_cond else num_views
    if len(good) >= k:
        chosen = rng.choice(good, size=k, replace=False)
    else:  # fill up with the best-overlapping remaining frames
        taken = set(good.tolist())
        rest = [j for j in order[np.argsort(-ov, kind="stable")] if j not in taken]
        chosen = np.concatenate([good, np.asarray(rest[: k - len(good)], dtype=int)]).astype(int)
    cond = [int(others[j]) for j in chosen]
    if tgt_in_cond:
        cond.insert(int(rng.integers(num_views)), t)
    return cond, t


def make_sample(frames: list[Frame], cond_idx: list[int], tgt_idx: int) -> MultiViewSample:
    """Stack already-resized frames (same size) into a MultiViewSample (float32 tensors).

    Target depth is zeros (invalid) when the target frame has none; cond_depth is None unless
    every conditioning frame has depth. observability is measured at the frames' own size
    (the training resolution, i.e. the model's).
    """
    sizes = {(frames[i].height, frames[i].width) for i in [*cond_idx, tgt_idx]}
    if len(sizes) != 1:
        raise ValueError(f"make_sample: frames have different sizes {sorted(sizes)}; resize them first (resize_frame)")

    def rgb(f):
        return torch.from_numpy(np.ascontiguousarray(f.rgb)).permute(2, 0, 1).float() / 255.0

    def depth(f):
        return torch.zeros(f.height, f.width) if f.depth is None else torch.from_numpy(np.ascontiguousarray(f.depth)).float()

    cond = [frames[i] for i in cond_idx]
    tgt = frames[tgt_idx]
    sample = MultiViewSample(
        cond_rgb=torch.stack([rgb(f) for f in cond]),
        cond_K=torch.stack([torch.as_tensor(f.K, dtype=torch.float32) for f in cond]),
        cond_T_wc=torch.stack([torch.as_tensor(f.T_wc, dtype=torch.float32) for f in cond]),
        tgt_rgb=rgb(tgt),
        tgt_depth=depth(tgt),
        tgt_K=torch.as_tensor(tgt.K, dtype=torch.float32),
        tgt_T_wc=torch.as_tensor(tgt.T_wc, dtype=torch.float32),
        cond_depth=None if any(f.depth is None for f in cond) else torch.stack([depth(f) for f in cond]),
    )
    sample.observability = sample_observability(sample, model_hw=None).as_tensor()
    return sample


def augment_rng(seed: int, idx: int) -> np.random.Generator:
    """The augmentation generator of item idx: its own stream of (seed, idx), so turning
    augmentation on or off leaves scene and view choice unchanged."""
    return np.random.default_rng([seed, idx, 2])


def augmented_sample(frames: list[Frame], cond: list[int], tgt: int, image_hw: tuple[int, int],
                     augment: AugmentConfig, rng: np.random.Generator | None) -> MultiViewSample:
    """make_sample with cfg `augment` applied (mvgd_core.data.augment): view order and crops on
    the frames (frames at pre_crop_hw(image_hw, augment) when cropping), observability on the
    augmented views, then colour. Augmentation off: exactly make_sample(frames, cond, tgt)."""
    if not augment.enabled:
        return make_sample(frames, cond, tgt)
    if rng is None:
        raise ValueError("augmented_sample: augmentation is on but no generator was given (augment_rng(seed, index))")
    frames, cond, tgt = augment_views(frames, cond, tgt, tuple(image_hw), augment, rng)
    sample = make_sample(frames, cond, tgt)
    if augment.colour_on:
        sample.cond_rgb, sample.tgt_rgb = colour_views(sample.cond_rgb, sample.tgt_rgb, cond, tgt, augment, rng)
    return sample


def depth_target_allowed(observability: torch.Tensor | None, cfg: ViewSamplingConfig, gen: torch.Generator | None = None,
                         candidates: torch.Tensor | None = None) -> torch.Tensor | None:
    """(B,) bool: which samples may train the depth task under cfg's observability control.

    observability (B, 2) [frac, median_disparity_px] (MultiViewBatch.observability);
    candidates (B,) bool: the samples that would train depth without the control (default all).
    Observable samples (frac >= cfg.min_observable_frac) are always allowed. Unobservable
    candidates are kept with probability q chosen so that, in expectation, unobservable ones
    make up cfg.monocular_share of the batch's depth targets:
        q = m * n_obs / ((1 - m) * n_unobs), clipped to [0, 1]   (m = monocular_share),
    so kept / (n_obs + kept) = m (a batch without observable candidates keeps none; m = 1 keeps
    all). Returns None when the control is off (min 0): the caller draws nothing and behaves
    exactly as before. Raises when the control is on but the batch has no observability.
    """
    if cfg.min_observable_frac <= 0:
        return None
    if observability is None:
        raise ValueError("depth_target_allowed: min_observable_frac is set but the batch has no observability")
    ok = observability.detach().cpu()[:, 0] >= cfg.min_observable_frac  # (B,)
    cand = torch.ones_like(ok) if candidates is None else candidates.detach().cpu().bool()
    n_obs, n_unobs = int((cand & ok).sum()), int((cand & ~ok).sum())
    m = cfg.monocular_share
    q = 1.0 if m >= 1.0 else (min(1.0, m * n_obs / ((1.0 - m) * n_unobs)) if n_unobs else 0.0)
    mono = torch.rand(ok.shape[0], generator=gen) < q  # (B,)
    return ok | mono


# --------------------------------------------------------------------------- datasets


def _item(item, seed: int, min_views: int, max_views: int) -> tuple[int, int, np.random.Generator]:
    """(index, num_views, rng) from an int or an (index, num_views) item; rng depends on (seed, index) only."""
    idx, n = (int(item[0]), int(item[1])) if isinstance(item, (tuple, list)) else (int(item), None)
    rng = np.random.default_rng([seed, idx])
    if n is None:
        n = int(rng.integers(min_views, max_views + 1))
    return idx, n, rng


class ProceduralDataset(Dataset):
    """Rendered-on-the-fly samples: item -> new random scene + trajectory -> MultiViewSample.

    Deterministic per (seed, index) at any resolution; item is an int or (index, num_views).
    frames_per_scene frames are rendered per item (0 = max_views + 2), at image_hw directly
    (at pre_crop_hw(image_hw, augment) when augment crops). augment: default off.
    """

    def __init__(
        self,
        image_hw: tuple[int, int] = (128, 128),
        sampling: ViewSamplingConfig = ViewSamplingConfig(),
        procedural: ProceduralConfig = ProceduralConfig(),
        length: int = 100_000,
        seed: int = 0,
        frames_per_scene: int = 0,
        augment: AugmentConfig = AugmentConfig(),
    ):
        self.image_hw, self.sampling, self.procedural = tuple(image_hw), sampling, procedural
        self.length, self.seed = length, seed
        self.frames_per_scene = frames_per_scene or sampling.max_views + 2
        self.augment = augment

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, item) -> MultiViewSample:
        idx, n, rng = _item(item, self.seed, self.sampling.min_views, self.sampling.max_views)
        scene_seed = int(rng.integers(2**62))
        with single_thread():  # many small ops: threads only add barrier waits
            hw = pre_crop_hw(self.image_hw, self.augment)
            frames = render_sequence(scene_seed, max(self.frames_per_scene, n + 1), *hw, cfg=self.procedural)
            cond, tgt = select_views(frames, n, rng, self.sampling)
            return augmented_sample(frames, cond, tgt, self.image_hw, self.augment, augment_rng(self.seed, idx))


class SequenceDataset(Dataset):
    """Samples from read frame sequences (scene folders, TUM, bags): list[list[Frame]].

    Frames are resized to image_hw once at construction (to pre_crop_hw(image_hw, augment) when
    augment crops). Each item picks a sequence (weighted by length, among those long enough)
    and views within it; deterministic per (seed, index). augment: default off.
    """

    def __init__(
        self,
        sequences: list[list[Frame]],
        image_hw: tuple[int, int] = (128, 128),
        sampling: ViewSamplingConfig = ViewSamplingConfig(),
        length: int = 100_000,
        seed: int = 0,
        crop_to_aspect: bool = True,
        augment: AugmentConfig = AugmentConfig(),
    ):
        hw = pre_crop_hw(tuple(image_hw), augment)
        self.sequences = [[resize_frame(f, hw, crop_to_aspect) for f in seq] for seq in sequences if len(seq)]
        self.augment = augment
        if not self.sequences:
            raise ValueError("SequenceDataset: no frames in any sequence")
        self.sampling, self.length, self.seed = sampling, length, seed
        self.image_hw = tuple(image_hw)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, item) -> MultiViewSample:
        idx, n, rng = _item(item, self.seed, self.sampling.min_views, self.sampling.max_views)
        lens = np.array([len(s) for s in self.sequences], dtype=np.float64)
        w = lens * (lens > n)  # sequences with at least n + 1 frames
        if w.sum() == 0:
            raise ValueError(f"SequenceDataset: no sequence has more than {n} frames (lengths {lens.astype(int).tolist()})")
        seq = self.sequences[int(rng.choice(len(lens), p=w / w.sum()))]
        cond, tgt = select_views(seq, n, rng, self.sampling)
        with single_thread():
            return augmented_sample(seq, cond, tgt, self.image_hw, self.augment, augment_rng(self.seed, idx))


class MixtureDataset(Dataset):
    """Weighted mixture of datasets with the same item protocol; source chosen per (seed, index)."""

    def __init__(self, datasets: list[Dataset], weights: list[float], length: int, seed: int = 0):
        if len(datasets) != len(weights) or not datasets:
            raise ValueError(f"MixtureDataset: {len(datasets)} datasets for {len(weights)} weights")
        w = np.asarray(weights, dtype=np.float64)
        self.datasets, self.p, self.length, self.seed = datasets, w / w.sum(), length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, item) -> MultiViewSample:
        idx = int(item[0]) if isinstance(item, (tuple, list)) else int(item)
        src = int(np.random.default_rng([self.seed, idx, 1]).choice(len(self.datasets), p=self.p))
        return self.datasets[src][item]


def load_source_frames(src: SourceConfig) -> list[list[Frame]]:
    """Read the sequences of a non-procedural source (lazy imports keep readers optional)."""
    from pathlib import Path

    from mvgd_core.data.splits import split_indices

    path = Path(src.path)
    _check_protected(src, path)
    if src.kind == "deepvideomvs":
        from mvgd_core.data.deepvideomvs import list_images, read_deepvideomvs

        idx = split_indices(path.name, len(list_images(path)), src.split)
        seqs = [read_deepvideomvs(path, stride=max(src.stride, 1), max_frames=src.max_frames, indices=idx)]
        return _nonempty(seqs, src)
    if src.kind == "seven_scenes":
        from mvgd_core.data.seven_scenes import list_seven_scenes, read_seven_scenes

        idx = split_indices(path.name, len(list_seven_scenes(path)), src.split)
        K = None
        if src.intrinsics:
            if len(src.intrinsics) != 4:
                raise ValueError(f"source {src.path}: intrinsics must be [fx, fy, cx, cy], got {list(src.intrinsics)}")
            fx, fy, cx, cy = src.intrinsics
            K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        seqs = [read_seven_scenes(path, stride=max(src.stride, 1), max_frames=src.max_frames, indices=idx, K=K)]
        return _nonempty(seqs, src)
    if src.kind == "scene_folder":
        from mvgd_core.data.scene_folder import find_scene_folders, read_scene_folder

        seqs = [read_scene_folder(p) for p in find_scene_folders(path)]
    elif src.kind == "tum":
        from mvgd_core.data.tum import read_tum

        seqs = [read_tum(path, camera=src.tum_camera)]
    elif src.kind == "rosbag":
        from mvgd_core.data.rosbag_io import read_bag

        seqs = [read_bag(path, rgb_topic=src.rgb_topic, depth_topic=src.depth_topic, info_topic=src.info_topic, fixed_frame=src.fixed_frame)]
    else:
        raise ValueError(f"load_source_frames: {src.kind!r} has no frames on disk")
    out = []
    for s in seqs:
        s = [s[i] for i in split_indices(path.name, len(s), src.split)]  # split first: index in the full sequence
        s = s[:: max(src.stride, 1)]
        out.append(s[: src.max_frames] if src.max_frames > 0 else s)
    return _nonempty(out, src)


def _check_protected(src: SourceConfig, path) -> None:
    """The fixed real evaluation sets may enter a data mixture only through their split."""
    from mvgd_core.data.splits import EVAL_ONLY, HOLOLENS_NAME

    if path.name in (HOLOLENS_NAME, *EVAL_ONLY) and src.split == "all":
        raise ValueError(f"source {src.path}: {path.name} has a fixed held-out part (mvgd_core/data/splits.py); "
                         f"set split: train (training) or split: heldout (evaluation), not all")
    if path.name in EVAL_ONLY and src.split == "train":
        raise ValueError(f"source {src.path}: {path.name} is evaluation-only; it has no train split")


def _nonempty(seqs: list[list[Frame]], src: SourceConfig) -> list[list[Frame]]:
    if not any(len(s) for s in seqs):
        raise ValueError(f"source {src.kind} {src.path}: no frames in split {src.split!r}")
    return seqs


def build_dataset(cfg: DataConfig) -> Dataset:
    """The training dataset of a DataConfig: one dataset per source, mixed by weight."""
    datasets = []
    for i, src in enumerate(cfg.sources):
        if src.kind == "procedural":
            datasets.append(ProceduralDataset(cfg.image_hw, cfg.sampling, cfg.procedural, cfg.length, cfg.seed + i, cfg.frames_per_scene, cfg.augment))
        else:
            datasets.append(SequenceDataset(load_source_frames(src), cfg.image_hw, cfg.sampling, cfg.length, cfg.seed + i, cfg.crop_to_aspect, cfg.augment))
    if len(datasets) == 1:
        return datasets[0]
    return MixtureDataset(datasets, [s.weight for s in cfg.sources], cfg.length, cfg.seed)


# --------------------------------------------------------------------------- batching


class ViewCountBatchSampler(Sampler):
    """Batches of (index, num_views) items with one view count per batch.

    Indices are shuffled per epoch (set_epoch) from `seed`; the view count of each batch is
    drawn uniformly in [min_views, max_views]. For DDP, rank r of world_size w takes every
    w-th batch, so ranks see disjoint data and the same number of batches.
    """

    def __init__(self, num_items: int, batch_size: int, min_views: int, max_views: int, seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1):
        if batch_size < 1 or num_items < batch_size * world_size:
            raise ValueError(f"ViewCountBatchSampler: {num_items} items cannot fill batches of {batch_size} x {world_size} ranks")
        self.num_items, self.batch_size = num_items, batch_size
        self.min_views, self.max_views = min_views, max_views
        self.seed, self.shuffle, self.rank, self.world_size = seed, shuffle, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_items // (self.batch_size * self.world_size)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.num_items) if self.shuffle else np.arange(self.num_items)
        counts = rng.integers(self.min_views, self.max_views + 1, size=self.num_items // self.batch_size)
        for b in range(len(self)):
            g = b * self.world_size + self.rank  # global batch number
            idx = order[g * self.batch_size : (g + 1) * self.batch_size]
            yield [(int(i), int(counts[g])) for i in idx]


def worker_init_fn(worker_id: int) -> None:
    """DataLoader worker set-up: one torch thread per worker (rendering is already batched).

    Workers ignore SIGTERM and SIGINT: `kill -TERM -PGID`, `timeout` and Ctrl-C reach the whole
    process group, and a worker dying first would crash the trainer before its graceful stop
    (checkpoint, then exit). The trainer ends its workers itself when it stops.
    """
    torch.set_num_threads(1)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
