"""What a robot's drivers publish, from one rclpy node in its own context: a camera (raw `Image`
or image_transport's `CompressedImage`) with its camera_info, odometry on /tf, mounts on
/tf_static and virtual-view requests on mvgd/target_pose. For everything that stands in for a
robot in front of the node: the DDS tests (test/ros_harness.py, test/ros_stream.py) and the
stream benchmarks (bench_endurance, bench_input). Collectors subscribe on `feed.node`; `start()`
spins it on a thread that `close()` joins before anything is destroyed.
"""
from __future__ import annotations

import threading

import numpy as np

from mvgd_ros import image_codec
from mvgd_ros.frames import fill_pose
from mvgd_ros.player import SpinThread
from mvgd_ros.tf import TF_STATIC_QOS, broadcast_message


class Feed:
    """Publishers of one camera rig. image_topic / info_topic are relative (they follow the
    node's remappings, e.g. `image` -> the camera); compressed: publish `<image_topic>/compressed`
    as image_transport's compressed plugin does. qos_depth: reliable history of the camera topics
    (and of the collectors that use `self.qos`); tf_depth: /tf history."""

    def __init__(self, name: str, *, image_topic: str = "image", info_topic: str = "camera_info", compressed: bool = False,
                 target_topic: str = "mvgd/target_pose", qos_depth: int = 50, tf_depth: int = 100):
        import rclpy
        from geometry_msgs.msg import PoseStamped
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image
        from tf2_msgs.msg import TFMessage

        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node(name, context=self.ctx)
        self.qos = QoSProfile(depth=qos_depth, reliability=ReliabilityPolicy.RELIABLE)
        self.TFMessage, self.PoseStamped = TFMessage, PoseStamped
        self.image_pub = (self.node.create_publisher(CompressedImage, f"{image_topic}/compressed", self.qos) if compressed
                          else self.node.create_publisher(Image, image_topic, self.qos))
        self.info_pub = self.node.create_publisher(CameraInfo, info_topic, self.qos)
        self.tf_pub = self.node.create_publisher(TFMessage, "/tf", QoSProfile(depth=tf_depth))
        self.tf_static_pub = self.node.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS)
        self.target_pub = self.node.create_publisher(PoseStamped, target_topic, 10)
        self.lock = threading.Lock()  # for the collectors' state
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self._spinner: SpinThread | None = None

    def start(self) -> "Feed":
        """Spin the executor (the feed's node and any node added to it) on a thread."""
        self._spinner = SpinThread(self.executor)
        return self

    def publish_tf(self, parent: str, child: str, T: np.ndarray, stamp, static: bool = False) -> None:
        """T (4, 4): child's pose in parent, at `stamp` (builtin_interfaces Time); on /tf_static when static."""
        (self.tf_static_pub if static else self.tf_pub).publish(self.TFMessage(transforms=[broadcast_message(parent, child, T, stamp)]))

    def publish_image(self, image, K: np.ndarray, header, *, hw: tuple[int, int] | None = None, info_header=None) -> None:
        """camera_info (K (3, 3), size hw, stamped info_header or the image's header), then the image:
        (H, W, 3) uint8 RGB sent as rgb8, or a ready Image / CompressedImage (its header set here).
        hw defaults to the image's own size; an encoded image needs it."""
        if isinstance(image, np.ndarray):
            hw, image = hw or image.shape[:2], image_codec.rgb_to_image(image, header)
        else:
            hw, image.header = hw or (getattr(image, "height", 0), getattr(image, "width", 0)), header
        if not hw[0] or not hw[1]:
            raise ValueError("Feed.publish_image: an encoded image needs hw")
        self.publish_info(K, hw, info_header or header)
        self.image_pub.publish(image)

    def publish_info(self, K: np.ndarray, hw: tuple[int, int], header) -> None:
        self.info_pub.publish(image_codec.make_camera_info(K, hw, header))

    def publish_target(self, T_wc: np.ndarray, stamp, frame_id: str = "odom") -> None:
        """A virtual view request: camera pose T_wc (4, 4) in frame_id at stamp."""
        msg = self.PoseStamped()
        msg.header.stamp, msg.header.frame_id = stamp, frame_id
        fill_pose(msg.pose, T_wc)
        self.target_pub.publish(msg)

    def close(self, *nodes) -> None:
        """Join the spinner, then destroy `nodes` (e.g. a node under test on this executor), the
        feed's node and the context: in that order, or the spinning thread aborts (SpinThread)."""
        import rclpy

        if self._spinner is not None:
            self._spinner.stop()
        self.executor.shutdown()
        for n in nodes:
            n.destroy_node()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)
