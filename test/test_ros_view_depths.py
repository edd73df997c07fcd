"""The node keeps each live frame's depth and hands it to virtual views (`fuse_view_depth`):
mvgd_ros/render.py ViewDepths and Renderer._predict, without DDS."""
from types import SimpleNamespace
from unittest.mock import MagicMock

import numpy as np
import pytest

pytest.importorskip("rclpy")
from std_msgs.msg import Header  # noqa: E402

from mvgd_core.inference import Prediction  # noqa: E402
from mvgd_ros.frames import StampedFrame  # noqa: E402
from mvgd_ros.render import Publishers, Renderer, ViewDepths  # noqa: E402
from mvgd_ros.views import Job, View  # noqa: E402

K = np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])


class RecordingPredictor:
    """Returns a constant depth; records the view_depth each call got. `fusion` marks it as a
    predictor that fuses (the renderer passes view_depth only to those)."""

    fusion = object()
    refine = object()  # a predictor with the photometric refinement (the renderer may pass refine_sources)

    def __init__(self):
        self.calls = []
        self.sources = []  # refine_sources per call

    def predict(self, cond, tgt_K, tgt_T_wc, tgt_hw, task="depth", steps=None, seed=0, refine=None, synthesize=None, view_depth=None,
                refine_sources=None):
        self.calls.append(view_depth)
        self.sources.append(refine_sources)
        h, w = tgt_hw
        return Prediction(depth=np.full((h, w), 2.0, np.float32), rgb=np.zeros((h, w, 3), np.uint8) if task == "rgb" else None,
                          K=np.asarray(tgt_K), scale=1.0)


def _frame(i: int) -> StampedFrame:
    T = np.eye(4)
    T[0, 3] = 0.1 * i
    return StampedFrame(rgb=np.zeros((48, 64, 3), np.uint8), K=K, T_wc=T, stamp=100.0 + i, frame_id="cam_optical_frame",
                        stamp_ns=int(100e9) + i)


def _renderer(**params):
    p = SimpleNamespace(steps=1, seed=0, refine_depth=True, synthesize_rgb=True, fuse_view_depth=True, min_observable_share=0.0,
                        depth_encoding="32FC1", min_depth=0.0, max_depth=0.0, min_confidence=0.0, lookahead_frames=0)
    vars(p).update(params)
    pubs = Publishers(depth=MagicMock(), points=MagicMock(), rgb=MagicMock(), rgb_depth=MagicMock())
    pred = RecordingPredictor()
    return Renderer(pred, pubs, MagicMock(), lambda: p, lambda: 100.0), pred


def _view(f) -> View:
    return View(f.T_wc, K, Header(frame_id="cam_optical_frame"), (48, 64))


def test_live_depth_is_kept_and_given_to_later_virtual_views():
    r, pred = _renderer()
    frames = [_frame(i) for i in range(3)]
    for i, f in enumerate(frames[:2]):  # two live frames: their depth is kept
        r.run("live", Job(cond=frames[: i + 1], live=f, depth_view=_view(f)))
    assert pred.calls == [None, None]  # the live camera itself never gets view depth
    r.run("target", Job(cond=frames, rgb_views=[_view(_frame(5))]))
    views = pred.calls[-1]
    assert [v is None for v in views] == [False, False, True]  # frame 2 was never live
    depth, K_kept = views[0]
    assert depth.shape == (48, 64) and np.array_equal(K_kept, K)
    r.stats.fused.assert_called()  # diagnostics hear of every fused view
    r.view_depths.clear()  # what a reset does
    r.run("target", Job(cond=frames, rgb_views=[_view(_frame(5))]))
    assert pred.calls[-1] is None


def test_each_live_depth_reaches_the_keyframe_set():
    r, _ = _renderer()
    got = []
    r.on_live_depth = got.append
    f = _frame(0)
    r.run("live", Job(cond=[f], live=f, depth_view=_view(f)))
    r.run("target", Job(cond=[f], rgb_views=[_view(_frame(5))]))  # a virtual view is not the scene the camera sees
    assert len(got) == 1 and got[0].shape == (48, 64)


def test_fusion_off_or_a_predictor_without_it_gets_no_view_depth():
    r, pred = _renderer(fuse_view_depth=False)
    f = _frame(0)
    r.run("live", Job(cond=[f], live=f, depth_view=_view(f)))
    r.run("target", Job(cond=[f], rgb_views=[_view(_frame(5))]))
    assert pred.calls[-1] is None
    r2, pred2 = _renderer()
    pred2.fusion = None
    r2.run("live", Job(cond=[f], live=f, depth_view=_view(f)))
    r2.run("target", Job(cond=[f], rgb_views=[_view(_frame(5))]))
    assert pred2.calls[-1] is None


def test_view_depths_are_bounded_and_keyed_by_frame_and_stamp():
    vd = ViewDepths(cap=2)
    frames = [_frame(i) for i in range(3)]
    for f in frames:
        vd.put(f, np.ones((2, 2), np.float32), K)
    assert len(vd) == 2 and vd.for_views(frames[:1]) is None  # the oldest was forgotten
    other = StampedFrame(rgb=frames[2].rgb, K=K, T_wc=frames[2].T_wc, stamp=frames[2].stamp, frame_id="other_optical_frame",
                         stamp_ns=frames[2].stamp_ns)
    assert vd.for_views([other]) is None  # same stamp, another camera


def test_diagnostics_report_the_fused_share_per_period():
    from mvgd_ros.diagnostics import NodeStats

    s = NodeStats()
    assert s.snapshot()["virtual_depth_fused_share"] == "n/a"
    s.fused(0.5)
    s.fused(None)  # a view without keyframe depth: not counted
    s.fused(0.7)
    assert s.snapshot()["virtual_depth_fused_share"] == "0.600"
    assert s.snapshot()["virtual_depth_fused_share"] == "n/a"  # a new period


def test_renderer_keeps_a_keyframe_depth_without_publishing_it():
    r, pred = _renderer()
    f = _frame(0)
    r.run("live", Job(cond=[f], live=f, depth_view=_view(f), publish_depth=False))
    assert not r.pubs.depth.publish.called and r.view_depths.for_views([f]) is not None
    r.stats.count.assert_called_with("keyframe_depth_kept")


def test_with_a_lag_the_live_refinement_takes_one_more_source():
    """lookahead_frames > 0: the live frame has keyframes on both sides, and its refinement may use
    LAGGED_REFINE_SOURCES; target views and live frames without a lag keep the model's setting."""
    from mvgd_ros.lookahead import LAGGED_REFINE_SOURCES

    frames = [_frame(i) for i in range(3)]
    for lag, want in ((0, None), (2, LAGGED_REFINE_SOURCES)):
        r, pred = _renderer(lookahead_frames=lag)
        r.run("live", Job(cond=frames, live=frames[1], depth_view=_view(frames[1])))
        r.run("target", Job(cond=frames, rgb_views=[_view(_frame(5))]))
        assert pred.sources == [want, None]


class StagedPredictor(RecordingPredictor):
    """A predictor whose checkpoint has the learned second stage: records refine_net per call."""

    refine_net = object()

    def __init__(self):
        super().__init__()
        self.stage = []

    def predict(self, *args, refine_net=None, **kw):
        self.stage.append(refine_net)
        return super().predict(*args, **kw)


def test_refine_net_parameter_reaches_predictors_with_a_stage_only():
    r, pred = _renderer(refine_net=False)
    f = _frame(0)
    r.run("live", Job(cond=[f], live=f, depth_view=_view(f)))  # RecordingPredictor has no stage: no keyword (it would raise)
    staged = StagedPredictor()
    r.predictor = staged
    for on in (True, False):
        r._params().refine_net = on  # the node's parameter, changed at runtime
        r.run("live", Job(cond=[f], live=f, depth_view=_view(f)))
    assert staged.stage == [True, False]
