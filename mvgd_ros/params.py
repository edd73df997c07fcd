"""Every node parameter, declared once (generate_parameter_library style).

`SPECS` is the single source of truth: name, default (which fixes the type), description,
numeric range (enforced by rclpy through the descriptor), choices or a custom check
(enforced by our on-set callback, at startup for overrides too), and whether it may change
at runtime. config/mvgd.yaml mirrors SPECS; test_ros_params.py checks they agree.

Read-only parameters are rejected at runtime by rclpy (descriptor.read_only) and by our
callback; mutable ones (keyframe policy, steps, seed, tf_wait_s, ...) take effect on the next
frame.
"""
from __future__ import annotations

from dataclasses import dataclass, make_dataclass, replace
from typing import Any, Callable

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter


@dataclass(frozen=True)
class Spec:
    name: str
    default: Any
    description: str
    read_only: bool = True
    range: tuple[float, float] | None = None  # inclusive
    choices: tuple[str, ...] | None = None
    check: Callable[[Any], str | None] | None = None  # returns an error message or None
    array_type: Parameter.Type | None = None  # for list defaults (an empty list has no element type)

    @property
    def type(self) -> Parameter.Type:
        if self.array_type is not None:
            return self.array_type
        return Parameter.Type.from_parameter_value(self.default)


def _resolution(v) -> str | None:
    if len(v) != 2 or any(x < 0 for x in v) or (0 in v and any(v)):
        return f"resolution must be [height, width] (both > 0) or [0, 0] for the model's size, got {list(v)}"
    return None


def _odd_hypotheses(v) -> str | None:
    if v == 0 or (v >= 3 and v % 2):
        return None
    return f"refine_hypotheses must be 0 (auto) or odd and >= 3 (the network's depth is the band's centre), got {v}"


def _offsets(v) -> str | None:
    if len(v) % 6:
        return f"virtual_offsets must hold 6 numbers (x y z roll pitch yaw) per view, got {len(v)}"
    return None


def _rate_range(v) -> str | None:
    if len(v) != 2 or any(x < 0 for x in v) or v[0] > v[1]:
        return f"expected_rate_hz must be [min, max] with 0 <= min <= max, got {list(v)}"
    return None


SPECS: tuple[Spec, ...] = (
    # --- frames and TF
    Spec("fixed_frame", "odom", "TF frame that camera poses are expressed in (REP 105: odom for smooth local poses, map for globally consistent ones)."),
    Spec("camera_frame_convention", "auto",
         "How to read the image header's frame_id: 'optical' (z forward, x right), 'body' (REP 103, x forward, z up; "
         "converted to optical), or 'auto' (optical if the name ends in _optical_frame or _optical, else body).",
         choices=("auto", "optical", "body")),
    Spec("tf_wait_s", 0.5, "Seconds an image waits in the pending queue for its camera_info and its pose in TF before it is dropped "
         "(the queue is bounded in time: the newest resolvable image is used, older ones are skipped undecoded).",
         read_only=False, range=(0.0, 10.0)),
    Spec("tf_cache_s", 10.0, "Seconds of TF history kept (tf2 Buffer cache_time).", range=(1.0, 600.0)),
    Spec("max_pending", 100, "Memory guard: images waiting at most (raw, undecoded); the oldest is dropped beyond it. "
         "Keep it above tf_wait_s x camera rate.", read_only=False, range=(1, 1000)),
    Spec("camera_info_slop_s", 0.01, "An image matches the camera_info nearest its stamp within this many seconds (message_filters "
         "ApproximateTime slop); raise it for drivers that stamp the two far apart.", read_only=False, range=(0.0, 10.0)),
    Spec("max_input_rate_hz", 0.0, "Use at most this many images per second (by stamp); the rest are skipped before decoding. 0: no limit.",
         read_only=False, range=(0.0, 1000.0)),
    # --- conditioning set
    Spec("keyframe_pose_distance", 0.1, "A frame becomes a keyframe when its pose distance sqrt(t^2 + r^2) to the newest keyframe "
         "reaches this (t: metres, r = sqrt(2 (1 - trace(R_rel) / 3)); DeepVideoMVS' rule). 0: every frame.",
         read_only=False, range=(0.0, 100.0)),
    Spec("keyframe_optimal_baseline", 0.15, "Source views are the keyframes of lowest penalty r^2 + (t - b)^2 (x5 below b) w.r.t. the target, "
         "b this baseline in metres (DeepVideoMVS / SimpleRecon).", read_only=False, range=(0.001, 100.0)),
    Spec("keyframe_reference_depth", 0.0, "Scale keyframe_pose_distance and keyframe_optimal_baseline with the scene: x min(1, d / this), "
         "d the median of the latest live depth map (m). E.g. 2.5: rooms keep the metre thresholds, a table 0.4 m away gets 1/6 of them. "
         "0: fixed metres (the default).", read_only=False, range=(0.0, 100.0)),
    Spec("keyframe_buffer_size", 30, "Keyframes kept (a sliding window, oldest out) to choose source views from.", read_only=False, range=(1, 1000)),
    Spec("keyframe_outlier_translation", 1.0, "Evict a keyframe that lies this far (m, or 4x the usual keyframe spacing if more) from both "
         "an earlier and a later keyframe that agree with each other (a localisation glitch). 0 disables.",
         read_only=False, range=(0.0, 1000.0)),
    Spec("keyframe_max_age_s", 5.0, "Add a keyframe anyway when the newest is this old (s); 0 disables.", read_only=False, range=(0.0, 3600.0)),
    # 6, not 4 (stop 12): measured through the node on the demo bags (models/MODEL_CARD.md "Conditioning views"),
    # better on both real bags, p50 < 100 ms on 2 CPU cores; the model was trained with 2-5 views.
    Spec("max_views", 6, "Conditioning views per prediction, live frame included: the keyframes of lowest view penalty plus the live frame.",
         read_only=False, range=(1, 32)),
    Spec("select_views", 0, "Use at most k conditioning views (fewer than max_views, chosen by the same penalty); 0: max_views.",
         read_only=False, range=(0, 32)),
    # 0 (live) by default: a lag is for mapping, not for reactive avoidance (mvgd_ros/lookahead.py, MODEL_CARD "Fixed-lag depth").
    Spec("lookahead_frames", 0, "Fixed-lag depth: predict a frame's live depth only once this many newer frames have arrived, so that its "
         "conditioning views may come from both sides of the camera's path (more parallax when moving forward). Depth then "
         "arrives this many frames late (frames the node uses, after max_input_rate_hz), stamped with its own frame: for "
         "mapping (e.g. nvblox), not for reactive obstacle avoidance. A mvgd/target_pose request waits the same way for this "
         "many frames newer than its stamp. 0: live.",
         read_only=False, range=(0, 30)),
    Spec("lookahead_max_wait_s", 0.5, "A frame or target pose waiting for newer frames (lookahead_frames) is predicted anyway after this many seconds "
         "(the stream paused or ended).",
         read_only=False, range=(0.0, 10.0)),
    Spec("reset_jump_translation", 0.5, "Reset the keyframes when TF moves the newest keyframe's pose by more than this (m), e.g. a map correction; 0 disables.",
         read_only=False, range=(0.0, 100.0)),
    # --- model
    Spec("checkpoint", "", "Model checkpoint (.pt). Empty: the package's models/mvgd_default.pt (source tree, then the ament share dir)."),
    Spec("device", "auto", "Inference device: auto (cuda if available), cuda or cpu.", choices=("auto", "cuda", "cpu")),
    Spec("torch_threads", 0, "CPU threads torch uses for inference; 0 keeps torch's default (one per core). Use 1 on a CPU shared "
         "with other busy processes: there 2 threads measured 4-10x slower than 1 (BENCHMARKS.md).", range=(0, 256)),
    Spec("keep_freed_memory", True, "Keep freed host memory for the next depth map instead of returning it to the OS (glibc mallopt, "
         "mvgd_core/allocator.py): each prediction reuses the same few-MB buffers instead of faulting in fresh pages (BENCHMARKS.md "
         "'Freed memory kept for the next prediction'). The process keeps its peak heap. No effect where the C library is not glibc."),
    Spec("steps", 1, "DDIM sampling steps per prediction. 1 = a single x0 estimate from pure noise (fastest); more steps add sampled detail. The shipped model measured best at 1 (models/MODEL_CARD.md).", read_only=False, range=(1, 1000)),
    Spec("refine_depth", True, "Photometric refinement of depth: a narrow ZNCC sweep around the network's depth at the model's resolution "
         "(mvgd_core/refine.py), each pixel's depth picked after semi-global matching (neighbours prefer the same correction unless an image edge "
         "lies between them); replaces it only where the match is textured, good and unambiguous, and spreads those corrections to "
         "neighbouring pixels of the same colour (mvgd_core/propagation.py). Off: the network alone.", read_only=False),
    Spec("refine_hypotheses", 0, "Depths the refinement tries per pixel at the live camera (odd), 0: auto (11 on CUDA, 7 on the CPU). 11 "
         "measured better live on every demo bag (AbsRel -0.002 to -0.008, models/MODEL_CARD.md \"More depths in the refinement's band\") but "
         "costs 9-13 ms more per depth map on 2 CPU cores, which puts 10 Hz at 8 views out of reach there. Virtual views keep 7.",
         range=(0, 31), check=_odd_hypotheses),
    Spec("refine_net", True, "The learned second stage after the refinement at the live camera (mvgd_core/refine_net.py): a small U-Net "
         "that reads the refinement's band cost and corrects the refined depth, when the checkpoint has one (the shipped model does). "
         "On by default since stop 31, when it was retrained on the node's own keyframe sets: level or better on every demo bag, the "
         "held-out tables and the held-out procedural sequences (models/MODEL_CARD.md \"The learned stage on the node's own keyframe sets\"); "
         "about 15 ms per depth map on 2 CPU cores. Off, or without refine_depth: the refinement's depth.", read_only=False),
    Spec("synthesize_rgb", True, "RGB at virtual views from the conditioning images warped by the view's predicted depth (mvgd_core/view_synthesis.py; "
         "one more inference per view, which also serves the view's depth), the network's RGB where no image sees. Off: the network's RGB alone (blurrier).", read_only=False),
    Spec("fuse_view_depth", True, "At virtual views, fuse the depth the keyframes got when each was the live camera (reprojected, "
         "per-pixel median with the network's; mvgd_core/view_depth_fusion.py): live depth is the better one. Without a "
         "mvgd/depth subscriber, each new keyframe's depth is still predicted (kept, not published) while virtual views are "
         "rendered (virtual_frames, virtual_offsets, or after a target pose) and subscribed. Off: the network's virtual-view "
         "depth alone.", read_only=False),
    Spec("fuse_splat_radius", 0, "With fuse_view_depth: each keyframe point reprojected into a virtual view also votes on the "
         "empty pixels up to this many pixels around it (model resolution), closing the cracks a nearer virtual camera leaves "
         "(mvgd_core/view_depth_fusion.py, FusionConfig.splat_radius). 0 (the default): only where it lands. 1 is much better "
         "on rendered scenes (novel depth AbsRel 0.126 -> 0.084 on the procedural demo bag) and level or slightly worse on the "
         "real held-out walk (models/MODEL_CARD.md \"Filling the splats' cracks\"); try it in simulation.", range=(0, 3)),
    Spec("resolution", [0, 0], "Output [height, width] in pixels; [0, 0]: the model's height and the input image's aspect ratio.", check=_resolution),
    Spec("warm_up", True, "Run one inference at start-up so the first real frame does not pay for lazy initialisation (kernels, allocator)."),
    Spec("seed", 0, "Sampling seed: the same inputs give the same outputs.", read_only=False, range=(0, 2**31 - 1)),
    # --- outputs
    Spec("publish_points", False, "Also publish mvgd/points (PointCloud2, xyz of the valid pixels in the camera's optical frame) from each depth map.", read_only=False),
    Spec("virtual_frames", [], "TF frames (optical) to render RGB at, each at every live image's stamp, published on mvgd/rgb/image.",
         array_type=Parameter.Type.STRING_ARRAY),
    Spec("virtual_offsets", [], "Virtual cameras rigidly attached to the live camera: x y z (m) roll pitch yaw (rad) per view, in its optical "
         "frame; each is broadcast on /tf_static as <camera frame>_mvgd_virtual_<i>.",
         array_type=Parameter.Type.DOUBLE_ARRAY, check=_offsets),
    Spec("camera_frame", "", "The camera's frame_id, if known: its optical child (body frames) and the virtual_offsets frames are then "
         "latched on /tf_static at start-up; empty: when its first image arrives."),
    Spec("target_frame_id", "mvgd_target_optical_frame", "Frame name given to views rendered for /mvgd/target_pose requests (broadcast on /tf)."),
    Spec("target_pose_convention", "optical",
         "How to read mvgd/target_pose: 'optical' (z forward, x right) or 'body' (REP 103 x forward, z up, e.g. an RViz 2D Goal Pose).",
         choices=("optical", "body"), read_only=False),
    Spec("depth_encoding", "32FC1", "Published depth (REP 118): '32FC1' metres with NaN for invalid pixels, or '16UC1' millimetres with 0 for invalid.",
         choices=("32FC1", "16UC1")),
    Spec("min_depth", 0.0, "Depth below this (m) is published as invalid; 0 disables.", read_only=False, range=(0.0, 1000.0)),
    Spec("max_depth", 0.0, "Depth above this (m) is published as invalid; 0 disables.", read_only=False, range=(0.0, 1000.0)),
    Spec("min_confidence", 0.0, "Pixels whose model confidence is below this are published as invalid depth; 0 disables. With a calibrated "
         "model it is the probability that depth is within 25 % of the truth (raw 0..1 score otherwise). Needs a model that outputs confidence.", read_only=False, range=(0.0, 1.0)),
    Spec("min_observable_share", 0.0, "Live depth maps whose observable share (the share of pixels whose depth the conditioning views "
         "see with parallax, Prediction.observable_share; diagnostics depth_observable_share) is below this are not published "
         "(counted as drop_not_observable): with no parallax (one view, turning in place) depth is a monocular guess. 0 publishes all; "
         "0.1 keeps a mapper (nvblox) from integrating such maps.", read_only=False, range=(0.0, 1.0)),
    Spec("image_transport", "raw", "Input transport: 'raw' (sensor_msgs/Image on image) or 'compressed' (sensor_msgs/CompressedImage jpeg/png "
         "on image/compressed, as image_transport's compressed plugin publishes it).", choices=("raw", "compressed")),
    Spec("rectified", False, "Input images are rectified (image_proc's image_rect): intrinsics come from camera_info P, distortion is ignored. "
         "Otherwise the input is raw: see undistort."),
    Spec("undistort", True, "Raw input whose camera_info has lens distortion (plumb_bob, rational_polynomial, equidistant) is rectified by "
         "the node into the pinhole camera P (K when P is empty), like image_proc's rectify (mvgd_ros/rectify.py). Off, or another "
         "model: the raw image is used as a pinhole image with K, with a one-time warning."),
    Spec("diagnostics_period_s", 1.0, "Seconds between diagnostics messages and log lines.", range=(0.1, 60.0)),
    Spec("expected_rate_hz", [0.0, 0.0], "Expected depth output rate [min, max] in Hz (diagnostic_updater FrequencyStatus); [0.0, 0.0] disables the check.",
         check=_rate_range, array_type=Parameter.Type.DOUBLE_ARRAY),
    Spec("rate_tolerance", 0.1, "Relative tolerance around expected_rate_hz before diagnostics WARN.", range=(0.0, 1.0)),
    Spec("input_timeout_s", 3.0, "Diagnostics WARN when no image arrived for this long (s); 0 disables.", range=(0.0, 3600.0)),
    Spec("worker_stuck_s", 30.0, "Diagnostics WARN when one inference has been running this long (s); 0 disables.", range=(0.0, 3600.0)),
    Spec("clock_skew_warn_s", 30.0, "Diagnostics WARN when the period's median image stamp is this far behind the node's clock (s), or "
         "over 1 s ahead: a bag played without --clock and use_sim_time, or unsynchronised clocks; 0 disables (mvgd-eval, which "
         "plays bags on wall time on purpose).", range=(0.0, 86400.0)),
)

BY_NAME = {s.name: s for s in SPECS}
Params = make_dataclass("Params", [(s.name, Any) for s in SPECS], frozen=True)
Params.__doc__ = "Current parameter values, one field per Spec in SPECS."


def descriptor(spec: Spec) -> ParameterDescriptor:
    d = ParameterDescriptor(name=spec.name, type=int(spec.type), description=spec.description, read_only=spec.read_only)
    if spec.choices:
        d.additional_constraints = f"one of: {', '.join(spec.choices)}"
    if spec.range is not None:
        lo, hi = spec.range
        if spec.type == Parameter.Type.INTEGER:
            d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]
        else:
            d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
    return d


def check_value(name: str, value) -> str | None:
    """Error message for a value rclpy's descriptor cannot check (choices, shapes), or None."""
    spec = BY_NAME.get(name)
    if spec is None or value is None:
        return None
    if spec.choices and value not in spec.choices:
        return f"{name} must be one of {list(spec.choices)}, got {value!r}"
    return spec.check(value) if spec.check else None


def declare(node: Node, on_change: Callable[[Params], None] | None = None) -> Params:
    """Declare every parameter on `node` (overrides from YAML / -p validated) and return the values.

    Raises rclpy's InvalidParameterValueException / InvalidParameterTypeException for a bad
    override, naming the parameter and the reason. `on_change` gets the new Params after each
    accepted runtime change.
    """
    initialized = False

    def validate(params: list[Parameter]) -> SetParametersResult:
        for p in params:
            if initialized and p.name in BY_NAME and BY_NAME[p.name].read_only:
                return SetParametersResult(successful=False, reason=f"{p.name} is read-only (restart the node to change it)")
            err = check_value(p.name, p.value)
            if err:
                return SetParametersResult(successful=False, reason=err)
        return SetParametersResult(successful=True)

    post_set = getattr(node, "add_post_set_parameters_callback", None)  # Iron and later; not on Humble

    def validate_and_notify(params: list[Parameter]) -> SetParametersResult:
        """Humble: no post-set callback, so apply accepted values here (they are set right after)."""
        result = validate(params)
        for p in params if result.successful else ():  # Humble may check descriptor ranges after callbacks
            spec = BY_NAME.get(p.name)
            number = isinstance(p.value, (int, float)) and not isinstance(p.value, bool)  # a wrong type is rclpy's to refuse
            if spec is not None and spec.range is not None and number and not spec.range[0] <= p.value <= spec.range[1]:
                return SetParametersResult(successful=False, reason=f"{p.name} out of range: {p.value} not in {list(spec.range)}")
        if result.successful and initialized and on_change is not None:
            on_change(replace(read(node), **{p.name: _value(p) for p in params if p.name in BY_NAME}))
        return result

    node.add_on_set_parameters_callback(validate if post_set is not None or on_change is None else validate_and_notify)
    for s in SPECS:
        node.declare_parameter(s.name, s.type if s.default == [] else s.default, descriptor(s))
    initialized = True
    if on_change is not None and post_set is not None:
        post_set(lambda _params: on_change(read(node)))
    return read(node)


def _value(p: Parameter):
    """A parameter's value as `read` returns it (arrays as lists)."""
    default = BY_NAME[p.name].default
    if isinstance(default, list):
        return list(default) if p.value is None else list(p.value)
    return p.value


def read(node: Node) -> Params:
    """Current values; an array parameter left unset (YAML `[]`) reads as its default."""
    values = {}
    for s in SPECS:
        try:
            v = node.get_parameter(s.name).value
        except ParameterUninitializedException:
            v = None
        if isinstance(s.default, list):  # rclpy may hand back array.array or None
            v = list(s.default) if v is None else list(v)
        values[s.name] = v
    return Params(**values)


def yaml_defaults() -> dict[str, Any]:
    """{name: default} as config/mvgd.yaml should hold them."""
    return {s.name: s.default for s in SPECS}

