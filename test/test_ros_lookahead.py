"""Fixed-lag live depth (mvgd_ros/lookahead.py, node parameter lookahead_frames): the queue, the
evaluation's replay of it, and the node over loopback DDS holding a frame, or a target-pose
request, until newer frames came."""
import time

import numpy as np
import pytest

from mvgd_ros.lookahead import Lagged, LookaheadQueue

from ros_harness import T0, pose_stamped, rig, sequence, stamp_of, tiny_checkpoint, wait_for  # noqa: F401,E402  (skips without rclpy, as every ROS test)


def _item(i, arrived=0.0):
    return Lagged(frame=i, header=None, keyframe=True, arrived_s=arrived, stamp=float(i))


def test_each_frame_releases_the_one_lookahead_frames_older():
    q = LookaheadQueue()
    assert [x.frame for x in q.push(_item(0), 0)] == [0]  # no lag: the frame itself
    got = [[x.frame for x in q.push(_item(i), 2)] for i in range(1, 6)]
    assert got == [[], [], [1], [2], [3]] and len(q) == 2
    assert [x.frame for x in q.push(_item(6), 0)] == [4, 5, 6]  # lag lowered at runtime: all due at once, oldest first
    assert q.clear() == 0


def test_a_target_waits_for_lookahead_newer_frames_and_is_not_one():
    q = LookaheadQueue()

    def target(name, stamp, arrived=0.0):
        return Lagged(None, None, False, arrived, target=name, stamp=stamp)

    assert [x.target for x in q.push(target("a", -1.0), 0)] == ["a"]  # no lag: at once
    assert q.push(_item(0), 2) == [] and q.push(_item(1), 2) == []
    assert q.push(target("b", 1.5), 2) == []  # a target is no newer frame: frame 0 still waits
    assert [x.frame for x in q.push(_item(2), 2)] == [0]
    assert [(x.frame, x.target) for x in q.push(_item(3), 2)] == [(1, None), (None, "b")]  # b: frames 2 and 3 came after it
    assert [x.frame for x in q.push(_item(4), 2)] == [2]
    assert q.push(target("late", 3.5), 2) == []  # stamped between frames 3 and 4 but delivered after 4 (another topic) ...
    assert q.push(target("later", 3.7), 2) == []
    assert [(x.frame, x.target) for x in q.push(_item(5), 2)] == [(3, None), (None, "late"), (None, "later")]  # ... so 4 and 5 are newer
    assert q.push(target("d", 6.5), 2) == []  # a request stamped after frame 6 ...
    assert [x.frame for x in q.push(_item(6), 2)] == [4]  # ... reached the queue before it (frame 6 waited for late TF)
    assert [x.frame for x in q.push(_item(7), 2)] == [5]
    assert [(x.frame, x.target) for x in q.push(_item(8), 2)] == [(6, None), (None, "d")]  # d: 7 and 8 are newer, not 6
    q.clear()
    q.push(target("c", 9.0, 1.0), 3)
    for i in (10, 11):
        q.push(_item(i, 1.2), 3)
    assert q.expired(1.6, 0.5).target == "c" and q.expired(1.8, 0.5).frame == 10 and q.expired(1.8, 0.5).frame == 11
    assert len(q) == 0 and q.push(_item(12), 1) == []  # the frame count was kept through expiry


def test_waiting_frames_expire_on_the_wall_clock_and_a_reset_drops_them():
    q = LookaheadQueue()
    for i, t in enumerate([0.0, 0.2, 0.4]):
        q.push(_item(i, t), 3)
    assert q.expired(0.65, 0.5).frame == 0 and q.expired(0.65, 0.5) is None  # the next waited only 0.45
    assert q.expired(0.95, 0.5).frame == 1  # one per call, though frame 2 has waited long enough too
    assert len(q) == 1 and q.clear() == 1 and q.expired(10.0, 0.5) is None


def test_replay_takes_views_from_both_sides_within_the_lag():
    """eval_scoring.node_conditioning with lookahead: every sent frame gets a conditioning set
    (the last ones when the stream ends), with views at most `lag` frames newer, and some newer."""
    from mvgd_core.cameras import look_at
    from mvgd_core.data.types import Frame
    from mvgd_ros.eval_scoring import node_conditioning
    from mvgd_ros.keyframes import KeyframeConfig

    K = np.array([[20.0, 0, 8], [0, 20.0, 8], [0, 0, 1]])
    frames = [Frame(rgb=np.zeros((16, 16, 3), np.uint8), K=K, T_wc=look_at([0.2 * i, 0, 1.0], [0.2 * i + 0.5, 5.0, 1.0]), stamp=100.0 + 0.1 * i)
              for i in range(12)]
    held = {5}
    cfg = KeyframeConfig(pose_distance=0.0, max_views=4)
    live = node_conditioning(frames, held, cfg)
    lag = node_conditioning(frames, held, cfg, lookahead=2)
    sent = [i for i in range(12) if i not in held]
    assert sorted(i for i in lag if i not in held) == sent  # nobody lost at the end
    assert all(max(v) == i for i, v in live.items() if i not in held)  # live: nothing newer than the frame
    newer = [max(v) - i for i, v in lag.items() if i not in held]
    assert max(newer) > 0 and all(d <= 3 for d in newer)  # 2 sent frames later (the held-out 5 is not sent)
    assert all(5 not in v for i, v in lag.items() if i not in held)  # held-out frames are never views
    assert max(live[5]) < 5 < max(lag[5])  # the target: past views only live, views from both sides with the lag


def _lagged_node(rig, checkpoint, frames, **params):
    """The node with fixed-lag depth, every frame a keyframe, TF for `frames` already sent."""
    node = rig.start_node(checkpoint, keyframe_pose_distance=0.0, **params)
    rig.wait_connected("mvgd/depth/image")
    for i, f in enumerate(frames):
        rig.send_tf(f.T_wc, T0 + i * 0.1)
        rig.send_tf(f.T_wc, T0 + i * 0.1 + 0.05)
    return node


@pytest.mark.ros
def test_node_holds_a_frame_until_newer_ones_came_and_releases_the_last_on_its_own(rig, tiny_checkpoint, sequence):
    frames = sequence[:5]
    node = _lagged_node(rig, tiny_checkpoint, frames, lookahead_frames=2, lookahead_max_wait_s=2.0)
    got = lambda: [round(stamp_of(m), 6) for m in rig.got("mvgd/depth/image")]  # noqa: E731
    rig.send_frame(frames[0], T0)
    rig.send_frame(frames[1], T0 + 0.1)
    time.sleep(0.5)
    assert got() == []  # frame 0 waits for two newer frames
    for i in (2, 3, 4):  # one at a time: newest-wins may otherwise (correctly) skip a frame
        rig.send_frame(frames[i], T0 + i * 0.1)
        wait_for(lambda i=i: len(got()) >= i - 1, f"depth of frame {i - 2} once frame {i} came")
    assert got() == [round(T0 + i * 0.1, 6) for i in range(3)]
    wait_for(lambda: len(got()) >= 5, "the last two, released after lookahead_max_wait_s")
    assert got() == [round(T0 + i * 0.1, 6) for i in range(5)]  # each stamped with its own frame, in order
    wait_for(lambda: node.stats.totals["lookahead_expired"] >= 1, "expiry counted")


@pytest.mark.ros
def test_a_reset_drops_the_frames_waiting_for_newer_ones(rig, tiny_checkpoint, sequence):
    node = _lagged_node(rig, tiny_checkpoint, sequence[:2], lookahead_frames=3, lookahead_max_wait_s=1.5)
    for i, f in enumerate(sequence[:2]):
        rig.send_frame(f, T0 + i * 0.1)
    wait_for(lambda: node.stats.totals["images"] >= 2 and len(node.lookahead) == 2, "two frames waiting")
    node.reset("request")  # e.g. a map correction: their poses may be stale
    assert len(node.lookahead) == 0 and node.stats.totals["lookahead_dropped_on_reset"] == 2
    time.sleep(2.0)  # past lookahead_max_wait_s: nothing is released late
    assert rig.got("mvgd/depth/image") == [] and node.stats.totals["lookahead_expired"] == 0


@pytest.mark.ros
def test_expired_targets_are_counted_apart_from_frames(rig, tiny_checkpoint, sequence):
    """/diagnostics compares expired frames with the period's images, so a target request that
    expired must not count as a frame."""
    frames = sequence[:2]
    node = _lagged_node(rig, tiny_checkpoint, frames, lookahead_frames=3, lookahead_max_wait_s=0.5, target_frame_id="goal_optical_frame")
    rig.send_frame(frames[0], T0)
    wait_for(lambda: len(node.lookahead) == 1, "the frame waits")
    rig.target_pub.publish(pose_stamped(frames[1].T_wc, T0 + 0.05, "odom"))
    wait_for(lambda: node.stats.totals["lookahead_expired_targets"] == 1, "the target expired")
    assert node.stats.totals["lookahead_expired"] == 1 and len(node.lookahead) == 0


@pytest.mark.ros
def test_node_renders_a_target_pose_once_lookahead_newer_frames_came(rig, tiny_checkpoint, sequence):
    frames = sequence[:4]
    node = _lagged_node(rig, tiny_checkpoint, frames, lookahead_frames=2, lookahead_max_wait_s=10.0, target_frame_id="goal_optical_frame")
    rig.wait_connected("mvgd/rgb/image")
    targets = lambda: [m for m in rig.got("mvgd/rgb/image") if m.header.frame_id == "goal_optical_frame"]  # noqa: E731
    depths = lambda: [round(stamp_of(m), 6) for m in rig.got("mvgd/depth/image")]  # noqa: E731
    rig.send_frame(frames[0], T0)
    rig.send_frame(frames[1], T0 + 0.1)
    wait_for(lambda: len(node.lookahead) == 2, "two frames waiting")
    rig.target_pub.publish(pose_stamped(frames[2].T_wc, T0 + 0.15, "odom"))  # a view ahead of both
    wait_for(lambda: len(node.lookahead) == 3, "the target waits with them")
    rig.send_frame(frames[2], T0 + 0.2)
    wait_for(lambda: depths() == [round(T0, 6)], "frame 0's depth once frame 2 came")
    time.sleep(0.5)
    assert targets() == []  # one newer frame so far
    rig.send_frame(frames[3], T0 + 0.3)
    wait_for(lambda: len(targets()) == 1, "the target once a second newer frame came")
    assert stamp_of(targets()[0]) == pytest.approx(T0 + 0.15)  # stamped as requested
    wait_for(lambda: depths() == [round(T0 + i * 0.1, 6) for i in range(2)], "frame 1 released with it")
    assert node.stats.totals["lookahead_expired"] == 0


@pytest.mark.ros
def test_a_target_waits_for_frames_stamped_after_it_even_when_their_tf_came_late(rig, tiny_checkpoint, sequence):
    """Frame 3 waits for late TF and reaches the queue after a target stamped later (0.35): the
    target still gets its two newer frames by stamp (4 and 5), not 3 and 4."""
    frames = sequence[:6]
    node = rig.start_node(tiny_checkpoint, keyframe_pose_distance=0.0, lookahead_frames=2, lookahead_max_wait_s=10.0, tf_wait_s=10.0,
                          target_frame_id="goal_optical_frame")
    rig.wait_connected("mvgd/depth/image", "mvgd/rgb/image")
    submitted = []
    submit = node.worker.submit
    node.worker.submit = lambda lane, job: (submitted.append((lane, [f.stamp for f in job.cond])), submit(lane, job))[1]
    depths = lambda: [round(stamp_of(m), 6) for m in rig.got("mvgd/depth/image")]  # noqa: E731

    def send(i, tf=True):
        if tf:
            rig.send_tf(frames[i].T_wc, T0 + i * 0.1)
            rig.send_tf(frames[i].T_wc, T0 + i * 0.1 + 0.05)
        rig.send_frame(frames[i], T0 + i * 0.1)

    for i in range(3):
        send(i)
    wait_for(lambda: depths() == [round(T0, 6)], "frame 0's depth once frame 2 came")
    send(3, tf=False)  # its pose is late
    wait_for(lambda: len(node.pending) == 1, "frame 3 waiting for TF")
    rig.target_pub.publish(pose_stamped(frames[3].T_wc, T0 + 0.35, "odom"))
    wait_for(lambda: len(node.lookahead) == 3, "the target queued before frame 3 resolved")
    rig.send_tf(frames[3].T_wc, T0 + 0.3)
    rig.send_tf(frames[3].T_wc, T0 + 0.35)
    wait_for(lambda: len(depths()) == 2, "frame 1's depth once frame 3 came")
    send(4)
    wait_for(lambda: len(depths()) == 3, "frame 2's depth")
    assert not [c for lane, c in submitted if lane == "target"]  # frame 3 is older than the target: one newer frame so far
    send(5)
    wait_for(lambda: any(lane == "target" for lane, _ in submitted), "the target once frame 5 came")
    cond = next(c for lane, c in submitted if lane == "target")
    assert sorted(s for s in cond if s > T0 + 0.35) == pytest.approx([T0 + 0.4, T0 + 0.5])
