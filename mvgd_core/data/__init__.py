"""Posed RGB-D data: sample types, procedural scenes, readers, rosbag2 I/O, training samplers."""
from mvgd_core.data.types import Frame, MultiViewBatch, MultiViewSample, collate_samples

__all__ = ["Frame", "MultiViewSample", "MultiViewBatch", "collate_samples"]
