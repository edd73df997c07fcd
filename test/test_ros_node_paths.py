"""The node's paths called directly on an unspun node (its timers never fire, so what happens is
caused by the call under test): camera_info completing a waiting image, decoding only the image
used, exact-ns target-pose lookups, and model outputs that fail the numeric check (issue 12)."""
import numpy as np
import pytest

from ros_harness import CAMERA_FRAME, rig, wait_for  # noqa: F401

from mvgd_core.cameras import make_pose
from mvgd_core.inference import Prediction
from mvgd_ros import image_codec
from mvgd_ros.tf import broadcast_message

pytestmark = pytest.mark.ros

NS = 1_000_000_000
BASE = 1_700_000_000 * NS + 1000  # epoch scale; float seconds round this 24 ns up (past the newest TF)
K = np.array([[16.0, 0.0, 7.5], [0.0, 16.0, 7.5], [0.0, 0.0, 1.0]])


class Scripted:
    """Stand-in model: depth maps filled with the next value of `values` (then 2 m)."""

    image_size = (16, 16)
    device = "cpu"

    def __init__(self, values=()):
        self.values = list(values)
        self.calls = []  # (task, refine, synthesize) per call

    def predict(self, cond, tgt_K, tgt_T_wc, tgt_hw, task="depth", steps=None, seed=0, refine=None, synthesize=None):
        self.calls.append((task, refine, synthesize))
        v = self.values.pop(0) if self.values else 2.0
        h, w = tgt_hw
        depth = np.full((h, w), v, np.float32) if task == "depth" else None
        rgb = np.zeros((h, w, 3), np.uint8) if task == "rgb" else None
        return Prediction(depth=depth, rgb=rgb, K=np.asarray(tgt_K, np.float64), scale=1.0)


@pytest.fixture
def still(rig):
    """Make an MVGDNode in the rig's context that no executor spins."""
    from rclpy.parameter import Parameter

    from mvgd_ros.node import MVGDNode

    made = []

    def make(predictor=None, **overrides):
        params = [Parameter("warm_up", value=False)] + [Parameter(k, value=v) for k, v in overrides.items()]
        made.append(MVGDNode(predictor=predictor or Scripted(), context=rig.ctx, parameter_overrides=params))
        return made[-1]

    yield make
    for n in made:
        n.destroy_node()


def _header(ns, frame_id=CAMERA_FRAME):
    from std_msgs.msg import Header

    from mvgd_ros.tf import ns_to_stamp

    return Header(frame_id=frame_id, stamp=ns_to_stamp(ns))


def _tf(node, ns, x=0.0, parent="odom", child=CAMERA_FRAME):
    assert node.tf.add(broadcast_message(parent, child, make_pose(np.eye(3), [x, 0, 0]), _header(ns).stamp), False)


def _image(ns):
    return image_codec.rgb_to_image(np.full((16, 16, 3), 90, np.uint8), _header(ns))


def test_camera_info_arrival_completes_a_waiting_image_and_only_that_image_is_decoded(still, monkeypatch):
    node = still()
    decoded = []
    real_decode = image_codec.decode
    monkeypatch.setattr(image_codec, "decode", lambda msg: decoded.append(msg) or real_decode(msg))
    stamps = [BASE + k * NS // 10 for k in range(3)]
    for ns in stamps:
        _tf(node, ns)
    _tf(node, stamps[-1] + NS // 10)
    for ns in stamps:
        node._on_image(_image(ns))  # no camera_info yet: all wait
    assert len(node.pending) == 3 and len(node.keyframes) == 0 and not decoded
    node._on_camera_info(image_codec.make_camera_info(K, (16, 16), _header(stamps[-1])))
    # the arrival itself (not a timer) resolved the newest image; the two older ones were never decoded
    assert len(node.keyframes) == 1 and node.keyframes.newest.stamp_ns == stamps[-1]
    assert [m.header.stamp.nanosec for m in decoded] == [_header(stamps[-1]).stamp.nanosec]
    assert node.stats.totals["superseded"] == 2 and len(node.pending) == 0


def test_target_pose_tf_lookup_is_exact_in_nanoseconds(still):
    """A target pose in a TF frame, stamped exactly at that frame's newest sample at epoch scale:
    float seconds would round the stamp 24 ns into the future (an extrapolation error)."""
    from geometry_msgs.msg import PoseStamped

    node = still()
    _tf(node, BASE - NS, child="base_link")
    _tf(node, BASE, x=1.0, child="base_link")
    msg = PoseStamped(header=_header(BASE, "base_link"))
    msg.pose.orientation.w = 1.0
    node._on_target_pose(msg)
    assert node.stats.drops["bad_target_pose"] == 0, node.tf.failures
    assert node.stats.drops["no_keyframes"] == 1  # got past the lookup; nothing to condition on yet


def test_non_finite_or_out_of_range_output_is_an_inference_failure_never_published(rig, still):
    node = still(Scripted([float("nan"), 1e9]))  # NaN, then beyond D_MAX x scale; then 2 m
    wait_for(lambda: node.depth_pub.get_subscription_count() > 0, "the rig's depth collector")
    node._on_camera_info(image_codec.make_camera_info(K, (16, 16), _header(BASE)))
    for k in range(3):
        ns = BASE + k * NS
        _tf(node, ns, x=0.5 * k)
        _tf(node, ns + NS // 10, x=0.5 * k)
        node._on_camera_info(image_codec.make_camera_info(K, (16, 16), _header(ns)))
        node._on_image(_image(ns))
        wait_for(lambda k=k: node.stats.totals["inference_failed"] + node.stats.totals["depth_published"] == k + 1, f"job {k}")
    assert node.stats.totals["inference_failed"] == 2 and node.stats.totals["depth_published"] == 1
    wait_for(lambda: rig.got("mvgd/depth/image"), "the good depth map")
    got = rig.got("mvgd/depth/image")
    assert len(got) == 1 and got[0].header.stamp.sec == (BASE + 2 * NS) // NS
    assert np.allclose(image_codec.image_to_depth(got[0]), 2.0)


def test_refinement_and_view_synthesis_parameters_reach_every_prediction_and_change_at_runtime(rig, still):
    """refine_depth / synthesize_rgb (default on) are passed to the model on every call; setting
    them at runtime takes effect on the next frame."""
    from rclpy.parameter import Parameter

    model = Scripted()
    node = still(model)
    wait_for(lambda: node.depth_pub.get_subscription_count() > 0, "the rig's depth collector")
    for k in range(2):
        if k == 1:
            assert node.set_parameters([Parameter("refine_depth", value=False), Parameter("synthesize_rgb", value=False)])[0].successful
        ns = BASE + k * NS
        _tf(node, ns, x=0.5 * k)
        _tf(node, ns + NS // 10, x=0.5 * k)
        node._on_camera_info(image_codec.make_camera_info(K, (16, 16), _header(ns)))
        node._on_image(_image(ns))
        wait_for(lambda k=k: node.stats.totals["depth_published"] == k + 1, f"depth {k}")
    assert model.calls == [("depth", True, True), ("depth", False, False)]


class SynthesizingScripted(Scripted):
    """Like Scripted, but an RGB prediction also carries the view's depth (what MVGDPredictor does
    with view synthesis on)."""

    def predict(self, *args, task="depth", **kw):
        p = super().predict(*args, task=task, **kw)
        if task == "rgb":
            p.depth = np.full(p.rgb.shape[:2], 3.0, np.float32)
        return p


@pytest.mark.parametrize("model_cls,calls", [(SynthesizingScripted, ["depth", "rgb"]), (Scripted, ["depth", "rgb", "depth"])])
def test_virtual_view_depth_reuses_the_depth_view_synthesis_predicted(rig, still, model_cls, calls):
    """A virtual view whose depth someone wants costs one RGB inference when that prediction
    carries the depth (view synthesis), and one more depth inference otherwise; both publish."""
    model = model_cls()
    node = still(model, virtual_offsets=[0.0, 0.0, -0.5, 0.0, 0.0, 0.0])
    wait_for(lambda: min(p.get_subscription_count() for p in (node.depth_pub, node.rgb_pub, node.rgb_depth_pub)) > 0, "the rig's collectors")
    _tf(node, BASE)
    _tf(node, BASE + NS // 10)
    node._on_camera_info(image_codec.make_camera_info(K, (16, 16), _header(BASE)))
    node._on_image(_image(BASE))
    wait_for(lambda: rig.got("mvgd/rgb/depth/image"), "the virtual view's depth")
    assert [c[0] for c in model.calls] == calls
    want = 3.0 if model_cls is SynthesizingScripted else 2.0
    assert np.allclose(image_codec.image_to_depth(rig.got("mvgd/rgb/depth/image")[0]), want)


def test_diagnostics_report_the_share_of_depth_the_refinement_replaced(rig, still):
    class Sharing(Scripted):
        def predict(self, *args, **kw):
            p = super().predict(*args, **kw)
            p.refined_share = 0.25
            return p

    node = still(Sharing())
    wait_for(lambda: node.depth_pub.get_subscription_count() > 0, "the rig's depth collector")
    assert node.stats.snapshot()["depth_refined_share"] == "n/a"
    _tf(node, BASE)
    _tf(node, BASE + NS // 10)
    node._on_camera_info(image_codec.make_camera_info(K, (16, 16), _header(BASE)))
    node._on_image(_image(BASE))
    wait_for(lambda: node.stats.totals["depth_published"] == 1, "one depth map")
    assert node.stats.snapshot()["depth_refined_share"] == "0.250"


class Confident(Scripted):
    """A model with a confidence (MVGDPredictor's `confidence_calibrated` says so): records whether it was asked for one."""

    confidence_calibrated = True

    def __init__(self):
        super().__init__()
        self.asked = []

    def predict(self, *args, with_confidence=True, **kw):
        self.asked.append(with_confidence)
        p = super().predict(*args, **kw)
        p.confidence = np.full(p.depth.shape, 0.5, np.float32) if with_confidence else None
        return p


def _one_live_depth(rig, node):
    wait_for(lambda: node.depth_pub.get_subscription_count() > 0, "the rig's depth collector")
    _tf(node, BASE)
    _tf(node, BASE + NS // 10)
    node._on_camera_info(image_codec.make_camera_info(K, (16, 16), _header(BASE)))
    node._on_image(_image(BASE))
    wait_for(lambda: node.stats.totals["depth_published"] + node.stats.totals.get("inference_failed", 0) >= 1, "one depth map")


def test_confidence_is_computed_only_when_something_uses_it(rig, still):
    """Nobody on mvgd/depth/confidence and no min_confidence: the model is told to skip it (2-3 ms
    of a live depth); min_confidence needs it to mask the depth, so then it is asked for."""
    quiet = Confident()
    _one_live_depth(rig, still(quiet))
    assert quiet.asked == [False]
    masking = Confident()
    _one_live_depth(rig, still(masking, min_confidence=0.7))
    assert masking.asked == [True]
    wait_for(lambda: len(rig.got("mvgd/depth/image")) == 2, "both depth maps")
    first, second = (image_codec.image_to_depth(m) for m in rig.got("mvgd/depth/image"))
    assert np.allclose(first, 2.0) and not second.any()  # confidence 0.5 < 0.7: every pixel masked (NaN on the wire)


def test_10k_unseen_body_frame_ids_give_one_warning_and_store_nothing(still):
    """Issue 12: each unseen non-optical frame_id used to log a warning and grow a set."""
    from mvgd_ros.tf import TfLookupError

    node = still()
    warnings = []

    class Logger:
        def warning(self, msg, **_):
            warnings.append(msg)

        def info(self, msg, **_):
            pass

    node._logger = Logger()  # what Node.get_logger() returns
    for i in range(10_000):
        with pytest.raises(TfLookupError):
            node._camera_pose(f"camera_{i}_link", BASE)
    assert len(warnings) == 1 and "camera_0_link" in warnings[0]
    assert set(node._last_warning) == {"body_frame"} and not node.tf._tree.frames


def test_unobservable_live_depth_is_withheld_on_request(rig, still):
    """min_observable_share: a live depth map whose views have no parallax is not published and is
    counted (drop_not_observable); the share is reported either way; 0 publishes it."""
    from rclpy.parameter import Parameter

    class NoParallax(Scripted):
        def predict(self, *args, **kw):
            p = super().predict(*args, **kw)
            p.observable_share = 0.03
            return p

    node = still(NoParallax(), min_observable_share=0.1)
    wait_for(lambda: node.depth_pub.get_subscription_count() > 0, "the rig's depth collector")
    _tf(node, BASE)
    _tf(node, BASE + NS // 10)
    node._on_camera_info(image_codec.make_camera_info(K, (16, 16), _header(BASE)))
    node._on_image(_image(BASE))
    wait_for(lambda: node.stats.drops["not_observable"] == 1, "the withheld depth map")
    assert node.stats.totals["depth_published"] == 0 and not rig.got("mvgd/depth/image")
    kv = node.stats.snapshot()
    assert kv["depth_observable_share"] == "0.030" and kv["drop_not_observable"] == "1"
    assert node.set_parameters([Parameter("min_observable_share", value=0.0)])[0].successful
    _tf(node, BASE + NS, x=0.5)
    _tf(node, BASE + NS + NS // 10, x=0.5)
    node._on_camera_info(image_codec.make_camera_info(K, (16, 16), _header(BASE + NS)))
    node._on_image(_image(BASE + NS))
    wait_for(lambda: node.stats.totals["depth_published"] == 1, "the depth map, published with the gate off")


@pytest.mark.parametrize("depth_subs, rgb_subs, keyframe, fuse, targets, expect", [
    (0, 1, True, True, True, "kept"),  # target poses rendered, nobody on mvgd/depth: a new keyframe's depth is kept for fusion
    (0, 1, True, True, False, None),  # nothing renders virtual views (no offsets, frames or target poses)
    (0, 1, False, True, True, None),  # not a keyframe: nothing to keep
    (0, 1, True, False, True, None),  # fusion off
    (0, 0, True, True, True, None),  # nobody listens to the virtual views
    (1, 1, True, True, True, "published"),
])
def test_live_job_predicts_keyframe_depth_for_virtual_views(still, depth_subs, rgb_subs, keyframe, fuse, targets, expect):
    from mvgd_core.data.types import Frame

    node = still(fuse_view_depth=fuse)
    node.depth_pub.get_subscription_count = lambda: depth_subs
    node.rgb_pub.get_subscription_count = lambda: rgb_subs
    node.rgb_depth_pub.get_subscription_count = lambda: 0
    node.points_pub.get_subscription_count = lambda: 0
    node._target_requested = targets
    node.out_hw = (16, 16)
    frame = Frame(rgb=np.zeros((16, 16, 3), np.uint8), K=K, T_wc=np.eye(4), stamp=1.0, frame_id=CAMERA_FRAME)
    job = node._live_job(frame, _header(BASE), keyframe=keyframe)
    got = None if job.depth_view is None else ("published" if job.publish_depth else "kept")
    assert got == expect


def test_virtual_offsets_make_keyframe_depth_worth_keeping(still):
    """With virtual_offsets every live frame renders virtual views, so a new keyframe keeps its depth
    even before any target pose."""
    from mvgd_core.data.types import Frame

    node = still(virtual_offsets=[0.0, 0.0, -0.5, 0.0, 0.0, 0.0])
    node.depth_pub.get_subscription_count = lambda: 0
    node.rgb_pub.get_subscription_count = lambda: 1
    node.rgb_depth_pub.get_subscription_count = lambda: 0
    node.out_hw = (16, 16)
    frame = Frame(rgb=np.zeros((16, 16, 3), np.uint8), K=K, T_wc=np.eye(4), stamp=1.0, frame_id=CAMERA_FRAME)
    job = node._live_job(frame, _header(BASE), keyframe=True)
    assert job.rgb_views and job.depth_view is not None and not job.publish_depth
