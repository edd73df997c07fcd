"""End to end: the `mvgd_node` console script in its own process, fed a rendered sequence over DDS
through a REP 105 TF tree (odom -> base_link -> camera_link -> camera_color_optical_frame)."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ros_harness import T0, Rig, depth_bound, send_until, sequence, stamp_msg, stamp_of, tiny_checkpoint, wait_for  # noqa: F401

from mvgd_core.cameras import R_BODY_OPTICAL, invert_pose, make_pose
from mvgd_ros import image_codec
from mvgd_ros.tf import broadcast_message

pytestmark = pytest.mark.ros

EXE = Path(sys.executable).with_name("mvgd_node")
OPTICAL = "camera_color_optical_frame"
T_BASE_CAMLINK = make_pose(np.eye(3), [0.2, 0.0, 0.5])  # camera 20 cm ahead, 50 cm up on the robot
T_CAMLINK_OPTICAL = make_pose(R_BODY_OPTICAL, [0.0, 0.0, 0.0])  # REP 103 body -> optical


def _spawn(*ros_args):
    assert EXE.exists(), f"console script {EXE} missing: run `make venv` (pip install -e .)"
    return subprocess.Popen([str(EXE), "--ros-args", *ros_args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=dict(os.environ), text=True)


def test_missing_checkpoint_exits_non_zero_with_instructions(tmp_path):
    proc = _spawn("-p", f"checkpoint:={tmp_path / 'absent.pt'}")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "no checkpoint found" in out and "python training/train.py --config training/configs/default.yaml" in out


def test_console_script_publishes_depth_for_a_rendered_sequence(tiny_checkpoint, sequence):
    proc = _spawn("-p", f"checkpoint:={tiny_checkpoint}", "-p", "device:=cpu", "-p", "steps:=2", "-p", "fixed_frame:=odom",
                  "-r", "image:=/cam/image_raw", "-r", "camera_info:=/cam/camera_info")
    rig = Rig()
    try:
        from sensor_msgs.msg import CameraInfo, Image
        from std_msgs.msg import Header

        image_pub = rig.node.create_publisher(Image, "/cam/image_raw", 10)
        info_pub = rig.node.create_publisher(CameraInfo, "/cam/camera_info", 10)
        rig.tf_static_pub.publish(rig.TFMessage(transforms=[
            broadcast_message("base_link", "camera_link", T_BASE_CAMLINK, stamp_msg(0.0)),
            broadcast_message("camera_link", OPTICAL, T_CAMLINK_OPTICAL, stamp_msg(0.0)),
        ]))
        wait_for(lambda: proc.poll() is None and image_pub.get_subscription_count() > 0 and rig.tf_pub.get_subscription_count() > 0,
                 "the node's subscriptions", deadline=120)
        depth_sub = next(s for s in rig.node.subscriptions if s.topic_name == "/mvgd/depth/image")
        wait_for(lambda: depth_sub.get_publisher_count() > 0, "the node's depth publisher")

        frames = sequence
        T_optical_base = invert_pose_np(T_BASE_CAMLINK @ T_CAMLINK_OPTICAL)
        for i, f in enumerate(frames):
            t = T0 + 0.1 * i
            T_odom_base = f.T_wc @ T_optical_base  # the robot pose that puts the camera where it was rendered
            rig.send_tf(T_odom_base, t, parent="odom", child="base_link")
            rig.send_tf(T_odom_base, t + 0.05, parent="odom", child="base_link")
            header = Header(stamp=stamp_msg(t), frame_id=OPTICAL)
            send = lambda: (info_pub.publish(image_codec.make_camera_info(f.K, f.rgb.shape[:2], header)),  # noqa: E731
                            image_pub.publish(image_codec.rgb_to_image(f.rgb, header)))
            send_until(send, lambda t=t: any(abs(stamp_of(m) - t) < 1e-6 for m in rig.got("mvgd/depth/image")), f"depth for frame {i}", deadline=120)

        depths = rig.got("mvgd/depth/image")
        assert sorted({round(stamp_of(m), 6) for m in depths}) == [round(T0 + 0.1 * i, 6) for i in range(len(frames))]
        bound = depth_bound(frames)
        for m in depths:
            assert m.header.frame_id == OPTICAL and m.encoding == "32FC1" and (m.height, m.width) == (16, 16)
            d = image_codec.image_to_depth(m)
            assert np.isfinite(d).all() and (d > 0).all() and d.max() <= bound
        assert proc.poll() is None, "the node died"
    finally:
        rig.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        print(out[-5000:])  # shown by pytest when the test fails
    assert proc.returncode == 0, out[-3000:]
    assert "ready: model 16x16" in out and "Traceback" not in out


def invert_pose_np(T):
    import torch

    return invert_pose(torch.as_tensor(T)).numpy()
