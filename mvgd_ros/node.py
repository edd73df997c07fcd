"""`mvgd_node`: depth (and novel views) from a sliding set of posed camera frames.

Subscribes (relative names: remap them):
    image (sensor_msgs/Image, SensorDataQoS) or, with image_transport:=compressed,
    <image>/compressed (sensor_msgs/CompressedImage), camera_info (sensor_msgs/CameraInfo),
    /tf, /tf_static, mvgd/target_pose (geometry_msgs/PoseStamped: a camera pose to render)
Publishes (image_pipeline layout, mvgd_ros/outputs.py; stamps of the source image, optical frames):
    mvgd/depth/image (32FC1 m, NaN invalid; or 16UC1 mm) + mvgd/depth/camera_info, mvgd/depth/confidence
    mvgd/points (PointCloud2; with publish_points)
    mvgd/rgb/image (rgb8) + mvgd/rgb/camera_info, mvgd/rgb/depth/image + camera_info: virtual/target views
    deprecated until the next release, only while subscribed: mvgd/depth, mvgd/rgb, mvgd/rgb/depth
    /diagnostics (DiagnosticArray), /tf_static (optical child and virtual frames), /tf (target frame)
Service: ~/reset (std_srvs/Trigger): empty the conditioning set.

Flow (executor thread: callbacks only queue and decide; inference thread: model and publish):
1. camera_info is validated and kept by stamp; a raw image waits in the pending queue
   (input_sync.py) until its camera_info (nearest stamp within camera_info_slop_s) and its TF
   pose exist, at most tf_wait_s. Retried on every image, camera_info, /tf message and a 50 ms timer.
2. The newest such image is decoded (older ones are skipped undecoded) and becomes a Frame;
   its outputs get an optical frame_id (static_frames.py, latched on /tf_static).
3. Keyframes (keyframes.py) are re-checked against TF, the frame is offered to them, and a
   Job with the views someone subscribes to (views.py) goes to the newest-wins worker (worker.py).
4. A mvgd/target_pose request becomes a Job the same way, conditioned on the keyframes nearest it.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header

from mvgd_core.allocator import keep_freed_memory
from mvgd_core.data.types import Frame
from mvgd_ros import diagnostics, image_codec, params, rectify
from mvgd_ros.compat import resolved_topic
from mvgd_ros.frames import FrameError, build_frame, camera_pose, is_optical, offset_transforms, output_size, scale_intrinsics
from mvgd_ros.input_gaps import InputGaps, loss_message
from mvgd_ros.input_sync import Dropped, InputSync, Pending, Rejected, SyncConfig, Waiting, precheck_image
from mvgd_ros.keyframes import KeyframeConfig, KeyframeSet
from mvgd_ros.lookahead import Lagged, LookaheadQueue
from mvgd_ros.model import StartupError, hardware_id, load_predictor, set_torch_threads, warm_up
from mvgd_ros.outputs import CameraOut
from mvgd_ros.rectify import InputCamera, Rectifier
from mvgd_ros.render import Publishers, Renderer
from mvgd_ros.static_frames import MAX_CAMERA_FRAMES, StaticFrames
from mvgd_ros.tf import TfLookupError, broadcast_message, make_tf_buffer, stamp_to_ns, tf_message_class
from mvgd_ros.views import Job, View, offset_views, target_pose
from mvgd_ros.worker import InferenceWorker

OUT_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
WARN_EVERY_S = 5.0
SKIPS = ("rate_limited", "out_of_order")  # input policy, not faults: counted as skipped_<reason>, no warning
STATIC_TF_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def keyframe_config(p) -> KeyframeConfig:
    return KeyframeConfig(
        pose_distance=p.keyframe_pose_distance, optimal_baseline=p.keyframe_optimal_baseline, buffer_size=p.keyframe_buffer_size,
        max_age_s=p.keyframe_max_age_s, max_views=p.max_views, reset_jump_translation=p.reset_jump_translation,
        outlier_translation=p.keyframe_outlier_translation, reference_depth=p.keyframe_reference_depth,
    )


def sync_config(p) -> SyncConfig:
    return SyncConfig.from_seconds(p.tf_wait_s, p.camera_info_slop_s, p.max_input_rate_hz, p.max_pending)


class MVGDNode(Node):
    def __init__(self, predictor=None, **kwargs):
        super().__init__("mvgd_node", **kwargs)
        self.p = params.declare(self, on_change=self._on_params)
        self.stats = diagnostics.NodeStats()
        self.input_gaps = InputGaps()  # frames lost before they reached us, from the stamps' gaps
        # Every torch call (load, warm-up, inference) runs on the inference thread: OpenMP pools are
        # per calling thread, and the model ran ~2x slower there once this thread had used its own.
        self.worker = InferenceWorker(lambda lane, job: self.renderer.run(lane, job), self._on_job_error)
        self.predictor = self.worker.call(lambda: self._load(predictor))
        self.out_hw = tuple(self.p.resolution) if self.p.resolution[0] > 0 else tuple(self.predictor.image_size)  # until an image says its aspect
        self.hardware_id = hardware_id(self.predictor)
        if self.p.warm_up:
            took = self.worker.call(lambda: warm_up(self.predictor, self.out_hw, self.p.steps))
            self.get_logger().info(f"warm-up inference took {took:.2f} s on {self.hardware_id}")
        self.keyframes = KeyframeSet(keyframe_config(self.p))
        self.lookahead = LookaheadQueue()  # frames waiting for newer ones (lookahead_frames)
        self.tf = make_tf_buffer(self, self.p.tf_cache_s)
        self.offsets = offset_transforms(self.p.virtual_offsets)
        self._target_requested = False  # a mvgd/target_pose was rendered: keyframe depth is worth keeping (_wants_keyframe_depth)
        self.camera: tuple[np.ndarray, tuple[int, int]] | None = None  # latest (K, (H, W)) from camera_info
        self.pending = InputSync(sync_config(self.p))  # raw images waiting for camera_info + TF, and recent camera_infos
        self.tf.on_new_data = self._on_tf_data  # the transform a waiting image lacked may just have come
        self.rectifier = Rectifier(self.p.undistort)
        self._warned_distortion = False
        self._last_target_tf: tuple | None = None  # (parent, sec, nanosec) of the last target frame sent on /tf
        self._tf_rejected_seen = 0
        self._last_warning: dict[str, float] = {}  # drop reason -> monotonic time of its last warning

        self._subscribe()
        self._advertise()
        self._create_reset_service()
        if self.p.camera_frame:  # known up front: TF users see the optical and virtual frames before any image
            self._output_frame(self.p.camera_frame)

        pubs = Publishers(self.depth_pub, self.points_pub, self.rgb_pub, self.rgb_depth_pub)
        self.renderer = Renderer(self.predictor, pubs, self.stats, lambda: self.p, lambda: self.get_clock().now().nanoseconds * 1e-9,
                                 on_live_depth=self.keyframes.observe_depth)  # the scene scale for keyframe_reference_depth
        self.create_timer(0.05, self._tick)  # frames waiting for TF; lookahead frames whose newer frames did not come
        self.create_timer(self.p.diagnostics_period_s, self._publish_diagnostics)
        self.get_logger().info(
            f"ready: model {self.predictor.image_size[0]}x{self.predictor.image_size[1]}, output {self.out_hw[0]}x{self.out_hw[1]}, "
            f"fixed frame '{self.p.fixed_frame}', TF backend {self.tf.backend}, listening on {self.image_topic}"
        )
        if self.p.refine_net and getattr(self.predictor, "refine_net", None) is None:  # info: refine_net is on by default
            self.get_logger().info("the checkpoint has no learned stage, so refine_net changes nothing: publishing the refinement's depth "
                                   "(training/train_refine_net.py adds one)")

    def _load(self, predictor):
        set_torch_threads(self.p.torch_threads)  # OpenMP thread counts are per thread: set it where inference runs
        if self.p.keep_freed_memory and not keep_freed_memory():
            self.get_logger().info("keep_freed_memory: the C library is not glibc, so freed memory goes back to the OS as before")
        return predictor or load_predictor(self.p.checkpoint, self.p.device, self.p.steps, self.p.refine_hypotheses, self.p.fuse_splat_radius)

    def _subscribe(self) -> None:
        """Camera (raw or compressed), camera_info and target poses (/tf comes in through self.tf)."""
        if self.p.image_transport == "compressed":  # image_transport's compressed plugin: <base topic>/compressed
            self.image_topic = resolved_topic(self, "image") + "/compressed"
            self.create_subscription(CompressedImage, self.image_topic, self._on_image, qos_profile_sensor_data)
        else:
            self.image_topic = resolved_topic(self, "image")
            self.create_subscription(Image, "image", self._on_image, qos_profile_sensor_data)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos_profile_sensor_data)
        self.create_subscription(PoseStamped, "mvgd/target_pose", self._on_target_pose, 10)

    def _advertise(self) -> None:
        """Outputs (image_pipeline layout), /tf and /tf_static for our frames, diagnostics."""
        # Publishers are CameraOut (image + camera_info + deprecated name); get_subscription_count covers all.
        self.depth_pub = CameraOut(self, "mvgd/depth", OUT_QOS, extras=("confidence",))
        self.points_pub = self.create_publisher(PointCloud2, "mvgd/points", OUT_QOS)
        self.rgb_pub = CameraOut(self, "mvgd/rgb", OUT_QOS)
        self.rgb_depth_pub = CameraOut(self, "mvgd/rgb/depth", OUT_QOS)
        self._TFMessage = tf_message_class()
        self.tf_pub = self.create_publisher(self._TFMessage, "/tf", 10)
        self.tf_static_pub = self.create_publisher(self._TFMessage, "/tf_static", STATIC_TF_QOS)
        self.static_frames = StaticFrames(lambda ts: self.tf_static_pub.publish(self._TFMessage(transforms=ts)),
                                          self.offsets, self.p.camera_frame_convention)
        diag_type, diag_topic = diagnostics.message_type()
        self.diag_pub = self.create_publisher(diag_type, diag_topic, 10)

    # ------------------------------------------------------------------ parameters and reset

    def _on_params(self, p) -> None:
        self.p = p
        self.keyframes.cfg = keyframe_config(p)  # applies from the next frame; the set is kept
        self.pending.cfg = sync_config(p)

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
        self._clear_lookahead()
        self.renderer.view_depths.clear()  # after a map correction their poses would place the old depth wrong
        self.stats.reset(reason)
        self.stats.keyframes = 0
        self.get_logger().info(f"conditioning set reset ({reason})")

    # ------------------------------------------------------------------ inputs

    def _on_camera_info(self, msg: CameraInfo) -> None:
        """Rectified input: intrinsics from P. Raw input with distortion: rectified by the node
        (`undistort`, mvgd_ros/rectify.py), or one warning when it cannot be."""
        try:
            if self.p.rectified:
                camera, problem = InputCamera(*image_codec.camera_info_to_K(image_codec.rectified_info(msg))), None
            else:
                camera, problem = self.rectifier.camera(msg)  # fully validated (sanity.checked_intrinsics)
        except ValueError as exc:
            self._drop("bad_camera_info", f"ignoring camera_info: {exc}")
            return
        if problem and not self._warned_distortion:
            self._warned_distortion = True
            self.get_logger().warning(problem)
        self._add_camera(stamp_to_ns(msg.header.stamp), camera)

    def _add_camera(self, stamp_ns: int, camera: InputCamera) -> None:
        """Store for matching; an image waiting for it may now resolve."""
        self.camera = (camera.K, camera.hw)
        self.pending.add_info(stamp_ns, camera)
        if len(self.pending):
            self._process_pending()  # the image it completes may be waiting (message_filters fires on the last arrival)

    def _on_image(self, msg) -> None:
        """Queue the raw message; it is decoded only if it becomes the frame the node uses."""
        self.stats.count("images")
        self.input_gaps.add(msg.header.frame_id, stamp_to_ns(msg.header.stamp), len(getattr(msg, "data", b"")))
        problem = precheck_image(msg, image_codec.COLOR_ENCODINGS)
        if problem:
            self._drop("bad_image", f"dropping image: {problem}")
            return
        for d in self.pending.add_image(stamp_to_ns(msg.header.stamp), msg.header.frame_id, msg, time.monotonic_ns()):
            self._dropped(d)
        self._process_pending()

    def _on_tf_data(self) -> None:
        """After each /tf message (tf2 MessageFilter re-checks its queue on new transforms): cheap when
        nothing waits; newest first, so one message costs at most one resolution plus failed lookups."""
        if len(self.pending):
            self._process_pending()

    def _drop(self, reason: str, message: str) -> None:
        """Count a dropped input; warn at most every WARN_EVERY_S per reason."""
        self.stats.drop(reason)
        self._warn(reason, f"{message} [{reason}; {self.stats.drops[reason]} so far]")

    def _warn(self, reason: str, message: str, every_s: float = WARN_EVERY_S, info: bool = False) -> None:
        """Log a warning (or info) at most every `every_s` per reason: reasons are a fixed set of names
        in the code (bounded memory), never frame_ids. Our own throttle, not rclpy's: that one is per
        call site and inspects the stack on every call."""
        now = time.monotonic()
        last = self._last_warning.get(reason)
        if last is None or now - last >= every_s:
            self._last_warning[reason] = now
            if info:  # two call sites: rclpy refuses one call site with two severities
                self.get_logger().info(message)
            else:
                self.get_logger().warning(message)

    def _dropped(self, d: Dropped) -> None:
        if d.reason in SKIPS:
            self.stats.count(f"skipped_{d.reason}")
            return
        waited = (time.monotonic_ns() - d.item.arrived_ns) * 1e-9
        self._drop(d.reason, f"dropping frame @ {d.item.stamp_ns * 1e-9:.3f} after {waited:.2f} s: {d.message}")

    def _process_pending(self) -> None:
        """Take the newest image whose camera_info and pose exist (older ones are superseded, never
        decoded; unresolvable ones wait on their own clock without delaying others), decode it, go on."""
        item, resolved, dropped, superseded = self.pending.take(time.monotonic_ns(), self._resolve)
        for d in dropped:
            self._dropped(d)
        if superseded:
            self.stats.count("superseded", superseded)
        if item is None:
            return
        camera, T_wc = resolved
        try:
            rgb = rectify.apply(image_codec.decode(item.msg), camera)  # Image or CompressedImage; raw -> pinhole
            frame = build_frame(rgb, camera.K, camera.hw, T_wc, item.stamp_ns * 1e-9, item.frame_id, stamp_ns=item.stamp_ns)
        except FrameError as exc:
            self._drop(exc.reason, f"dropping frame @ {item.stamp_ns * 1e-9:.3f}: {exc}")
            return
        except ValueError as exc:
            self._drop("bad_image", f"dropping image @ {item.stamp_ns * 1e-9:.3f}: {exc}")
            return
        self._on_frame(frame, item.msg.header)

    def _resolve(self, item: Pending) -> tuple[InputCamera, np.ndarray]:
        """(camera, T_wc) for a waiting image, without decoding it; Waiting / Rejected."""
        camera = self._intrinsics(item)
        try:
            T_wc = self._camera_pose(item.frame_id, item.stamp_ns)
        except TfLookupError as exc:
            raise Waiting("tf_timeout", str(exc)) from exc
        except FrameError as exc:
            raise Rejected(exc.reason, str(exc)) from exc
        self._wait_for_virtual_frames(item)
        return camera, T_wc

    def _wait_for_virtual_frames(self, item: Pending) -> None:
        """Give the virtual_frames' TF up to half of tf_wait_s to arrive when someone wants their views
        (tf2 MessageFilter with several target frames); after that the frame goes on without them."""
        if not self.p.virtual_frames or time.monotonic_ns() - item.arrived_ns >= self.p.tf_wait_s * 0.5e9:
            return
        if self.rgb_pub.get_subscription_count() + self.rgb_depth_pub.get_subscription_count() == 0:
            return
        for name in self.p.virtual_frames:
            if not self.tf.can_transform_ns(self.p.fixed_frame, name, item.stamp_ns):
                raise Waiting("tf_timeout", f"waiting for virtual frame '{name}'")

    def _intrinsics(self, item: Pending) -> InputCamera:
        """The camera_info nearest the image's stamp within camera_info_slop_s (ApproximateTime; the two
        topics arrive in any order). Rejected('size_mismatch') when a raw Image's size disagrees."""
        camera = self.pending.match_info(item.stamp_ns, time.monotonic_ns() - item.arrived_ns)
        hw = camera.hw
        h, w = getattr(item.msg, "height", None), getattr(item.msg, "width", None)
        if h is not None and (h, w) != tuple(hw):  # checked before decoding (CompressedImage: after, in build_frame)
            raise Rejected("size_mismatch", f"image is {w}x{h} but camera_info says {hw[1]}x{hw[0]}")
        return camera

    def _camera_pose(self, frame_id: str, stamp_ns: int | None) -> np.ndarray:
        """Optical camera-to-fixed pose (4, 4) of a TF frame at `stamp_ns` (integer ns; None = latest);
        TfLookupError / FrameError."""
        optical = is_optical(frame_id, self.p.camera_frame_convention)
        if not optical:
            self._warn("body_frame", f"frame '{frame_id}' is not named *_optical_frame: treating it as a REP 103 body frame "
                                     "(x forward, z up) and rotating to optical; set camera_frame_convention to override", every_s=60.0)
        return camera_pose(self.tf.lookup_ns(self.p.fixed_frame, frame_id, stamp_ns), optical)

    # ------------------------------------------------------------------ posed frames -> jobs

    def _on_frame(self, frame: Frame, header: Header) -> None:
        """Offer the frame to the keyframe set now (a newer keyframe is a view for the frames waiting in
        the lookahead queue), then predict the frame now due: this one when lookahead_frames is 0."""
        out_header = self._announce(frame, header)  # optical output frame (latched TF), output size
        added = self._update_keyframes(frame)
        item = Lagged(frame, out_header, added is not None, time.monotonic(), stamp=frame.stamp)
        self._release(self.lookahead.push(item, self.p.lookahead_frames))

    def _tick(self) -> None:
        """Timer (20 Hz): one callback for both queues, not two timers waking the executor."""
        self._process_pending()
        self._release_expired()

    def _release_expired(self) -> None:
        """Frames or targets that waited lookahead_max_wait_s for newer frames (a paused or ended stream), one per tick."""
        item = self.lookahead.expired(time.monotonic(), self.p.lookahead_max_wait_s)
        if item is not None:  # frames and target requests counted apart: /diagnostics compares the frames with the images
            self.stats.count("lookahead_expired" if item.is_frame else "lookahead_expired_targets")
            self._release([item])

    def _release(self, items: list[Lagged]) -> None:
        """Submit the frames and target requests the lookahead queue released, oldest first."""
        for item in items:
            if item.is_frame:
                self._submit_live(item)
            else:
                self._submit_target(item.target)

    def _clear_lookahead(self) -> None:
        """On a reset: frames and target poses waiting for newer frames are dropped (their poses may be stale)."""
        dropped = self.lookahead.clear()
        if dropped:
            self.stats.count("lookahead_dropped_on_reset", dropped)

    def _submit_live(self, item: Lagged) -> None:
        job = self._live_job(item.frame, item.header, keyframe=item.keyframe)
        if job.depth_view is not None or job.rgb_views:
            self.stats.conditioning_views = len(job.cond)
            self.worker.submit("live", job)

    def _update_keyframes(self, frame: Frame) -> str | None:
        """Re-check keyframes against TF, offer `frame` to the set, count resets and evicted outliers.
        Returns why `frame` became a keyframe (None: it did not)."""
        self._check_tf_jump(frame)
        outliers = self.keyframes.evicted["outlier"]
        added, reset = self.keyframes.add(frame)
        if reset:
            self.stats.reset(reset)
            self._clear_lookahead()
        if self.keyframes.evicted["outlier"] > outliers:
            self.stats.count("keyframe_outliers", self.keyframes.evicted["outlier"] - outliers)
            self._warn("keyframe_outlier", "evicted a keyframe whose pose left the camera's track and came straight back "
                                           f"(a localisation glitch; {self.keyframes.evicted['outlier']} so far)")
        self.stats.keyframes = len(self.keyframes)
        return added

    def _live_job(self, frame: Frame, out_header: Header, keyframe: bool = False) -> Job:
        """The views someone subscribes to for this live frame (none: an empty job, counted as skipped).
        A new keyframe gets its depth predicted even when nobody subscribes to it if virtual views
        will use it (`_wants_keyframe_depth`): kept for `fuse_view_depth`, not published."""
        want_depth = self.depth_pub.get_subscription_count() > 0  # image, camera_info, confidence or the old name
        want_points = self.p.publish_points and self.points_pub.get_subscription_count() > 0
        want_rgb = self.rgb_pub.get_subscription_count() > 0
        want_rgb_depth = self.rgb_depth_pub.get_subscription_count() > 0
        job = Job(cond=self.keyframes.conditioning(frame, self.p.select_views), live=frame, rgb_depth=want_rgb_depth, points=want_points)
        if want_rgb or want_rgb_depth:
            job.rgb_views = self._virtual_views(frame, out_header)
        keep_only = not (want_depth or want_points) and keyframe and self._wants_keyframe_depth(job, want_rgb or want_rgb_depth)
        if want_depth or want_points or keep_only:
            job.depth_view = View(frame.T_wc, scale_intrinsics(frame.K, frame.rgb.shape[:2], self.out_hw), out_header, self.out_hw)
            job.publish_depth = not keep_only
        else:
            self.stats.count("skipped_no_subscribers")
        return job

    def _wants_keyframe_depth(self, job: Job, want_virtual: bool) -> bool:
        """Whether virtual views will fuse keyframe depth: fusion on, and this frame renders virtual
        views or target poses have been asked for while someone listens to their output."""
        return self.p.fuse_view_depth and (bool(job.rgb_views) or (self._target_requested and want_virtual))

    def _check_tf_jump(self, live: Frame) -> None:
        """Re-check keyframe poses against TF at their own stamps: reset when the newest moved (a map
        correction), evict older ones whose pose TF has revised."""
        horizon = live.stamp - 0.9 * self.p.tf_cache_s  # older stamps have left the TF cache: nothing to compare

        def pose_now(kf: Frame) -> np.ndarray | None:
            if kf.stamp < horizon:
                return None
            try:  # the raw TF pose: the optical rotation does not move the origin, and recheck compares origins
                return self.tf.lookup_ns(self.p.fixed_frame, kf.frame_id, kf.stamp_ns)
            except TfLookupError:
                return None

        revised = self.keyframes.evicted["tf_revised"]
        kf = self.keyframes.newest
        if self.keyframes.recheck(pose_now):
            self.get_logger().warning(f"TF moved keyframe @ {kf.stamp:.3f} by {self.keyframes.correction(pose_now(kf)):.2f} m")
            self.reset("tf_jump")
        elif self.keyframes.evicted["tf_revised"] > revised:
            self.stats.count("keyframe_tf_revised", self.keyframes.evicted["tf_revised"] - revised)

    def _announce(self, frame: Frame, header: Header) -> Header:
        """Header for this frame's outputs: its stamp, in an optical frame (REP 103). The first image
        of a camera frame latches that frame's optical child (if it is a body frame) and the
        virtual-offset frames on /tf_static, whether or not anyone subscribes yet."""
        self.out_hw = output_size(self.p.resolution, self.predictor.image_size, frame.rgb.shape[:2])
        return Header(stamp=header.stamp, frame_id=self._output_frame(frame.frame_id))

    def _output_frame(self, frame_id: str) -> str:
        """Optical frame for outputs of camera `frame_id`; the first time, latches it (body input) and
        the virtual-offset frames on /tf_static (mvgd_ros/static_frames.py, LRU-bounded)."""
        evicted = self.static_frames.evicted
        out, new = self.static_frames.output_frame(frame_id, self.get_clock().now().to_msg())
        if new and out != frame_id:
            self._warn("optical_child", f"outputs of '{frame_id}' are stamped with its optical child '{out}' (latched on /tf_static)",
                       every_s=60.0, info=True)
        if self.static_frames.evicted > evicted:
            self.stats.count("camera_frames_evicted", self.static_frames.evicted - evicted)
            self._warn("camera_frames_evicted", f"more than {MAX_CAMERA_FRAMES} camera frame_ids seen: forgot the least recently "
                                                f"used ({self.static_frames.evicted} so far); is the image frame_id changing?")
        return out

    def _virtual_views(self, frame: Frame, header: Header) -> list[View]:
        """Views at `virtual_frames` (TF, at the frame's stamp) and at the latched offsets of the live camera."""
        K = scale_intrinsics(frame.K, frame.rgb.shape[:2], self.out_hw)
        views = []
        for name in self.p.virtual_frames:
            try:
                T_wc = self._camera_pose(name, frame.stamp_ns)
            except (TfLookupError, FrameError) as exc:
                self._drop("virtual_frame_tf", f"skipping virtual frame '{name}': {exc}")
                continue
            views.append(View(T_wc, K, Header(stamp=header.stamp, frame_id=name), self.out_hw))
        return views + offset_views(frame, self.offsets, K, header, self.out_hw)

    # ------------------------------------------------------------------ target poses

    def _on_target_pose(self, msg: PoseStamped) -> None:
        """Render the camera pose in `msg` (views.target_pose: its frame_id, its stamp, 0 = latest TF;
        optical, or x forward with target_pose_convention:=body) and broadcast it as target_frame_id."""
        try:
            parent, T_parent_cam, T_wc = target_pose(msg, self.p.target_pose_convention, self.p.fixed_frame, self.tf.lookup_ns)
        except (ValueError, TfLookupError) as exc:
            self._drop("bad_target_pose", f"ignoring target pose: {exc}")
            return
        if not self.keyframes.frames or self.camera is None:
            self._drop("no_keyframes", "ignoring target pose: no posed frames yet")
            return
        stamp = msg.header.stamp if stamp_to_ns(msg.header.stamp) else self.get_clock().now().to_msg()
        self._broadcast_target(parent, T_parent_cam, stamp)
        header = Header(stamp=stamp, frame_id=self.p.target_frame_id)
        K, hw = self.camera
        out_hw = output_size(self.p.resolution, self.predictor.image_size, hw)
        view = View(T_wc, scale_intrinsics(K, hw, out_hw), header, out_hw)
        self._target_requested = True  # from now on new keyframes keep their depth for fusion (_live_job)
        # With lookahead_frames the request waits for that many newer frames, as a frame does:
        # its views then come from both sides of the path (mvgd_ros/lookahead.py).
        # stamp as Frame.stamp is made (ns * 1e-9, not stamp_to_sec): a request at a frame's own stamp ties with it exactly
        item = Lagged(None, header, False, time.monotonic(), target=view, stamp=stamp_to_ns(stamp) * 1e-9)
        self._release(self.lookahead.push(item, self.p.lookahead_frames))

    def _submit_target(self, view: View) -> None:
        """Render a target view from the keyframes nearest it now."""
        cond = self.keyframes.select(view.T_wc, self.p.select_views)
        if not cond:  # every keyframe was evicted while the request waited (e.g. TF revised their poses)
            self._drop("no_keyframes", "dropping target pose: no keyframes left")
            return
        self.worker.submit("target", Job(cond=cond, rgb_views=[view], rgb_depth=self.rgb_depth_pub.get_subscription_count() > 0))

    def _broadcast_target(self, parent: str, T_parent_cam: np.ndarray, stamp) -> None:
        """target_frame_id on /tf, unless this stamp was sent already (tf2 listeners would warn TF_REPEATED_DATA)."""
        key = (parent, stamp.sec, stamp.nanosec)
        if key == self._last_target_tf:
            self.stats.count("target_tf_repeated_not_sent")
            return
        self._last_target_tf = key
        self.tf_pub.publish(self._TFMessage(transforms=[broadcast_message(parent, self.p.target_frame_id, T_parent_cam, stamp)]))

    # ------------------------------------------------------------------ worker thread (Renderer.run does the work)

    def _on_job_error(self, lane: str, exc: BaseException) -> None:
        if not self.context.ok():
            return  # shutting down (Ctrl-C): the running job's publish fails, nothing is wrong
        self.stats.count("inference_failed")
        self.get_logger().error(f"inference failed ({lane}): {type(exc).__name__}: {exc}", throttle_duration_sec=5.0)

    # ------------------------------------------------------------------ diagnostics and shutdown

    def _health(self, gaps) -> tuple[diagnostics.HealthConfig, dict]:
        """The health checks' thresholds and this period's facts; gaps: `InputGaps.estimate()` (None: too few frames yet)."""
        p = self.p
        rejected = self.tf.counters().get("tf_rejected", 0)  # malformed /tf the fallback TF buffer refused
        new_rejected, self._tf_rejected_seen = rejected - self._tf_rejected_seen, rejected
        cfg = diagnostics.HealthConfig(tuple(p.expected_rate_hz), p.rate_tolerance, p.input_timeout_s, p.worker_stuck_s, p.clock_skew_warn_s)
        return cfg, {"depth_wanted": self.depth_pub.get_subscription_count() > 0, "since_image_s": self.stats.since("images"),
                     "worker_busy_s": self.worker.busy_for(), "tf_rejected": new_rejected, "input_loss": loss_message(gaps)}

    def _publish_diagnostics(self) -> None:
        gaps = self.input_gaps.estimate()
        kv = self.stats.snapshot({
            **({} if gaps is None else {"input_missing_share": f"{gaps.missing_share:.3f}", "input_rate_hz": f"{gaps.rate_hz:.1f}",
                                        "image_bytes_max": str(gaps.largest_bytes)}),
            "pending": str(len(self.pending)),
            "lookahead_waiting": str(len(self.lookahead)),
            "worker_stale": str(self.worker.counts["stale"]),
            "tf_backend": self.tf.backend,
            **{k: str(v) for k, v in self.tf.counters().items()},  # fallback: rejected, jumps_back, frames_evicted, ...
            "camera_frames": str(len(self.static_frames)),
            "device": self.hardware_id,
            **{f"tf_fail_{k}": str(v) for k, v in sorted(self.tf.failures.items())},
        }, health=self._health(gaps))
        self.diag_pub.publish(diagnostics.to_message(kv, f"{self.get_name()}: depth", self.hardware_id, self.get_clock().now().to_msg()))
        self.get_logger().info(
            f"{kv['_message']}: images {kv['image_rate_hz']} Hz, depth {kv['depth_rate_hz']} Hz, latency {kv['latency_mean_s']} s, "
            f"keyframes {kv['keyframes']}, drops {dict(self.stats.drops)}, "
            f"skipped without subscribers {self.stats.totals['skipped_no_subscribers']}", throttle_duration_sec=10.0,
        )

    def destroy_node(self):
        if hasattr(self, "worker"):  # absent when the constructor failed
            self.inference_left_running = not self.worker.stop()
            totals = (f"totals: {dict(self.stats.totals)}, drops {dict(self.stats.drops)}, "
                      f"resets {dict(self.stats.resets)}, stale requests {self.worker.counts['stale']}")
            if self.context.ok():
                self.get_logger().info(totals)
            else:  # Ctrl-C: rclpy's handler already shut the context down, and a log call would fail on /rosout
                print(f"[INFO] [{self.get_name()}]: {totals}", file=sys.stderr, flush=True)
        return super().destroy_node()


def main(args=None, predictor=None) -> int:
    """Console script `mvgd_node` (ros2/demos pattern). Exit 1 when the node cannot start.
    `predictor` replaces the checkpoint's model (tests run the node with a stand-in)."""
    rclpy.init(args=args)
    try:
        node = MVGDNode(predictor=predictor)
    except (StartupError, InvalidParameterValueException, InvalidParameterTypeException) as exc:
        print(f"[mvgd_node] error: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 1
    name = node.get_name()  # for the last message, after the node is gone
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    if getattr(node, "inference_left_running", False):
        # A prediction outlasted the worker's timeout. The interpreter's normal exit would run C++
        # destructors under it and abort ("terminate called without an active exception", SIGABRT).
        print(f"[WARN] [{name}]: a prediction was still running at shutdown; exiting without waiting for it",
              file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
