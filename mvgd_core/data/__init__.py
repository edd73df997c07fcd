"""Posed RGB-D data: sample types, procedural scenes, readers, rosbag2 I/O, training samplers.

Main entry points (see each module's docstring):
- types: Frame, MultiViewSample, MultiViewBatch, collate_samples
- render: render(scene, K, T_wc, H, W), render_sequence(seed, n, H, W) -> list[Frame]
- sampler: DataConfig, ViewSamplingConfig, ProceduralDataset, SequenceDataset, build_dataset,
  ViewCountBatchSampler, select_views, make_sample, resize_frame
- tf_tree: TFTree (pure-Python TF buffer); scene_folder, tum, rosbag_io, deepvideomvs,
  seven_scenes: readers/writers; splits: the fixed train / held-out split;
  augment: colour, crops with exact intrinsics, view order
"""
from mvgd_core.data.types import Frame, MultiViewBatch, MultiViewSample, collate_samples

__all__ = ["Frame", "MultiViewSample", "MultiViewBatch", "collate_samples"]
