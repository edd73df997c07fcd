"""The node's outputs in image_pipeline's layout, and the rules that turn predictions into them.

Topics (relative, under the node's namespace):
    mvgd/depth/image + mvgd/depth/camera_info   depth of the live camera (REP 118)
    mvgd/depth/confidence                       32FC1 0..1, when the model gives confidence: P(depth within 25 %) with a calibrated checkpoint, else the raw score
    mvgd/rgb/image + mvgd/rgb/camera_info       virtual and target views
    mvgd/rgb/depth/image + .../camera_info      depth at those views
An image_transport CameraSubscriber (depth_image_proc, nvblox, RViz's Camera display) on
`<base>/image` finds `<base>/camera_info` beside it. Before 0.2 the images were `mvgd/depth`,
`mvgd/rgb` and `mvgd/rgb/depth`; those names still publish, for one release, while someone
subscribes to them (one deprecation warning each).
"""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import CameraInfo, Image

LEGACY_BASES = ("mvgd/depth", "mvgd/rgb", "mvgd/rgb/depth")  # before 0.2 these bases were themselves the image topics


class CameraOut:
    """`<base>/image` + `<base>/camera_info` publishers (image_transport's CameraPublisher layout),
    the deprecated pre-0.2 image name, and optional extra image topics beside them."""

    def __init__(self, node, base: str, qos, extras: tuple[str, ...] = ()):
        self.base = base
        self.image = node.create_publisher(Image, f"{base}/image", qos)
        self.info = node.create_publisher(CameraInfo, f"{base}/camera_info", qos)
        self.legacy = node.create_publisher(Image, base, qos) if base in LEGACY_BASES else None
        self.extras = {name: node.create_publisher(Image, f"{base}/{name}", qos) for name in extras}
        self._logger = node.get_logger()
        self._warned = False

    def get_subscription_count(self) -> int:
        """Subscribers of any of its topics (the node skips work nobody wants)."""
        pubs = [self.image, self.info, *self.extras.values()] + ([self.legacy] if self.legacy else [])
        return sum(p.get_subscription_count() for p in pubs)

    def wants(self, extra: str) -> bool:
        return self.extras[extra].get_subscription_count() > 0

    def publish(self, image: Image, info: CameraInfo) -> None:
        self.image.publish(image)
        self.info.publish(info)
        if self.legacy is not None and self.legacy.get_subscription_count() > 0:
            if not self._warned:
                self._warned = True
                self._logger.warning(f"'{self.legacy.topic_name}' is deprecated and will be removed in the next release: "
                                     f"subscribe to '{self.image.topic_name}' (camera_info beside it)")
            self.legacy.publish(image)

    def publish_extra(self, name: str, image: Image) -> None:
        self.extras[name].publish(image)


def mask_depth(depth: np.ndarray, confidence: np.ndarray | None, min_depth: float, max_depth: float, min_confidence: float) -> np.ndarray:
    """(H, W) float32 metres with NaN for pixels that are invalid (non-finite, <= 0), outside
    [min_depth, max_depth] (0 = no limit) or below min_confidence (when confidence (H, W) exists)."""
    d = np.array(depth, dtype=np.float32, copy=True)
    bad = ~np.isfinite(d) | (d <= 0)
    if min_depth > 0:
        bad |= d < min_depth
    if max_depth > 0:
        bad |= d > max_depth
    if confidence is not None and min_confidence > 0:
        c = np.asarray(confidence)
        if c.shape != d.shape:
            raise ValueError(f"confidence {c.shape} does not match depth {d.shape}")
        bad |= ~(c >= min_confidence)
    d[bad] = np.nan
    return d
