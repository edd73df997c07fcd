"""Per-frame work kept across predictions: a conditioning frame's image at the model's size and its
matching features.

Why: a robot's node predicts from a sliding set of keyframes, so consecutive predictions share
most of their views (8 views, usually one new). Resizing a view (cv2 INTER_AREA) and running the
feature encoder on it depend on that view's image alone; at 8 views they were ~3 + ~4 ms of a
~100 ms live depth on 2 CPU cores, spent again for every prediction. (DeepVideoMVS' online
script, dvmvs/pairnet/run-testing-online.py, recomputes its measurement frames' features at
every keyframe too; on a GPU that is cheap, on 2 CPU cores it is not.)

Keys are frame objects (identity, held weakly): the node's keyframe buffer hands the same Frame
objects to every prediction, and a frame is never modified after it is made. An entry answers
only while its frame is alive and still holds the same image array and intrinsics; a bounded LRU
keeps memory fixed whatever the caller does.
"""
from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from mvgd_core.data.types import Frame


@dataclass
class CachedView:
    """rgb (3, h, w) float32 CPU in [0, 1] at the model's size; K (3, 3) float64 for that size;
    feats (C, h/s, w/s) on the model's device, or None (models without matching features)."""

    rgb: torch.Tensor
    K: torch.Tensor
    feats: torch.Tensor | None


@dataclass
class _Entry:
    frame: weakref.ref
    rgb_id: int  # the image array it was computed from (a frame given a new image is a miss)
    K: np.ndarray
    view: CachedView


class ViewCache:
    """LRU of CachedView by frame identity. Not thread-safe: one caller at a time (the predictor's
    inference thread)."""

    def __init__(self, capacity: int = 64):
        if capacity < 0:
            raise ValueError(f"ViewCache: capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def get(self, frame: Frame) -> CachedView | None:
        e = self._entries.get(id(frame))
        if e is None or e.frame() is not frame or e.rgb_id != id(frame.rgb) or not np.array_equal(e.K, frame.K):
            self.misses += 1
            return None
        self._entries.move_to_end(id(frame))
        self.hits += 1
        return e.view

    def put(self, frame: Frame, view: CachedView) -> None:
        """Keep a copy of `view` for `frame`: its tensors are often slices of one batch, and a kept
        slice would keep the whole batch's memory alive."""
        if self.capacity == 0:
            return
        kept = CachedView(view.rgb.clone(), view.K.clone(), None if view.feats is None else view.feats.clone())
        self._entries[id(frame)] = _Entry(weakref.ref(frame), id(frame.rgb), np.array(frame.K, copy=True), kept)
        self._entries.move_to_end(id(frame))
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def views(self, frames: list[Frame], make: Callable[[list[Frame]], list[CachedView]]) -> list[CachedView]:
        """CachedView per frame, in order: cached ones as they are, the others from one call of
        make(missing frames) (batched: one feature-encoder pass for all new views), then kept."""
        out = [self.get(f) for f in frames]
        missing = [i for i, v in enumerate(out) if v is None]
        if missing:
            for i, v in zip(missing, make([frames[i] for i in missing])):
                out[i] = v
                self.put(frames[i], v)
        return out
