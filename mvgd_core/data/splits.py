"""The fixed train / held-out split of the real sequences (decided once; docs/DATA_FORMATS.md).

- hololens_office (373 frames, DeepVideoMVS layout): frames [0, 279) of the walk, in sorted
  file order, may be trained on; frames [279, 373) -- the last quarter, the kitchen end of
  the walk -- are the held-out evaluation set and are never trained on. A contiguous cut in
  time, not an interleaving: neighbouring frames see the same surfaces, so interleaving would
  leak. (The frames just before and after the cut still overlap; an evaluation that wants no
  shared surface at all can drop the first held-out frames.)
- tabletop_box (50 frames, 7-Scenes layout): evaluation only, every frame held out.
- Any other sequence read through a training config follows the same rule as HoloLens
  (`temporal_split`), so `split: train` never takes the last quarter of anything.

Indices are positions in the full sorted sequence, before any stride (read_deepvideomvs's
`indices`). Conditioning views for a held-out target come from the held-out part only.
"""
from __future__ import annotations

from typing import Literal

import numpy as np

Split = Literal["train", "heldout", "all"]
SPLITS = ("train", "heldout", "all")
HELDOUT_FRACTION = 0.25  # the last quarter of a sequence is held out
HOLOLENS_NAME = "hololens_office"
HOLOLENS_NUM_FRAMES = 373
TABLETOP_NAME = "tabletop_box"
EVAL_ONLY = (TABLETOP_NAME,)  # sequences no training config may read at all


def temporal_split(num_frames: int, heldout_fraction: float = HELDOUT_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, heldout_idx): the first frames train, the last ceil(fraction * n) are held out."""
    if num_frames < 0 or not 0.0 <= heldout_fraction <= 1.0:
        raise ValueError(f"temporal_split: need num_frames >= 0 and fraction in [0, 1], got {num_frames}, {heldout_fraction}")
    cut = num_frames - int(np.ceil(heldout_fraction * num_frames))
    return np.arange(cut), np.arange(cut, num_frames)


def hololens_split(num_frames: int = HOLOLENS_NUM_FRAMES) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, heldout_idx) of the HoloLens walk: [0, 279) and [279, 373) for 373 frames."""
    return temporal_split(num_frames)


def tabletop_split(num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, heldout_idx) of the tabletop set: nothing to train on, everything held out."""
    return np.arange(0), np.arange(num_frames)


def split_indices(name: str, num_frames: int, split: Split) -> np.ndarray:
    """Frame indices of `split` for the sequence folder called `name` (e.g. "hololens_office").

    Evaluation-only sequences (EVAL_ONLY) have an empty train part; every other sequence
    follows temporal_split. "all" is everything (for evaluation and user data, not for the
    protected sequences in a training config: see mvgd_core.data.sampler.load_source_frames).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if split == "all":
        return np.arange(num_frames)
    train, held = tabletop_split(num_frames) if name in EVAL_ONLY else temporal_split(num_frames)
    return train if split == "train" else held
