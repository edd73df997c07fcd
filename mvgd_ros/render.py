"""The inference thread's half of the node: run a Job's views through the model, publish them.

Runs on worker.InferenceWorker's thread. Every prediction is checked first
(sanity.check_prediction: a non-finite or out-of-range output raises, the worker counts an
inference failure and nothing is published); depth is masked per REP 118 (outputs.mask_depth:
NaN for invalid, outside [min_depth, max_depth], below min_confidence) and encoded as
`depth_encoding` (32FC1 m or 16UC1 mm).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from std_msgs.msg import Header

from mvgd_ros import image_codec
from mvgd_ros.lookahead import refine_sources
from mvgd_ros.lru import LruDict
from mvgd_ros.outputs import CameraOut, mask_depth
from mvgd_ros.pointcloud import depth_to_points, points_to_cloud
from mvgd_ros.sanity import check_prediction
from mvgd_ros.tf import stamp_to_sec
from mvgd_ros.views import Job, View


@dataclass(frozen=True)
class Publishers:
    depth: CameraOut  # mvgd/depth/{image,camera_info,confidence}
    points: Any  # rclpy Publisher of PointCloud2 (mvgd/points)
    rgb: CameraOut  # mvgd/rgb/{image,camera_info}
    rgb_depth: CameraOut  # mvgd/rgb/depth/{image,camera_info}


class ViewDepths:
    """The live depth each recent frame got, for fusing into virtual views (`fuse_view_depth`):
    (depth (h, w) pose units, K (3, 3)) by (frame_id, stamp). Written and read on the inference
    thread, cleared from the executor's on a reset: hence the lock. Bounded (LRU): the keyframe
    set is a few frames; older entries are never asked for."""

    def __init__(self, cap: int = 64):
        self._d: LruDict = LruDict(cap)
        self._lock = threading.Lock()

    @staticmethod
    def key(f) -> tuple:
        return f.frame_id, getattr(f, "stamp_ns", 0) or round(f.stamp * 1e9)

    def put(self, frame, depth: np.ndarray, K: np.ndarray) -> None:
        with self._lock:
            self._d.put(self.key(frame), (depth, K))

    def for_views(self, frames) -> list | None:
        """One entry per frame, (depth, K) or None; None when no frame has depth."""
        with self._lock:
            out = [self._d.get(self.key(f)) for f in frames]
        return out if any(v is not None for v in out) else None

    def clear(self) -> None:
        with self._lock:
            self._d.clear()

    def __len__(self) -> int:
        return len(self._d)


class Renderer:
    """`run(lane, job)` is the worker's job function. `params()` gives the node's current
    parameters (they change at runtime), `now_s()` the node clock (for latency), `on_live_depth`
    each live camera's depth map (the published camera's size, pose units) as soon as it is
    predicted (the keyframe set's scene depth)."""

    def __init__(self, predictor, pubs: Publishers, stats, params: Callable[[], Any], now_s: Callable[[], float],
                 on_live_depth: Callable[[np.ndarray], None] | None = None):
        self.predictor, self.pubs, self.stats, self._params, self._now_s = predictor, pubs, stats, params, now_s
        self.on_live_depth = on_live_depth
        self.view_depths = ViewDepths()

    def run(self, _lane: str, job: Job) -> None:
        p = self._params()
        if job.depth_view is not None:
            self._live_depth(job, job.depth_view, p)
        for v in job.rgb_views:
            pred, dt = self._predict(job, v, "rgb", p)
            info = image_codec.make_camera_info(pred.K, pred.rgb.shape[:2], v.header)
            self.pubs.rgb.publish(image_codec.rgb_to_image(pred.rgb, v.header), info)
            self.stats.published("rgb_published", self._latency(v.header), dt)
            if job.rgb_depth:
                if pred.depth is None:  # view synthesis off (or a model that does not give it): one more inference
                    pred, _ = self._predict(job, v, "depth", p)
                else:
                    check_prediction(pred, "depth")  # the depth view synthesis predicted: the same checks
                self.pubs.rgb_depth.publish(image_codec.depth_to_image(self._valid_depth(pred, p), v.header, p.depth_encoding), info)

    def _live_depth(self, job: Job, v: View, p) -> None:
        """mvgd/depth/image + camera_info, the confidence (when the model gives one and someone listens), the points."""
        pred, dt = self._predict(job, v, "depth", p)
        if job.live is not None:
            self.view_depths.put(job.live, pred.depth, pred.K)  # unmasked: masking is for publishing
            if self.on_live_depth is not None:
                self.on_live_depth(pred.depth)
        if not job.publish_depth:  # a keyframe's depth for virtual views only (nobody subscribes to it)
            self.stats.count("keyframe_depth_kept")
            return
        observable = getattr(pred, "observable_share", None)
        self.stats.observed(observable)
        if observable is not None and observable < p.min_observable_share:  # no parallax: a monocular guess, withheld on request
            self.stats.drop("not_observable")
            return
        depth = self._valid_depth(pred, p)
        self.pubs.depth.publish(image_codec.depth_to_image(depth, v.header, p.depth_encoding),
                                image_codec.make_camera_info(pred.K, depth.shape, v.header))
        confidence = getattr(pred, "confidence", None)  # (H, W) 0..1, models that give one
        if confidence is not None and self.pubs.depth.wants("confidence"):
            self.pubs.depth.publish_extra("confidence", image_codec.float_to_image(confidence, v.header))
        if job.points:
            self.pubs.points.publish(points_to_cloud(depth_to_points(depth, pred.K), v.header))
        self.stats.published("depth_published", self._latency(v.header), dt)
        share = getattr(pred, "refined_share", None)
        if share is not None:
            self.stats.refined(share, getattr(pred, "refine_rescale", None))

    def _predict(self, job: Job, view: View, task: str, p):
        t0 = time.monotonic()
        extra = {}
        if view is not job.depth_view and p.fuse_view_depth and getattr(self.predictor, "fusion", None) is not None:
            views = self.view_depths.for_views(job.cond)
            if views is not None:
                extra["view_depth"] = views  # predictors without fusion never get the keyword
        sources = refine_sources(p.lookahead_frames) if view is job.depth_view else None
        if sources is not None and getattr(self.predictor, "refine", None) is not None:
            extra["refine_sources"] = sources  # keyframes on both sides; models that refine only
        if getattr(self.predictor, "refine_net", None) is not None:
            extra["refine_net"] = p.refine_net  # checkpoints with a learned stage only
        if getattr(self.predictor, "confidence_calibrated", None) is not None:  # MVGDPredictor: skip a confidence nobody uses
            extra["with_confidence"] = p.min_confidence > 0 or (view is job.depth_view and self.pubs.depth.wants("confidence"))
        pred = self.predictor.predict(job.cond, view.K, view.T_wc, view.hw, task=task, steps=p.steps, seed=p.seed,
                                      refine=p.refine_depth, synthesize=p.synthesize_rgb, **extra)
        if "view_depth" in extra:
            self.stats.fused(getattr(pred, "fused_share", None))
        check_prediction(pred, task)  # non-finite / out-of-range output: an inference failure, never published
        return pred, time.monotonic() - t0

    @staticmethod
    def _valid_depth(pred, p) -> np.ndarray:
        """(H, W) metres, NaN where invalid, out of [min_depth, max_depth] or below min_confidence."""
        return mask_depth(pred.depth, getattr(pred, "confidence", None), p.min_depth, p.max_depth, p.min_confidence)

    def _latency(self, header: Header) -> float:
        return self._now_s() - stamp_to_sec(header.stamp)
