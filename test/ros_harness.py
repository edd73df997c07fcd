"""Shared pieces of the DDS tests: a tiny real checkpoint, a rendered sequence, and a test-side
rclpy node that plays frames + TF in and collects the node's outputs.

Waiting is always "until a condition holds, or give up after a generous deadline" - the
deadline only turns a hang into a failure, it never measures speed.
"""
from __future__ import annotations

import time
from collections import defaultdict

import numpy as np
import pytest
import torch

rclpy = pytest.importorskip("rclpy")
from geometry_msgs.msg import PoseStamped  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from mvgd_ros import image_codec  # noqa: E402
from mvgd_ros.feed import Feed  # noqa: E402
from mvgd_ros.tf import sec_to_stamp, stamp_to_sec  # noqa: E402

DEADLINE_S = 60.0
CAMERA_FRAME = "cam_optical_frame"
T0 = 100.0  # stamps start here: a zero stamp means "latest" to TF


def make_tiny_checkpoint(path):
    """A randomly initialised 'tiny' MVGD (16x16) saved through the core checkpoint API."""
    from mvgd_core.checkpoint import make_state, save_checkpoint
    from mvgd_core.diffusion import DiffusionConfig
    from mvgd_core.model import MVGD, PRESETS

    torch.manual_seed(0)
    save_checkpoint(path, make_state(MVGD(PRESETS["tiny"]), DiffusionConfig(), step=0))
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="session")
def sequence():
    """Six rendered 32x32 frames of a procedural scene, camera moving forward (list[Frame])."""
    from mvgd_core.data.render import render_sequence

    return render_sequence(seed=3, num_frames=6, height=32, width=32, trajectory="forward")


def stamp_msg(t: float):
    return sec_to_stamp(t)


def pose_stamped(T, t: float, frame_id: str) -> PoseStamped:
    """A mvgd/target_pose request: camera pose T (4, 4) in `frame_id` at stamp t."""
    from mvgd_ros.frames import fill_pose

    msg = PoseStamped()
    msg.header.stamp, msg.header.frame_id = stamp_msg(t), frame_id
    fill_pose(msg.pose, T)
    return msg


def wait_for(predicate, what: str, deadline: float = DEADLINE_S):
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what} after {deadline} s")
        time.sleep(0.01)


def send_until(send, predicate, what: str, every_s: float = 1.0, deadline: float = DEADLINE_S):
    """Call `send` until `predicate` holds. Across processes, DDS may drop the first messages of a
    freshly matched best-effort link (the reader has not matched the writer yet): resend."""
    end = time.monotonic() + deadline
    while True:
        send()
        try:
            return wait_for(predicate, what, deadline=min(every_s, max(end - time.monotonic(), 0.0)))
        except AssertionError:
            if time.monotonic() > end:
                raise AssertionError(f"gave up waiting for {what} after {deadline} s") from None


class Rig(Feed):
    """The feed (test node `node`: publishers and collectors of every output) and optionally the
    node under test (`under_test`), in one rclpy context spun on a thread."""

    def __init__(self):
        super().__init__("test_io")
        self.received = defaultdict(list)  # topic -> messages
        for topic, cls in [("mvgd/depth/image", Image), ("mvgd/depth/camera_info", CameraInfo), ("mvgd/rgb/image", Image),
                           ("mvgd/rgb/camera_info", CameraInfo), ("mvgd/rgb/depth/image", Image), ("mvgd/points", PointCloud2)]:
            self.node.create_subscription(cls, topic, lambda m, t=topic: self._store(t, m), self.qos)
        self.under_test = None
        self.start()

    def _store(self, topic, msg):
        with self.lock:
            self.received[topic].append(msg)

    def got(self, topic: str) -> list:
        with self.lock:
            return list(self.received[topic])

    def start_node(self, checkpoint, predictor=None, **overrides):
        """The node under test, in this process, spun by the rig's executor (predictor: a stand-in model)."""
        from rclpy.parameter import Parameter

        from mvgd_ros.node import MVGDNode

        params = [Parameter("checkpoint", value=str(checkpoint)), Parameter("device", value="cpu"), Parameter("steps", value=2)]
        params += [Parameter(k, value=v) for k, v in overrides.items()]
        self.under_test = MVGDNode(predictor=predictor, context=self.ctx, parameter_overrides=params)
        self.executor.add_node(self.under_test)
        return self.under_test

    def wait_connected(self, *outputs: str):
        """Until the node hears our inputs and our collectors hear the node's `outputs`."""
        wait_for(lambda: self.image_pub.get_subscription_count() > 0 and self.info_pub.get_subscription_count() > 0, "node subscriptions")
        pubs = {"mvgd/depth/image": self.under_test.depth_pub, "mvgd/rgb/image": self.under_test.rgb_pub, "mvgd/rgb/depth/image": self.under_test.rgb_depth_pub,
                "mvgd/points": self.under_test.points_pub}
        for o in outputs:
            wait_for(lambda o=o: pubs[o].get_subscription_count() > 0, f"subscriber on {o}")

    def send_tf(self, T_fixed_cam, t: float, parent="odom", child=CAMERA_FRAME):
        self.publish_tf(parent, child, T_fixed_cam, stamp_msg(t))

    def send_frame(self, frame, t: float, frame_id=CAMERA_FRAME, encoding="rgb8", info_hw=None, K=None):
        header = Header(stamp=stamp_msg(t), frame_id=frame_id)
        img = image_codec.rgb_to_image(frame.rgb, header)
        if encoding != "rgb8":
            img.encoding = encoding
        self.publish_image(img, frame.K if K is None else K, header, hw=info_hw or frame.rgb.shape[:2])

    def close(self):
        super().close(*[n for n in (self.under_test,) if n is not None])


@pytest.fixture
def rig():
    r = Rig()
    yield r
    r.close()


def stamp_of(msg) -> float:
    return stamp_to_sec(msg.header.stamp)


def depth_bound(frames) -> float:
    """Largest depth the model can express for these cameras: d_max (SSN units) * SSN scale."""
    from mvgd_core.ssn import D_MAX, MIN_SCALE

    T = np.stack([f.T_wc for f in frames])
    baseline = np.abs(T[:, :3, 3][:, None] - T[:, :3, 3][None]).max()
    return D_MAX * max(MIN_SCALE, baseline)
