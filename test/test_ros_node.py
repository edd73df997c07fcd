"""The node over loopback DDS with a real (tiny, random) checkpoint: outputs, bad inputs, resets."""
from pathlib import Path

import numpy as np
import pytest

from ros_harness import CAMERA_FRAME, T0, depth_bound, rig, sequence, pose_stamped, stamp_of, stamp_msg, tiny_checkpoint, wait_for  # noqa: F401

from mvgd_ros import image_codec
from mvgd_ros.pointcloud import cloud_to_points

pytestmark = pytest.mark.ros


def play(rig, frames, t0=T0, dt=0.1):
    """TF (slightly past each image, so lookups interpolate) then camera_info + image, per frame."""
    for i, f in enumerate(frames):
        rig.send_tf(f.T_wc, t0 + i * dt)
    rig.send_tf(frames[-1].T_wc, t0 + len(frames) * dt)
    for i, f in enumerate(frames):
        rig.send_frame(f, t0 + i * dt)


def test_depth_for_every_frame_with_its_stamp_frame_and_metric_values(rig, tiny_checkpoint, sequence):
    node = rig.start_node(tiny_checkpoint, publish_points=True, resolution=[24, 32])
    rig.wait_connected("mvgd/depth/image", "mvgd/points")
    frames = sequence[:4]
    for i, f in enumerate(frames):  # one at a time: newest-wins may otherwise (correctly) skip some
        rig.send_tf(f.T_wc, T0 + i * 0.1)
        rig.send_tf(f.T_wc, T0 + i * 0.1 + 0.05)
        rig.send_frame(f, T0 + i * 0.1)
        wait_for(lambda i=i: len(rig.got("mvgd/depth/image")) > i, f"depth {i}")

    depths = rig.got("mvgd/depth/image")
    assert [round(stamp_of(m), 6) for m in depths] == [round(T0 + i * 0.1, 6) for i in range(4)]
    bound = depth_bound(frames)
    for m in depths:
        assert (m.header.frame_id, m.encoding, m.height, m.width) == (CAMERA_FRAME, "32FC1", 24, 32)
        d = image_codec.image_to_depth(m)
        assert np.isfinite(d).all() and (d > 0).all() and d.max() <= bound

    wait_for(lambda: len(rig.got("mvgd/depth/camera_info")) >= 4 and len(rig.got("mvgd/points")) >= 4, "camera_info and points")
    info = rig.got("mvgd/depth/camera_info")[-1]
    K, hw = image_codec.camera_info_to_K(info)
    assert hw == (24, 32) and info.header.frame_id == CAMERA_FRAME
    src = frames[-1].K
    assert K[0, 0] == pytest.approx(src[0, 0] * 32 / 32) and K[1, 1] == pytest.approx(src[1, 1] * 24 / 32)
    pts = cloud_to_points(rig.got("mvgd/points")[-1])
    assert pts.shape == (24 * 32, 3) and (pts[:, 2] > 0).all()
    wait_for(lambda: node.stats.totals["depth_published"] == 4, "four depth maps counted")
    assert len(node.keyframes) >= 2
    assert not node.stats.drops


def test_no_subscriber_no_work(rig, tiny_checkpoint, sequence):
    node = rig.start_node(tiny_checkpoint)
    rig.node.destroy_subscription(next(s for s in rig.node.subscriptions if s.topic_name.endswith("mvgd/depth/image")))
    rig.node.destroy_subscription(next(s for s in rig.node.subscriptions if s.topic_name.endswith("mvgd/depth/camera_info")))
    rig.wait_connected()
    wait_for(lambda: node.depth_pub.get_subscription_count() == 0, "depth subscriber gone")
    play(rig, sequence[:2])
    wait_for(lambda: node.stats.totals["skipped_no_subscribers"] == 2, "two skipped frames")
    assert node.worker.counts["submitted"] == 0 and len(node.keyframes) >= 1  # the set stays warm


def test_virtual_views_and_target_pose(rig, tiny_checkpoint, sequence):
    node = rig.start_node(tiny_checkpoint, virtual_offsets=[0.0, 0.0, -0.5, 0.0, 0.0, 0.0], virtual_frames=["side_optical_frame"],
                          target_frame_id="goal_optical_frame")
    rig.wait_connected("mvgd/rgb/image", "mvgd/rgb/depth/image")
    f = sequence[0]
    side = f.T_wc.copy()
    side[:3, 3] += [0.3, 0.0, 0.0]
    for t in (T0, T0 + 0.05):
        rig.send_tf(f.T_wc, t)
        rig.send_tf(side, t, child="side_optical_frame")
    rig.send_frame(f, T0)
    wait_for(lambda: len(rig.got("mvgd/rgb/image")) >= 2 and len(rig.got("mvgd/rgb/depth/image")) >= 2, "two virtual views, rgb + depth")
    by_frame = {m.header.frame_id: m for m in rig.got("mvgd/rgb/image")}
    assert set(by_frame) == {"side_optical_frame", f"{CAMERA_FRAME}_mvgd_virtual_0"}
    for m in by_frame.values():
        assert m.encoding == "rgb8" and stamp_of(m) == pytest.approx(T0)
        assert image_codec.image_to_rgb(m).shape == (16, 16, 3)  # the model's size ([0, 0] resolution)
    assert {m.header.frame_id for m in rig.got("mvgd/rgb/depth/image")} == set(by_frame)
    assert f"{CAMERA_FRAME}_mvgd_virtual_0" in node.static_frames.children()  # latched on /tf_static for TF users

    msg = pose_stamped(f.T_wc, T0 + 0.02, "odom")  # the live camera's own pose, given in the fixed frame
    rig.target_pub.publish(msg)
    wait_for(lambda: any(m.header.frame_id == "goal_optical_frame" for m in rig.got("mvgd/rgb/image")), "target view")
    tgt = [m for m in rig.got("mvgd/rgb/image") if m.header.frame_id == "goal_optical_frame"][0]
    assert stamp_of(tgt) == pytest.approx(T0 + 0.02)
    wait_for(lambda: any(m.header.frame_id == "goal_optical_frame" for m in rig.got("mvgd/rgb/camera_info")), "target info")
    wait_for(lambda: node.stats.totals["rgb_published"] == 3, "three rgb views counted")


def test_bad_inputs_are_dropped_counted_and_survived(rig, tiny_checkpoint, sequence):
    node = rig.start_node(tiny_checkpoint, tf_wait_s=0.2)
    rig.wait_connected("mvgd/depth/image")
    f = sequence[0]
    drops = node.stats.drops

    rig.send_frame(f, T0, encoding="xyz16")  # unknown encoding (rgb8 bytes relabelled)
    wait_for(lambda: drops["bad_image"] == 1, "bad_image drop")

    rig.send_tf(f.T_wc, T0 + 1.0)
    rig.send_tf(f.T_wc, T0 + 1.1)
    rig.send_frame(f, T0 + 1.0, info_hw=(20, 20))  # image 32x32, camera_info 20x20
    wait_for(lambda: drops["size_mismatch"] == 1, "size_mismatch drop")

    rig.send_frame(f, T0 + 2.0, frame_id="nowhere_optical_frame")  # no TF for this frame at all
    wait_for(lambda: drops["tf_timeout"] == 1, "tf_timeout drop")

    nan_pose = f.T_wc.copy()
    nan_pose[0, 3] = np.nan
    rig.send_tf(nan_pose, T0 + 3.0, child="nan_optical_frame")  # rejected by the TF buffer
    rig.send_frame(f, T0 + 3.0, frame_id="nan_optical_frame")
    wait_for(lambda: drops["tf_timeout"] == 2, "NaN pose: frame never posed")
    assert node.tf.rejected == 1

    zero_K = np.zeros((3, 3))
    rig.info_pub.publish(image_codec.make_camera_info(zero_K, (32, 32), _header(T0 + 4.0)))
    wait_for(lambda: drops["bad_camera_info"] == 1, "bad camera_info drop")

    bad = pose_stamped(np.eye(4), T0 + 4.0, "odom")
    bad.pose.orientation.w = 0.0  # zero quaternion
    rig.target_pub.publish(bad)
    wait_for(lambda: drops["bad_target_pose"] == 1, "bad target pose drop")

    # Still alive and still right: a good frame gives a depth map.
    rig.send_tf(f.T_wc, T0 + 5.0)
    rig.send_tf(f.T_wc, T0 + 5.1)
    rig.send_frame(f, T0 + 5.0)
    wait_for(lambda: len(rig.got("mvgd/depth/image")) == 1, "depth after bad inputs")
    assert stamp_of(rig.got("mvgd/depth/image")[0]) == pytest.approx(T0 + 5.0)
    assert node.stats.totals["images"] == 5 and sum(drops.values()) == 6


def _header(t, frame_id=CAMERA_FRAME):
    from std_msgs.msg import Header

    return Header(stamp=stamp_msg(t), frame_id=frame_id)


def test_reset_service_and_tf_jump(rig, tiny_checkpoint, sequence):
    from std_srvs.srv import Trigger

    node = rig.start_node(tiny_checkpoint, reset_jump_translation=0.5)
    rig.wait_connected("mvgd/depth/image")
    f0, f1 = sequence[0], sequence[3]
    rig.send_tf(f0.T_wc, T0)
    rig.send_tf(f0.T_wc, T0 + 0.5)
    rig.send_frame(f0, T0)
    wait_for(lambda: len(rig.got("mvgd/depth/image")) == 1, "first depth")
    assert len(node.keyframes) == 1

    # A map correction: TF now says the camera was 1 m elsewhere at the keyframe's own stamp.
    moved = f0.T_wc.copy()
    moved[0, 3] += 1.0
    rig.send_tf(moved, T0)
    rig.send_tf(moved, T0 + 0.5)
    rig.send_frame(f1, T0 + 0.5)
    wait_for(lambda: node.stats.resets["tf_jump"] == 1, "tf_jump reset")
    wait_for(lambda: len(rig.got("mvgd/depth/image")) == 2, "depth after the reset")
    assert len(node.keyframes) == 1 and node.keyframes.newest.stamp == pytest.approx(T0 + 0.5)

    client = rig.node.create_client(Trigger, "/mvgd_node/reset")
    assert client.wait_for_service(timeout_sec=30)
    future = client.call_async(Trigger.Request())
    wait_for(future.done, "reset service response")
    assert future.result().success and "1 keyframes" in future.result().message
    assert len(node.keyframes) == 0 and node.stats.resets["request"] == 1


def test_diagnostics_are_published(rig, tiny_checkpoint, sequence):
    from diagnostic_msgs.msg import DiagnosticArray

    got = []
    rig.node.create_subscription(DiagnosticArray, "/diagnostics", got.append, 10)
    node = rig.start_node(tiny_checkpoint, diagnostics_period_s=0.2)
    rig.wait_connected("mvgd/depth/image")
    play(rig, sequence[:1])
    wait_for(lambda: len(rig.got("mvgd/depth/image")) == 1, "depth")
    wait_for(lambda: any(_kv(m).get("total_depth_published") == "1" for m in got), "diagnostics with the published count")
    kv = _kv(got[-1])
    assert kv["tf_backend"] == node.tf.backend and "latency_mean_s" in kv and "keyframes" in kv
    assert got[-1].status[0].name == "mvgd_node: depth"


def _kv(msg):
    return {v.key: v.value for v in msg.status[0].values}


SHIPPED = Path(__file__).resolve().parents[1] / "models" / "mvgd_default.pt"


@pytest.mark.skipif(not SHIPPED.is_file(), reason="no trained models/mvgd_default.pt yet (python training/train.py --config training/configs/default.yaml)")
def test_shipped_model_depth_lies_in_the_scene_depth_range(rig):
    """With the trained default checkpoint (resolved from checkpoint '') at the node's default DDIM
    steps (1: MODEL_CARD's steps table), depth is metric: its median falls inside the rendered
    scene's true depth range."""
    from mvgd_core.data.render import render_sequence
    from mvgd_ros.params import BY_NAME

    node = rig.start_node("", steps=BY_NAME["steps"].default)
    h, w = node.predictor.image_size
    frames = render_sequence(seed=11, num_frames=4, height=h, width=w, trajectory="forward")
    rig.wait_connected("mvgd/depth/image")
    for i, f in enumerate(frames):
        rig.send_tf(f.T_wc, T0 + i * 0.1)
        rig.send_tf(f.T_wc, T0 + i * 0.1 + 0.05)
        rig.send_frame(f, T0 + i * 0.1)
        wait_for(lambda i=i: len(rig.got("mvgd/depth/image")) > i, f"depth {i}", deadline=300)
    pred = image_codec.image_to_depth(rig.got("mvgd/depth/image")[-1])
    gt = frames[-1].depth[frames[-1].depth > 0]
    assert gt.min() <= np.median(pred) <= gt.max()
