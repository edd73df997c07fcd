"""Depth map -> sensor_msgs/PointCloud2 (xyz float32 in the camera's optical frame).

Uses sensor_msgs_py.point_cloud2.create_cloud_xyz32 when installed (robots); otherwise packs
the same layout itself: fields x, y, z float32 at offsets 0/4/8, point_step 12, one row,
little endian, invalid (depth 0) pixels left out so the cloud is dense.
"""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField

try:
    from sensor_msgs_py.point_cloud2 import create_cloud_xyz32
except ImportError:
    create_cloud_xyz32 = None


def depth_to_points(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(N, 3) float32 optical-frame points of the valid (> 0, finite) pixels of a z-depth map (H, W)."""
    h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w]
    ok = np.isfinite(depth) & (depth > 0)
    z = depth[ok].astype(np.float64)
    x = (u[ok] - K[0, 2]) / K[0, 0] * z
    y = (v[ok] - K[1, 2]) / K[1, 1] * z
    return np.stack([x, y, z], axis=1).astype(np.float32)


def points_to_cloud(points: np.ndarray, header) -> PointCloud2:
    """PointCloud2 of (N, 3) points with the given header (frame_id = the optical frame)."""
    points = np.ascontiguousarray(points, dtype="<f4").reshape(-1, 3)
    if create_cloud_xyz32 is not None:
        return create_cloud_xyz32(header, points)
    fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, n in enumerate("xyz")]
    return PointCloud2(
        header=header, height=1, width=len(points), fields=fields, is_bigendian=False,
        point_step=12, row_step=12 * len(points), data=points.tobytes(), is_dense=True,
    )


def cloud_to_points(msg: PointCloud2) -> np.ndarray:
    """(N, 3) float32 from an xyz float32 cloud as written above (for tests and tools)."""
    offs = {f.name: f.offset for f in msg.fields}
    raw = np.frombuffer(msg.data, dtype=np.uint8).reshape(-1, msg.point_step)
    return np.stack([raw[:, offs[c]:offs[c] + 4].copy().view("<f4")[:, 0] for c in "xyz"], axis=1)
