"""What consumers see (issue 13), over loopback DDS: optical frames on /tf_static, REP 118 depth,
the image_pipeline topic layout (and the deprecated names), confidence, target-pose conventions
without TF_REPEATED_DATA, compressed and rectified input, Humble's rclpy API, warm-up, diagnostics."""
import types

import numpy as np
import pytest

from ros_harness import T0, pose_stamped, rig, sequence, stamp_msg, stamp_of, tiny_checkpoint, wait_for  # noqa: F401

from mvgd_core.cameras import R_BODY_OPTICAL, body_pose_from_optical_pose, make_pose
from mvgd_ros import image_codec
from mvgd_ros.tf import TF_STATIC_QOS, transform_to_matrix

pytestmark = pytest.mark.ros


def _collect(rig, topic, cls, qos=10):
    rig.node.create_subscription(cls, topic, lambda m: rig._store(topic, m), qos)


def _send(rig, f, t, frame_id, T_fixed_frame):
    rig.send_tf(T_fixed_frame, t, child=frame_id)
    rig.send_tf(T_fixed_frame, t + 0.05, child=frame_id)
    rig.send_frame(f, t, frame_id=frame_id)


def _static(rig) -> dict:
    """child -> TransformStamped of everything seen on /tf_static."""
    return {t.child_frame_id: t for m in rig.got("/tf_static") for t in m.transforms}


def test_body_frame_input_gives_optical_outputs_rep118_depth_and_legacy_names(rig, tiny_checkpoint):
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image

    from mvgd_core.data.render import render_sequence

    _collect(rig, "/tf_static", rig.TFMessage, TF_STATIC_QOS)
    _collect(rig, "mvgd/depth", Image)  # the pre-0.2 name
    for s in [s for s in rig.node.subscriptions if "/mvgd/rgb/" in s.topic_name]:  # nobody wants virtual views
        rig.node.destroy_subscription(s)
    node = rig.start_node(tiny_checkpoint, publish_points=True, virtual_offsets=[0.0, 0.0, -0.5, 0.0, 0.0, 0.0])
    rig.wait_connected("mvgd/depth/image", "mvgd/points")
    wait_for(lambda: node.rgb_pub.get_subscription_count() == 0 and node.rgb_depth_pub.get_subscription_count() == 0, "no rgb subscribers")
    f = render_sequence(seed=3, num_frames=1, height=24, width=32, trajectory="forward")[0]  # 4:3 input
    T_body = body_pose_from_optical_pose(f.T_wc)  # TF names the REP 103 body frame camera_link
    _send(rig, f, T0, "camera_link", T_body)
    wait_for(lambda: rig.got("mvgd/depth/image") and rig.got("mvgd/points") and rig.got("mvgd/depth"), "depth, points and legacy depth")

    optical = "camera_link_mvgd_optical"
    depth, info, cloud = rig.got("mvgd/depth/image")[0], rig.got("mvgd/depth/camera_info")[0], rig.got("mvgd/points")[0]
    assert depth.header.frame_id == info.header.frame_id == cloud.header.frame_id == optical
    assert (depth.height, depth.width) == (info.height, info.width) == (16, 21)  # model height, input aspect
    K, _ = image_codec.camera_info_to_K(info)
    assert K[0, 0] == pytest.approx(f.K[0, 0] * 21 / 32) and K[1, 1] == pytest.approx(f.K[1, 1] * 16 / 24)
    assert stamp_of(rig.got("mvgd/depth")[0]) == pytest.approx(T0) and rig.got("mvgd/depth")[0].header.frame_id == optical

    # /tf_static: body -> optical child, and the virtual camera latched under it though nobody wants rgb
    wait_for(lambda: {optical, "camera_link_mvgd_virtual_0"} <= set(_static(rig)), "latched optical and virtual frames")
    st = _static(rig)
    assert st[optical].header.frame_id == "camera_link" and st["camera_link_mvgd_virtual_0"].header.frame_id == optical
    np.testing.assert_allclose(transform_to_matrix(st[optical].transform)[:3, :3], R_BODY_OPTICAL, atol=1e-9)
    np.testing.assert_allclose(T_body @ transform_to_matrix(st[optical].transform), f.T_wc, atol=1e-9)  # TF agrees with the data
    assert node.rgb_pub.get_subscription_count() == 0 and node.worker.counts["submitted"] == 1

    # REP 118: pixels beyond max_depth are NaN (never 0); the cloud leaves them out
    d0 = np.frombuffer(bytes(depth.data), "<f4")
    assert np.isfinite(d0).all() and (d0 > 0).all()
    assert node.set_parameters([Parameter("max_depth", value=float(d0.min()) * 0.99)])[0].successful  # mutable
    _send(rig, f, T0 + 0.2, "camera_link", T_body)
    wait_for(lambda: len(rig.got("mvgd/depth/image")) >= 2 and len(rig.got("mvgd/points")) >= 2, "second depth")
    d1 = np.frombuffer(bytes(rig.got("mvgd/depth/image")[1].data), "<f4")
    assert np.isnan(d1).all() and rig.got("mvgd/points")[1].width == 0  # (partial masks: the confidence test)


class ConfidentPredictor:
    """The tiny model plus a confidence map (left half sure, right half not), counting calls."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0
        self.image_size, self.device = inner.image_size, inner.device

    def predict(self, *args, **kwargs):
        self.calls += 1
        p = self.inner.predict(*args, **kwargs)
        shape = (p.depth if p.depth is not None else p.rgb).shape[:2]
        conf = np.full(shape, 0.2, np.float32)
        conf[:, : shape[1] // 2] = 0.9
        return types.SimpleNamespace(depth=p.depth, rgb=p.rgb, K=p.K, scale=p.scale, confidence=conf)


@pytest.fixture
def confident(tiny_checkpoint):
    from mvgd_core.inference import MVGDPredictor

    return ConfidentPredictor(MVGDPredictor.from_checkpoint(tiny_checkpoint, device="cpu", steps=2))


def test_confidence_topic_min_confidence_16uc1_and_warm_up(rig, tiny_checkpoint, sequence, confident):
    from sensor_msgs.msg import Image

    _collect(rig, "mvgd/depth/confidence", Image)
    node = rig.start_node(tiny_checkpoint, predictor=confident, min_confidence=0.5, depth_encoding="16UC1")
    assert confident.calls == 1  # the warm-up inference ran at start-up
    rig.wait_connected("mvgd/depth/image")
    wait_for(lambda: node.depth_pub.wants("confidence"), "confidence subscriber")
    f = sequence[0]
    _send(rig, f, T0, "cam_optical_frame", f.T_wc)
    wait_for(lambda: rig.got("mvgd/depth/image") and rig.got("mvgd/depth/confidence"), "depth and confidence")
    conf = rig.got("mvgd/depth/confidence")[0]
    assert (conf.encoding, conf.header.frame_id, stamp_of(conf)) == ("32FC1", "cam_optical_frame", pytest.approx(T0))
    c = np.frombuffer(bytes(conf.data), "<f4").reshape(conf.height, conf.width)
    assert c[:, 0].min() == pytest.approx(0.9) and c[:, -1].max() == pytest.approx(0.2)
    d = rig.got("mvgd/depth/image")[0]
    mm = np.frombuffer(bytes(d.data), "<u2").reshape(d.height, d.width)
    assert d.encoding == "16UC1" and (mm[:, : d.width // 2] > 0).all() and (mm[:, d.width // 2:] == 0).all()  # 0 = invalid in mm


def test_warm_up_can_be_turned_off(rig, tiny_checkpoint, confident):
    rig.start_node(tiny_checkpoint, predictor=confident, warm_up=False)
    assert confident.calls == 0


def test_body_target_pose_and_no_repeated_target_tf(rig, tiny_checkpoint, sequence):
    from mvgd_ros.frames import rpy_matrix

    _collect(rig, "/tf", rig.TFMessage, 100)
    node = rig.start_node(tiny_checkpoint, target_pose_convention="body", target_frame_id="goal_optical_frame")
    rig.wait_connected("mvgd/rgb/image")
    f = sequence[0]
    _send(rig, f, T0, "cam_optical_frame", f.T_wc)
    wait_for(lambda: len(node.keyframes) == 1, "a keyframe")
    goal = make_pose(rpy_matrix(0, 0, np.pi / 2), [0.5, 0.0, 0.0])  # RViz 2D Goal Pose: x forward, turned to +y
    for _ in range(2):  # the same request twice, same stamp
        n = len([m for m in rig.got("mvgd/rgb/image") if m.header.frame_id == "goal_optical_frame"])
        rig.target_pub.publish(pose_stamped(goal, T0 + 0.02, "odom"))
        wait_for(lambda n=n: len([m for m in rig.got("mvgd/rgb/image") if m.header.frame_id == "goal_optical_frame"]) > n, "target view")
    sent = [t for m in rig.got("/tf") for t in m.transforms if t.child_frame_id == "goal_optical_frame"]
    assert len(sent) == 1  # a second transform at the same stamp would make tf2 print TF_REPEATED_DATA
    T = transform_to_matrix(sent[0].transform)
    np.testing.assert_allclose(T[:3, 2], [0, 1, 0], atol=1e-9)  # the optical frame looks where the goal's x points
    np.testing.assert_allclose(T[:3, 3], [0.5, 0, 0], atol=1e-9)
    assert node.stats.totals["target_tf_repeated_not_sent"] == 1


def test_compressed_rectified_input(rig, tiny_checkpoint, sequence):
    import cv2
    from sensor_msgs.msg import CompressedImage
    from std_msgs.msg import Header

    node = rig.start_node(tiny_checkpoint, image_transport="compressed", rectified=True)
    assert node.image_topic.endswith("/image/compressed")
    pub = rig.node.create_publisher(CompressedImage, "image/compressed", 10)
    wait_for(lambda: pub.get_subscription_count() > 0 and rig.info_pub.get_subscription_count() > 0, "node subscribed to image/compressed")
    wait_for(lambda: node.depth_pub.get_subscription_count() > 0, "our depth subscriptions")
    f = sequence[0]
    rig.send_tf(f.T_wc, T0)
    rig.send_tf(f.T_wc, T0 + 0.05)
    header = Header(stamp=stamp_msg(T0), frame_id="cam_optical_frame")
    info = image_codec.make_camera_info(f.K, f.rgb.shape[:2], header)
    info.d = [0.2, -0.1, 0.0, 0.0, 0.0]  # raw k would be wrong for this rectified image: P is right
    P = f.K * np.array([[1.1], [1.1], [1.0]])
    info.p = np.hstack([P, np.zeros((3, 1))]).reshape(-1).tolist()
    rig.info_pub.publish(info)
    ok, png = cv2.imencode(".png", np.ascontiguousarray(f.rgb[..., ::-1]))
    pub.publish(CompressedImage(header=header, format="rgb8; png compressed bgr8", data=png.tobytes()))
    wait_for(lambda: rig.got("mvgd/depth/camera_info"), "depth from a compressed image")
    K, hw = image_codec.camera_info_to_K(rig.got("mvgd/depth/camera_info")[0])
    assert hw == (16, 16) and K[0, 0] == pytest.approx(P[0, 0] * 16 / 32)  # from P, not k


def test_node_runs_on_humbles_rclpy_api(rig, tiny_checkpoint, sequence, monkeypatch):
    """Humble's rclpy Node has no add_post_set_parameters_callback / add_pre_set_parameters_callback
    (Iron+, rclpy #966): the node must start, apply runtime parameters and publish."""
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from mvgd_ros.compat import resolved_topic

    assert resolved_topic(types.SimpleNamespace(), "image") == "image"  # an rclpy without resolve_topic_name
    for name in ("add_post_set_parameters_callback", "add_pre_set_parameters_callback"):
        monkeypatch.delattr(Node, name)
    node = rig.start_node(tiny_checkpoint)
    assert not hasattr(node, "add_post_set_parameters_callback")
    assert all(r.successful for r in node.set_parameters([Parameter("steps", value=3), Parameter("max_views", value=2)]))
    assert node.p.steps == 3 and node.keyframes.cfg.max_views == 2
    assert not node.set_parameters([Parameter("steps", value=0)])[0].successful and node.p.steps == 3
    rig.wait_connected("mvgd/depth/image")
    f = sequence[0]
    _send(rig, f, T0, "cam_optical_frame", f.T_wc)
    wait_for(lambda: rig.got("mvgd/depth/image"), "depth on the Humble API surface")
    assert not node._warned_distortion
    from std_msgs.msg import Header

    info = image_codec.make_camera_info(f.K, f.rgb.shape[:2], Header(stamp=stamp_msg(T0 + 1.0), frame_id="cam_optical_frame"))
    info.distortion_model, info.d = "kannala_brandt", [0.1, 0.0, 0.0, 0.0]  # a model the node cannot undistort
    rig.info_pub.publish(info)
    wait_for(lambda: node._warned_distortion, "one-time warning for raw input with distortion it cannot remove")


@pytest.mark.parametrize("undistort", [True, False])
def test_raw_input_with_distortion_is_rectified_into_p(rig, tiny_checkpoint, sequence, undistort):
    """A driver's image_raw + camera_info with plumb_bob d: the node builds its frame from the
    image remapped into P (image_proc's rectify) and publishes P's intrinsics; with undistort off
    it keeps the raw image and k, and warns once."""
    from std_msgs.msg import Header

    from mvgd_core.distortion import LensDistortion, rectify_map, remap

    node = rig.start_node(tiny_checkpoint, undistort=undistort)
    built = []
    on_frame = node._on_frame
    node._on_frame = lambda frame, header: (built.append(frame), on_frame(frame, header))
    rig.wait_connected("mvgd/depth/image")
    f = sequence[0]
    rig.send_tf(f.T_wc, T0)
    rig.send_tf(f.T_wc, T0 + 0.05)
    header = Header(stamp=stamp_msg(T0), frame_id="cam_optical_frame")
    info = image_codec.make_camera_info(f.K, f.rgb.shape[:2], header)
    info.d = [-0.3, 0.1, 0.001, 0.0, 0.0]
    P = f.K * np.array([[0.9], [0.9], [1.0]])
    P[:2, 2] = f.K[:2, 2]
    info.p = np.hstack([P, np.zeros((3, 1))]).reshape(-1).tolist()
    rig.info_pub.publish(info)
    rig.image_pub.publish(image_codec.rgb_to_image(f.rgb, header))
    wait_for(lambda: rig.got("mvgd/depth/camera_info"), "depth from a raw distorted image")
    K_out, hw = image_codec.camera_info_to_K(rig.got("mvgd/depth/camera_info")[0])
    scale = hw[1] / f.rgb.shape[1]
    if undistort:
        expected = remap(f.rgb, rectify_map(f.K, LensDistortion("plumb_bob", tuple(info.d)), f.rgb.shape[:2], P))
        assert np.abs(built[0].rgb.astype(int) - expected).max() <= 1  # OpenCV's remap vs ours: rounding
        np.testing.assert_allclose(built[0].K, P)
        assert K_out[0, 0] == pytest.approx(P[0, 0] * scale) and not node._warned_distortion
    else:
        np.testing.assert_array_equal(built[0].rgb, f.rgb)
        assert K_out[0, 0] == pytest.approx(f.K[0, 0] * scale)
        wait_for(lambda: node._warned_distortion, "one-time warning: distortion left in the image")


def test_diagnostics_name_the_device_warn_on_stale_input_and_count_bad_tf(rig, tiny_checkpoint):
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

    got = []
    rig.node.create_subscription(DiagnosticArray, "/diagnostics", got.append, 10)
    node = rig.start_node(tiny_checkpoint, diagnostics_period_s=0.2, input_timeout_s=0.3)
    wait_for(lambda: any(s.level == DiagnosticStatus.WARN and "no image received yet" in s.message for m in got for s in m.status),
             "stale-input WARN")
    st = got[-1].status[0]
    assert st.hardware_id == node.hardware_id and st.hardware_id.startswith("cpu")
    if node.tf.backend == "fallback":  # tf2_ros keeps its own counts
        bad = make_pose(np.eye(3), [np.nan, 0.0, 0.0])
        rig.send_tf(bad, T0, child="broken_optical_frame")
        wait_for(lambda: any("malformed transforms rejected" in s.message for m in got for s in m.status), "bad /tf in diagnostics")
        assert {v.key: v.value for v in got[-1].status[0].values}["tf_rejected"] == "1"


def test_camera_frame_parameter_latches_frames_at_start_up(rig, tiny_checkpoint):
    _collect(rig, "/tf_static", rig.TFMessage, TF_STATIC_QOS)
    rig.start_node(tiny_checkpoint, camera_frame="camera_link", virtual_offsets=[0.1, 0.0, 0.0, 0.0, 0.0, 0.0])
    wait_for(lambda: {"camera_link_mvgd_optical", "camera_link_mvgd_virtual_0"} <= set(_static(rig)), "frames latched before any image")
    assert not rig.got("mvgd/depth/image") and _static(rig)["camera_link_mvgd_virtual_0"].header.frame_id == "camera_link_mvgd_optical"


def test_model_loads_and_warms_up_on_the_inference_thread(rig, tiny_checkpoint, monkeypatch):
    """All torch work shares the inference thread (OpenMP pools are per thread: the model ran ~2x
    slower from a second thread once another had used its pool, docs/BENCHMARKS.md)."""
    import threading

    import mvgd_ros.node as N

    threads = []
    real_load, real_warm = N.load_predictor, N.warm_up
    monkeypatch.setattr(N, "load_predictor", lambda *a: (threads.append(threading.current_thread().name), real_load(*a))[1])
    monkeypatch.setattr(N, "warm_up", lambda *a: (threads.append(threading.current_thread().name), real_warm(*a))[1])
    rig.start_node(tiny_checkpoint, warm_up=True)
    assert threads == ["mvgd-inference", "mvgd-inference"]
