"""Frames the node latches on /tf_static, and the LRU that bounds every per-name structure (issue 12)."""
import numpy as np
import pytest

from ros_harness import T0, rig, stamp_msg, tiny_checkpoint  # noqa: F401

from mvgd_core.cameras import make_pose
from mvgd_ros.lru import LruDict
from mvgd_ros.static_frames import MAX_CAMERA_FRAMES, StaticFrames


def test_lru_dict_evicts_least_recently_used_and_counts():
    d = LruDict(2)
    assert d.put("a", 1) == [] and d.put("b", 2) == []
    assert d.get("a") == 1  # a is now the most recent
    assert d.put("c", 3) == [("b", 2)]
    assert list(d) == ["a", "c"] and d.evicted == 1 and "b" not in d and d.get("b") is None
    with pytest.raises(ValueError):
        LruDict(0)


def test_static_frames_latch_optical_child_and_virtual_frames_bounded():
    sent = []
    offsets = [make_pose(np.eye(3), [0.1, 0, 0])]
    sf = StaticFrames(sent.append, offsets, "auto", max_cameras=2)
    stamp = stamp_msg(T0)
    assert sf.output_frame("cam_link", stamp) == ("cam_link_mvgd_optical", True)
    assert sf.output_frame("cam_link", stamp) == ("cam_link_mvgd_optical", False)  # once
    assert len(sent) == 1 and {(t.header.frame_id, t.child_frame_id) for t in sent[0]} == {
        ("cam_link", "cam_link_mvgd_optical"), ("cam_link_mvgd_optical", "cam_link_mvgd_virtual_0")}
    assert sf.output_frame("b_optical_frame", stamp) == ("b_optical_frame", True)  # optical: used as it is
    assert sf.output_frame("c_optical_frame", stamp)[1]  # third camera: cam_link (least recent) is forgotten
    assert sf.evicted == 1 and len(sf) == 2
    assert "cam_link_mvgd_optical" not in sf.children() and "cam_link_mvgd_optical" not in {t.child_frame_id for t in sent[-1]}
    assert sf.output_frame("cam_link", stamp)[1]  # comes back: latched again


def test_node_per_name_structures_stay_bounded_for_10k_frame_ids(rig, tiny_checkpoint):
    """10k distinct camera frame_ids through the node's output-frame path and its TF lookups: every
    per-name structure stays bounded; evictions are counted; warnings are per reason, not per name."""
    from mvgd_ros.tf import TfLookupError

    # Optical convention: nothing to latch, so the 10k names cost no /tf_static traffic (the latched
    # set's own bound is tested above); the per-frame_id map is the same LRU either way.
    node = rig.start_node(tiny_checkpoint, warm_up=False, camera_frame_convention="optical")
    for i in range(10_000):
        assert node._output_frame(f"cam_{i}") == f"cam_{i}"
        with pytest.raises(TfLookupError):
            node._camera_pose(f"cam_{i}", None)  # unknown frame: nothing is stored for it
    assert len(node.static_frames) == MAX_CAMERA_FRAMES
    assert node.stats.totals["camera_frames_evicted"] == 10_000 - MAX_CAMERA_FRAMES
    assert set(node._last_warning) == {"camera_frames_evicted"}  # one reason, throttled: not one per name
    assert node.tf.failures == {"unknown_frame": 10_000} and not node.tf._tree.frames
