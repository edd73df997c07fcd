"""The sample types every data source produces and every consumer reads.

`Frame`: one posed RGB(-D) image, numpy, as read from disk, a bag or the renderer.
`MultiViewSample`: N conditioning views + one target view, torch, what the model trains on.
`MultiViewBatch`: samples stacked along a leading batch dimension B (same N in a batch).

Conventions (see mvgd_core/cameras.py): OpenCV optical camera frames, camera-to-world poses,
metres; depth is z-depth, 0 marks invalid pixels.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from mvgd_core.cameras import validate_intrinsics, validate_pose


@dataclass
class Frame:
    """One posed image.

    rgb: (H, W, 3) uint8. depth: (H, W) float32 metres, 0 = invalid, or None.
    K: (3, 3) float64 intrinsics for this image size. T_wc: (4, 4) float64 camera-to-world.
    stamp: seconds (float). frame_id: the optical frame name (ROS) or a file stem.
    """

    rgb: np.ndarray
    K: np.ndarray
    T_wc: np.ndarray
    depth: np.ndarray | None = None
    stamp: float = 0.0
    frame_id: str = ""

    def __post_init__(self):
        where = f"frame {self.frame_id or '?'} @ {self.stamp:.6f}"
        if self.rgb.ndim != 3 or self.rgb.shape[2] != 3 or self.rgb.dtype != np.uint8:
            raise ValueError(f"{where}: rgb must be (H, W, 3) uint8, got {self.rgb.shape} {self.rgb.dtype}")
        if self.depth is not None:
            if self.depth.shape != self.rgb.shape[:2]:
                raise ValueError(f"{where}: depth {self.depth.shape} does not match rgb {self.rgb.shape[:2]}")
            self.depth = self.depth.astype(np.float32, copy=False)
        self.K = np.asarray(self.K, dtype=np.float64)
        self.T_wc = np.asarray(self.T_wc, dtype=np.float64)
        try:
            validate_intrinsics(self.K)
            validate_pose(self.T_wc)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from exc

    @property
    def height(self) -> int:
        return self.rgb.shape[0]

    @property
    def width(self) -> int:
        return self.rgb.shape[1]


@dataclass
class MultiViewSample:
    """N conditioning views and one target view (float32 tensors).

    cond_rgb: (N, 3, H, W) in [0, 1]; cond_K: (N, 3, 3); cond_T_wc: (N, 4, 4);
    cond_depth: (N, H, W) metres (0 invalid), or None (the model never sees it; baselines may).
    tgt_rgb: (3, H, W) in [0, 1]; tgt_depth: (H, W) metres (0 invalid); tgt_K: (3, 3); tgt_T_wc: (4, 4).
    observability: (2,) float32 [observable_frac, median_disparity_px] of the target's depth
    from the conditioning views at the sample's resolution (mvgd_core.observability), or None.
    """

    cond_rgb: torch.Tensor
    cond_K: torch.Tensor
    cond_T_wc: torch.Tensor
    tgt_rgb: torch.Tensor
    tgt_depth: torch.Tensor
    tgt_K: torch.Tensor
    tgt_T_wc: torch.Tensor
    cond_depth: torch.Tensor | None = None
    observability: torch.Tensor | None = None

    @property
    def num_views(self) -> int:
        return self.cond_rgb.shape[0]


@dataclass
class MultiViewBatch:
    """MultiViewSample fields with a leading batch dimension B: cond_rgb (B, N, 3, H, W), ...,
    observability (B, 2) (None unless every sample has it)."""

    cond_rgb: torch.Tensor
    cond_K: torch.Tensor
    cond_T_wc: torch.Tensor
    tgt_rgb: torch.Tensor
    tgt_depth: torch.Tensor
    tgt_K: torch.Tensor
    tgt_T_wc: torch.Tensor
    cond_depth: torch.Tensor | None = None
    observability: torch.Tensor | None = None

    def to(self, device) -> "MultiViewBatch":
        return MultiViewBatch(**{f.name: (None if getattr(self, f.name) is None else getattr(self, f.name).to(device)) for f in fields(self)})


def collate_samples(samples: list[MultiViewSample]) -> MultiViewBatch:
    """Stack samples with the same view count and image size into a batch."""
    if not samples:
        raise ValueError("collate_samples: empty list")
    counts = {s.num_views for s in samples}
    if len(counts) != 1:
        raise ValueError(f"collate_samples: samples in one batch need the same view count, got {sorted(counts)}")
    out = {}
    for f in fields(MultiViewSample):
        vals = [getattr(s, f.name) for s in samples]
        out[f.name] = None if any(v is None for v in vals) else torch.stack(vals)
    return MultiViewBatch(**out)
