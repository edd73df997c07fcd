"""mvgd_ros.feed: what the DDS tests and stream benchmarks publish in front of the node."""
import numpy as np
import pytest

from ros_harness import stamp_msg, wait_for

pytestmark = pytest.mark.ros


def test_feed_publishes_camera_info_with_each_image_tf_and_targets():
    from geometry_msgs.msg import PoseStamped
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image
    from std_msgs.msg import Header
    from tf2_msgs.msg import TFMessage

    from mvgd_core.cameras import make_pose
    from mvgd_ros.feed import Feed

    feed, got = Feed("test_feed"), {}
    try:
        for cls, topic in ((Image, "image"), (CameraInfo, "camera_info"), (TFMessage, "/tf"), (PoseStamped, "mvgd/target_pose")):
            feed.node.create_subscription(cls, topic, lambda m, t=topic: got.setdefault(t, []).append(m), feed.qos)
        feed.start()
        wait_for(lambda: feed.image_pub.get_subscription_count() and feed.target_pub.get_subscription_count(), "matched")
        K = np.array([[20.0, 0, 7.5], [0, 20.0, 5.5], [0, 0, 1]])
        header = Header(stamp=stamp_msg(100.5), frame_id="cam")
        feed.publish_image(np.zeros((12, 16, 3), np.uint8), K, header, info_header=Header(stamp=stamp_msg(100.25), frame_id="cam"))
        T = make_pose(np.eye(3), [1.0, 2.0, 3.0])
        feed.publish_tf("odom", "cam", T, stamp_msg(100.5))
        feed.publish_target(T, stamp_msg(101.0))
        wait_for(lambda: all(got.get(t) for t in ("image", "camera_info", "/tf", "mvgd/target_pose")), "all four")
        info, img = got["camera_info"][0], got["image"][0]
        assert (info.height, info.width, info.k[0]) == (12, 16, 20.0) and info.header.stamp.nanosec == 250_000_000
        assert (img.height, img.width, img.encoding, img.header.frame_id) == (12, 16, "rgb8", "cam")
        assert got["/tf"][0].transforms[0].transform.translation.z == 3.0
        target = got["mvgd/target_pose"][0]
        assert target.header.frame_id == "odom" and target.pose.position.y == 2.0
        with pytest.raises(ValueError, match="needs hw"):  # a JPEG's size is not in its message
            feed.publish_image(CompressedImage(format="rgb8; jpeg compressed bgr8"), K, header)
    finally:
        feed.close()
    assert not feed.ctx.ok()
