"""`mvgd_node`: depth (and novel views) from a sliding set of posed camera frames.

Subscribes (relative names: remap them):
    image (sensor_msgs/Image, SensorDataQoS), camera_info (sensor_msgs/CameraInfo, SensorDataQoS),
    /tf, /tf_static, mvgd/target_pose (geometry_msgs/PoseStamped: an optical camera pose to render)
Publishes:
    mvgd/depth (Image 32FC1, metres; stamp and frame_id of the source image) + mvgd/depth/camera_info
    mvgd/points (PointCloud2, optical frame of the source image; with publish_points)
    mvgd/rgb (Image rgb8) + mvgd/rgb/camera_info, mvgd/rgb/depth (32FC1): virtual views
    /diagnostics (DiagnosticArray), /tf_static and /tf for the virtual view frames
Service: ~/reset (std_srvs/Trigger): empty the conditioning set.

Flow: callbacks only decode and queue. An image waits in the pending queue until TF has its
camera pose at the image stamp (at most tf_wait_s), becomes a Frame, is offered to the
keyframe set, and a newest-wins request goes to the inference worker, which runs the model
and publishes. Work is skipped when nobody subscribes to its output.
"""
from __future__ import annotations

import sys
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import numpy as np
import rclpy
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from geometry_msgs.msg import PoseStamped
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from mvgd_core.data.types import Frame
from mvgd_ros import diagnostics, image_codec, params
from mvgd_ros.frames import FrameError, build_frame, camera_pose, is_optical, offset_transforms, pose_to_matrix, scale_intrinsics
from mvgd_ros.keyframes import KeyframeConfig, KeyframeSet
from mvgd_ros.model import StartupError, load_predictor, set_torch_threads
from mvgd_ros.pointcloud import depth_to_points, points_to_cloud
from mvgd_ros.tf import TfLookupError, broadcast_message, make_tf_buffer, stamp_to_sec
from mvgd_ros.worker import InferenceWorker

OUT_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
WARN_EVERY_S = 5.0
INFO_HISTORY = 30  # camera_infos kept for stamp matching
STATIC_TF_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


@dataclass
class Pending:
    """A decoded image waiting for its camera_info and TF pose."""

    rgb: np.ndarray
    header: Header
    arrived: float  # monotonic s


@dataclass
class View:
    """One camera to render: pose, intrinsics at output size, header for the outputs."""

    T_wc: np.ndarray
    K: np.ndarray
    header: Header


@dataclass
class Job:
    """What the worker does for one live frame or one target pose."""

    cond: list[Frame]
    depth_view: View | None = None  # the live camera (publish mvgd/depth)
    rgb_views: list[View] = field(default_factory=list)  # virtual cameras (publish mvgd/rgb)
    rgb_depth: bool = False  # also depth at the virtual cameras (mvgd/rgb/depth)
    points: bool = False


def keyframe_config(p) -> KeyframeConfig:
    return KeyframeConfig(
        min_translation=p.keyframe_min_translation, min_rotation_deg=p.keyframe_min_rotation_deg,
        max_age_s=p.keyframe_max_age_s, max_views=p.max_views, reset_jump_translation=p.reset_jump_translation,
    )


class MVGDNode(Node):
    def __init__(self, predictor=None, **kwargs):
        super().__init__("mvgd_node", **kwargs)
        self.p = params.declare(self, on_change=self._on_params)
        self.stats = diagnostics.NodeStats()
        set_torch_threads(self.p.torch_threads)
        self.predictor = predictor or load_predictor(self.p.checkpoint, self.p.device, self.p.steps)
        self.out_hw = tuple(self.p.resolution) if self.p.resolution[0] > 0 else tuple(self.predictor.image_size)
        self.keyframes = KeyframeSet(keyframe_config(self.p))
        self.tf = make_tf_buffer(self, self.p.tf_cache_s)
        self.offsets = offset_transforms(self.p.virtual_offsets)
        self.camera: tuple[np.ndarray, tuple[int, int]] | None = None  # latest (K, (H, W)) from camera_info
        self.infos: OrderedDict[int, tuple[np.ndarray, tuple[int, int]]] = OrderedDict()  # recent ones by stamp (ns)
        self.pending: deque[Pending] = deque()
        self._static_tf: dict[str, object] = {}  # child -> TransformStamped we keep latched on /tf_static
        self._warned_body: set[str] = set()
        self._last_warning: dict[str, float] = {}  # drop reason -> monotonic time of its last warning

        self.create_subscription(Image, "image", self._on_image, qos_profile_sensor_data)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos_profile_sensor_data)
        self.create_subscription(PoseStamped, "mvgd/target_pose", self._on_target_pose, 10)
        self.depth_pub = self.create_publisher(Image, "mvgd/depth", OUT_QOS)
        self.depth_info_pub = self.create_publisher(CameraInfo, "mvgd/depth/camera_info", OUT_QOS)
        self.points_pub = self.create_publisher(PointCloud2, "mvgd/points", OUT_QOS)
        self.rgb_pub = self.create_publisher(Image, "mvgd/rgb", OUT_QOS)
        self.rgb_info_pub = self.create_publisher(CameraInfo, "mvgd/rgb/camera_info", OUT_QOS)
        self.rgb_depth_pub = self.create_publisher(Image, "mvgd/rgb/depth", OUT_QOS)
        from tf2_msgs.msg import TFMessage

        self._TFMessage = TFMessage
        self.tf_pub = self.create_publisher(TFMessage, "/tf", 10)
        self.tf_static_pub = self.create_publisher(TFMessage, "/tf_static", STATIC_TF_QOS)
        diag_type, diag_topic = diagnostics.message_type()
        self.diag_pub = self.create_publisher(diag_type, diag_topic, 10)
        self._create_reset_service()

        self.worker = InferenceWorker(self._run_job, self._on_job_error)
        self.create_timer(0.05, self._process_pending)  # re-check frames waiting for TF
        self.create_timer(self.p.diagnostics_period_s, self._publish_diagnostics)
        self.get_logger().info(
            f"ready: model {self.predictor.image_size[0]}x{self.predictor.image_size[1]}, output {self.out_hw[0]}x{self.out_hw[1]}, "
            f"fixed frame '{self.p.fixed_frame}', TF backend {self.tf.backend}, listening on {self.resolve_topic_name('image')}"
        )

    # ------------------------------------------------------------------ parameters and reset

    def _on_params(self, p) -> None:
        self.p = p
        self.keyframes.cfg = keyframe_config(p)  # applies from the next frame; the set is kept

    def _create_reset_service(self) -> None:
        try:
            from std_srvs.srv import Trigger
        except ImportError:  # std_srvs missing: same action on a std_msgs/Empty topic
            from std_msgs.msg import Empty

            self.create_subscription(Empty, "~/reset", lambda _msg: self.reset("request"), 10)
            return
        self.create_service(Trigger, "~/reset", self._on_reset_service)

    def _on_reset_service(self, _request, response):
        n = len(self.keyframes)
        self.reset("request")
        response.success, response.message = True, f"cleared {n} keyframes"
        return response

    def reset(self, reason: str) -> None:
        self.keyframes.reset()
        self.stats.reset(reason)
        self.get_logger().info(f"conditioning set reset ({reason})")

    # ------------------------------------------------------------------ inputs

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            self.camera = image_codec.camera_info_to_K(msg)
            self.infos[_ns(msg.header.stamp)] = self.camera
            while len(self.infos) > INFO_HISTORY:
                self.infos.popitem(last=False)
        except ValueError as exc:
            self._drop("bad_camera_info", f"ignoring camera_info: {exc}")

    def _on_image(self, msg: Image) -> None:
        self.stats.count("images")
        try:
            rgb = image_codec.image_to_rgb(msg)
        except ValueError as exc:
            self._drop("bad_image", f"dropping image: {exc}")
            return
        self.pending.append(Pending(rgb, msg.header, time.monotonic()))
        while len(self.pending) > self.p.max_pending:
            self.pending.popleft()
            self._drop("pending_overflow", "pending queue full: dropping the oldest frame waiting for TF")
        self._process_pending()

    def _drop(self, reason: str, message: str) -> None:
        """Count a dropped input; warn at most every WARN_EVERY_S per reason (rclpy throttles per call site)."""
        self.stats.drop(reason)
        now = time.monotonic()
        if now - self._last_warning.get(reason, -WARN_EVERY_S) >= WARN_EVERY_S:
            self._last_warning[reason] = now
            self.get_logger().warning(f"{message} [{reason}; {self.stats.drops[reason]} so far]")

    def _process_pending(self) -> None:
        """Resolve waiting frames in arrival order; the first not yet resolvable keeps the rest waiting."""
        while self.pending:
            item = self.pending[0]
            waited = time.monotonic() - item.arrived
            try:
                frame = self._resolve(item, waited)
            except (TfLookupError, _NoCameraInfo) as exc:
                if waited < self.p.tf_wait_s:
                    return
                self.pending.popleft()
                reason = "no_camera_info" if isinstance(exc, _NoCameraInfo) else "tf_timeout"
                self._drop(reason, f"dropping frame @ {stamp_to_sec(item.header.stamp):.3f} after {waited:.2f} s: {exc}")
                continue
            except FrameError as exc:
                self.pending.popleft()
                self._drop(exc.reason, f"dropping frame @ {stamp_to_sec(item.header.stamp):.3f}: {exc}")
                continue
            self.pending.popleft()
            self._on_frame(frame, item.header)

    def _resolve(self, item: Pending, waited: float) -> Frame:
        K, hw = self._intrinsics(item.header, waited)
        T_wc = self._camera_pose(item.header.frame_id, stamp_to_sec(item.header.stamp))
        return build_frame(item.rgb, K, hw, T_wc, stamp_to_sec(item.header.stamp), item.header.frame_id)

    def _intrinsics(self, header: Header, waited: float) -> tuple[np.ndarray, tuple[int, int]]:
        """The camera_info with the image's stamp (image_transport's CameraSubscriber rule: the two
        topics arrive in any order); after tf_wait_s without one, the latest, for drivers whose
        stamps differ."""
        info = self.infos.get(_ns(header.stamp))
        if info is not None:
            return info
        if waited < self.p.tf_wait_s or self.camera is None:
            raise _NoCameraInfo("no camera_info with the image's stamp" + (" yet" if self.camera is None else ""))
        return self.camera

    def _camera_pose(self, frame_id: str, stamp: float | None) -> np.ndarray:
        """Optical camera-to-fixed pose of a TF frame at `stamp`; TfLookupError / FrameError."""
        optical = is_optical(frame_id, self.p.camera_frame_convention)
        if not optical and frame_id not in self._warned_body:
            self._warned_body.add(frame_id)
            self.get_logger().warning(f"frame '{frame_id}' is not named *_optical_frame: treating it as a REP 103 body frame "
                                   "(x forward, z up) and rotating to optical; set camera_frame_convention to override")
        return camera_pose(self.tf.lookup(self.p.fixed_frame, frame_id, stamp), optical)

    # ------------------------------------------------------------------ posed frames -> jobs

    def _on_frame(self, frame: Frame, header: Header) -> None:
        self._check_tf_jump()
        _, reset = self.keyframes.add(frame)
        if reset:
            self.stats.reset(reset)
        self.stats.keyframes = len(self.keyframes)

        want_depth = self.depth_pub.get_subscription_count() + self.depth_info_pub.get_subscription_count() > 0
        want_points = self.p.publish_points and self.points_pub.get_subscription_count() > 0
        want_rgb = self.rgb_pub.get_subscription_count() > 0
        want_rgb_depth = self.rgb_depth_pub.get_subscription_count() > 0
        job = Job(cond=self.keyframes.conditioning(frame, self.p.select_views), rgb_depth=want_rgb_depth, points=want_points)
        if want_depth or want_points:
            job.depth_view = View(frame.T_wc, scale_intrinsics(frame.K, frame.rgb.shape[:2], self.out_hw), header)
        else:
            self.stats.count("skipped_no_subscribers")
        if want_rgb or want_rgb_depth:
            job.rgb_views = self._virtual_views(frame, header)
        if job.depth_view is not None or job.rgb_views:
            self.stats.conditioning_views = len(job.cond)
            self.worker.submit("live", job)

    def _check_tf_jump(self) -> None:
        """Reset when TF now puts the newest keyframe elsewhere than when it was added (map correction)."""
        kf = self.keyframes.newest
        if kf is None:
            return
        try:
            T_now = self._camera_pose(kf.frame_id, kf.stamp)
        except (TfLookupError, FrameError):
            return  # its stamp may have left the TF cache: nothing to compare
        if self.keyframes.jumped(T_now):
            self.get_logger().warning(f"TF moved keyframe @ {kf.stamp:.3f} by {self.keyframes.correction(T_now):.2f} m")
            self.reset("tf_jump")

    def _virtual_views(self, frame: Frame, header: Header) -> list[View]:
        K = scale_intrinsics(frame.K, frame.rgb.shape[:2], self.out_hw)
        views = []
        for name in self.p.virtual_frames:
            try:
                views.append(View(self._camera_pose(name, frame.stamp), K, Header(stamp=header.stamp, frame_id=name)))
            except (TfLookupError, FrameError) as exc:
                self._drop("virtual_frame_tf", f"skipping virtual frame '{name}': {exc}")
        for i, T_live_virtual in enumerate(self.offsets):
            name = f"{frame.frame_id}_mvgd_virtual_{i}"
            self._latch_static(frame.frame_id, name, T_live_virtual)
            views.append(View(frame.T_wc @ T_live_virtual, K, Header(stamp=header.stamp, frame_id=name)))
        return views

    def _latch_static(self, parent: str, child: str, T: np.ndarray) -> None:
        """Publish T_parent_child on /tf_static once; the whole set goes out each time, like tf2's static broadcaster."""
        if child in self._static_tf:
            return
        self._static_tf[child] = broadcast_message(parent, child, T, self.get_clock().now().to_msg())
        self.tf_static_pub.publish(self._TFMessage(transforms=list(self._static_tf.values())))

    def _on_target_pose(self, msg: PoseStamped) -> None:
        """Render the optical camera pose in `msg` (its frame_id, its stamp; stamp 0 = latest TF)."""
        stamp = stamp_to_sec(msg.header.stamp) or None
        parent = msg.header.frame_id or self.p.fixed_frame
        try:
            T_parent_cam = pose_to_matrix(msg.pose)
            T_fixed_parent = np.eye(4) if parent == self.p.fixed_frame else self.tf.lookup(self.p.fixed_frame, parent, stamp)
            T_wc = camera_pose(T_fixed_parent @ T_parent_cam, optical=True)
        except (ValueError, TfLookupError) as exc:
            self._drop("bad_target_pose", f"ignoring target pose: {exc}")
            return
        if not self.keyframes.frames or self.camera is None:
            self._drop("no_keyframes", "ignoring target pose: no posed frames yet")
            return
        header = Header(stamp=msg.header.stamp if stamp else self.get_clock().now().to_msg(), frame_id=self.p.target_frame_id)
        tf_msg = broadcast_message(parent, self.p.target_frame_id, T_parent_cam, header.stamp)
        self.tf_pub.publish(self._TFMessage(transforms=[tf_msg]))
        K, hw = self.camera
        view = View(T_wc, scale_intrinsics(K, hw, self.out_hw), header)
        cond = self.keyframes.select(T_wc, self.p.select_views)
        self.worker.submit("target", Job(cond=cond, rgb_views=[view], rgb_depth=self.rgb_depth_pub.get_subscription_count() > 0))

    # ------------------------------------------------------------------ worker thread

    def _predict(self, job: Job, view: View, task: str):
        t0 = time.monotonic()
        pred = self.predictor.predict(job.cond, view.K, view.T_wc, self.out_hw, task=task, steps=self.p.steps, seed=self.p.seed)
        return pred, time.monotonic() - t0

    def _latency(self, header: Header) -> float:
        return self.get_clock().now().nanoseconds * 1e-9 - stamp_to_sec(header.stamp)

    def _run_job(self, _lane: str, job: Job) -> None:
        if job.depth_view is not None:
            v = job.depth_view
            pred, dt = self._predict(job, v, "depth")
            self.depth_pub.publish(image_codec.depth_to_image(pred.depth, v.header))
            self.depth_info_pub.publish(image_codec.make_camera_info(pred.K, pred.depth.shape, v.header))
            if job.points:
                self.points_pub.publish(points_to_cloud(depth_to_points(pred.depth, pred.K), v.header))
            self.stats.published("depth_published", self._latency(v.header), dt)
        for v in job.rgb_views:
            pred, dt = self._predict(job, v, "rgb")
            self.rgb_pub.publish(image_codec.rgb_to_image(pred.rgb, v.header))
            self.rgb_info_pub.publish(image_codec.make_camera_info(pred.K, pred.rgb.shape[:2], v.header))
            self.stats.published("rgb_published", self._latency(v.header), dt)
            if job.rgb_depth:
                pred, _ = self._predict(job, v, "depth")
                self.rgb_depth_pub.publish(image_codec.depth_to_image(pred.depth, v.header))

    def _on_job_error(self, lane: str, exc: BaseException) -> None:
        if not self.context.ok():
            return  # shutting down (Ctrl-C): the running job's publish fails, nothing is wrong
        self.stats.count("inference_failed")
        self.get_logger().error(f"inference failed ({lane}): {type(exc).__name__}: {exc}", throttle_duration_sec=5.0)

    # ------------------------------------------------------------------ diagnostics and shutdown

    def _publish_diagnostics(self) -> None:
        kv = self.stats.snapshot({
            "pending": str(len(self.pending)),
            "worker_stale": str(self.worker.counts["stale"]),
            "tf_backend": self.tf.backend,
            **{f"tf_fail_{k}": str(v) for k, v in sorted(self.tf.failures.items())},
        })
        self.diag_pub.publish(diagnostics.to_message(kv, f"{self.get_name()}: depth", self.p.fixed_frame, self.get_clock().now().to_msg()))
        self.get_logger().info(
            f"{kv['_message']}: images {kv['image_rate_hz']} Hz, depth {kv['depth_rate_hz']} Hz, latency {kv['latency_mean_s']} s, "
            f"keyframes {kv['keyframes']}, drops {dict(self.stats.drops)}, "
            f"skipped without subscribers {self.stats.totals['skipped_no_subscribers']}", throttle_duration_sec=10.0,
        )

    def destroy_node(self):
        if hasattr(self, "worker"):  # absent when the constructor failed
            self.worker.stop()
            self.get_logger().info(f"totals: {dict(self.stats.totals)}, drops {dict(self.stats.drops)}, "
                                   f"resets {dict(self.stats.resets)}, stale requests {self.worker.counts['stale']}")
        return super().destroy_node()


def _ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class _NoCameraInfo(LookupError):
    """No intrinsics yet: the frame may wait like one whose TF is missing."""


def main(args=None) -> int:
    """Console script `mvgd_node` (ros2/demos pattern). Exit 1 when the node cannot start."""
    rclpy.init(args=args)
    try:
        node = MVGDNode()
    except (StartupError, InvalidParameterValueException, InvalidParameterTypeException) as exc:
        print(f"[mvgd_node] error: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 1
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
