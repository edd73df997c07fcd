"""The trainer's data: the training mixture, the endless per-rank batch stream, and each sample's task.

Every item is a pure function of (seed, index), so the data position (micro-batches consumed)
is all a resume needs, and worker scheduling never changes the data.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from mvgd_core.data.augment import AugmentConfig, pre_crop_hw
from mvgd_core.data.render import render_sequence
from mvgd_core.data.sampler import (DataConfig, MixtureDataset, ProceduralDataset, SequenceDataset, ViewCountBatchSampler, augment_rng,
                                    augmented_sample, depth_target_allowed, load_source_frames, select_views, worker_init_fn, _item)
from mvgd_core.data.types import MultiViewBatch, collate_samples
from mvgd_core.diffusion import TASK_DEPTH, TASK_RGB
from mvgd_core.train_config import TrainConfig
from mvgd_core.train_state import rng_state, set_rng_state


class SceneReuseDataset(Dataset):
    """Procedural items with each rendered scene shared by `reuse` consecutive indices.

    Rendering costs about as much as a training step of the small model on CPU; drawing several
    (conditioning set, target) pairs from one longer rendered sequence roughly halves data cost.
    Deterministic per index: the scene depends on (seed, index // reuse), the views and the
    augmentation (default off; scenes rendered at pre_crop_hw when it crops) on (seed, index).
    """

    def __init__(self, image_hw, sampling, procedural, length: int, seed: int, frames_per_scene: int, reuse: int,
                 augment: AugmentConfig = AugmentConfig()):
        self.image_hw, self.sampling, self.procedural = tuple(image_hw), sampling, procedural
        self.length, self.seed, self.reuse, self.augment = length, seed, reuse, augment
        self.frames = max(frames_per_scene, sampling.max_views + 2)
        self._cache: dict[int, list] = {}

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, item):
        idx, n, rng = _item(item, self.seed, self.sampling.min_views, self.sampling.max_views)
        sid = idx // self.reuse
        if sid not in self._cache:
            if len(self._cache) >= 8:
                self._cache.pop(next(iter(self._cache)))
            scene_seed = int(np.random.default_rng([self.seed, sid, 7]).integers(2**62))
            self._cache[sid] = render_sequence(scene_seed, self.frames, *pre_crop_hw(self.image_hw, self.augment), cfg=self.procedural)
        frames = self._cache[sid]
        cond, tgt = select_views(frames, n, rng, self.sampling)
        return augmented_sample(frames, cond, tgt, self.image_hw, self.augment, augment_rng(self.seed, idx))


def build_train_dataset(d: DataConfig, scene_reuse: int = 1) -> Dataset:
    """mvgd_core.data.sampler.build_dataset, with SceneReuseDataset for procedural sources when scene_reuse > 1."""
    datasets = []
    for i, src in enumerate(d.sources):
        if src.kind == "procedural" and scene_reuse > 1:
            datasets.append(SceneReuseDataset(d.image_hw, d.sampling, d.procedural, d.length, d.seed + i, d.frames_per_scene, scene_reuse, d.augment))
        elif src.kind == "procedural":
            datasets.append(ProceduralDataset(d.image_hw, d.sampling, d.procedural, d.length, d.seed + i, d.frames_per_scene, d.augment))
        else:
            datasets.append(SequenceDataset(load_source_frames(src), d.image_hw, d.sampling, d.length, d.seed + i, d.crop_to_aspect, d.augment))
    return datasets[0] if len(datasets) == 1 else MixtureDataset(datasets, [s.weight for s in d.sources], d.length, d.seed)


class _SkipFirst(Sampler):
    """The batches of `batch_sampler` after the first `skip` (resume mid-epoch without loading them)."""

    def __init__(self, batch_sampler, skip: int):
        self.bs, self.skip = batch_sampler, skip

    def __len__(self):
        return len(self.bs) - self.skip

    def __iter__(self):
        it = iter(self.bs)
        for _ in range(self.skip):
            next(it)
        yield from it


def batch_stream(ds: Dataset, cfg: TrainConfig, start: int, rank: int, world: int):
    """Endless MultiViewBatches for this rank, starting after `start` micro-batches (the data position).

    Ranks take disjoint batches (ViewCountBatchSampler rank/world_size); each item is a pure function
    of (seed, index), so worker scheduling never changes the data. The DataLoader gets its own
    generator so creating iterators never consumes the global torch RNG.
    """
    bs = ViewCountBatchSampler(len(ds), cfg.batch_size, cfg.data.sampling.min_views, cfg.data.sampling.max_views,
                               seed=cfg.seed, shuffle=cfg.scene_reuse <= 1, rank=rank, world_size=world)
    epoch, offset = divmod(start, len(bs))
    while True:
        bs.set_epoch(epoch)
        dl = DataLoader(ds, batch_sampler=_SkipFirst(bs, offset), collate_fn=collate_samples, num_workers=cfg.num_workers,
                        worker_init_fn=worker_init_fn, generator=torch.Generator().manual_seed(cfg.seed),
                        prefetch_factor=4 if cfg.num_workers else None, persistent_workers=False)
        yield from dl
        epoch, offset = epoch + 1, 0


def target_is_conditioning(batch: MultiViewBatch, tol: float = 1e-5) -> torch.Tensor:
    """(B,) bool: the target pose equals one of the conditioning poses."""
    diff = (batch.cond_T_wc - batch.tgt_T_wc[:, None]).abs().flatten(2).amax(-1)  # (B, N)
    return diff.amin(-1) <= tol


def choose_tasks(batch: MultiViewBatch, depth_ratio: float, rgb_on_cond_targets: bool, gen: torch.Generator, sampling=None) -> torch.Tensor:
    """(B,) long task per sample (see module docstring); draws from `gen` only.

    sampling: the data's ViewSamplingConfig; its observability control (min_observable_frac,
    monocular_share) turns unobservable depth targets into RGB (data.sampler.depth_target_allowed).
    """
    B = batch.tgt_rgb.shape[0]
    task = torch.where(torch.rand(B, generator=gen) < depth_ratio, TASK_DEPTH, TASK_RGB)
    if not rgb_on_cond_targets:
        task = torch.where(target_is_conditioning(batch).cpu(), TASK_DEPTH, task)
    has_depth = (batch.tgt_depth > 0).flatten(1).any(1).cpu()
    allowed = None if sampling is None else depth_target_allowed(batch.observability, sampling, gen, (task == TASK_DEPTH) & has_depth)
    if allowed is not None:
        has_depth = has_depth & allowed
    return torch.where(has_depth, task, TASK_RGB).long()


def training_depth_median(ds: Dataset, num: int = 48) -> float | None:
    """Median valid depth of the first `num` training items (mvgd_core.model_eval.dataset_depth_median),
    with every global RNG restored afterwards so training is bit-identical with or without it."""
    from mvgd_core.model_eval import dataset_depth_median

    gen = torch.Generator()
    saved = rng_state(gen)
    try:
        return dataset_depth_median(ds, min(num, len(ds)))
    except ValueError:  # no depth in the data
        return None
    finally:
        set_rng_state(saved, gen)
