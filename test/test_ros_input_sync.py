"""Input sync policy without DDS: newest-first resolution, time-bounded queue, camera_info slop, rate limit."""
from types import SimpleNamespace

import pytest

from mvgd_ros.input_sync import NS, InputSync, Rejected, SyncConfig, Waiting, precheck_image

MS = 1_000_000
T0 = 1_700_000_000 * NS  # a real-world epoch stamp: ns keep it exact


def cfg(**kw):
    base = dict(tf_wait_ns=500 * MS, camera_info_slop_ns=10 * MS, min_period_ns=0, max_pending=100)
    base.update(kw)
    return SyncConfig(**base)


def feed(sync, n, rate_hz=30, now=0):
    period = NS // rate_hz
    for i in range(n):
        assert sync.add_image(T0 + i * period, "cam", f"msg{i}", now) == []
    return period


def test_newest_resolvable_wins_and_older_ones_are_superseded_without_resolving():
    sync, calls = InputSync(cfg()), []
    feed(sync, 5)

    def resolve(item):
        calls.append(item.msg)
        return "ok"

    item, result, dropped, superseded = sync.take(0, resolve)
    assert item.msg == "msg4" and result == "ok" and superseded == 4 and not dropped
    assert calls == ["msg4"] and len(sync) == 0  # only the frame used was looked at (and will be decoded)


def test_tf_lag_newest_posed_frame_is_taken_and_newer_ones_keep_waiting():
    sync = InputSync(cfg())
    period = feed(sync, 10)
    tf_until = T0 + 6 * period  # TF lags: poses exist up to frame 6

    def resolve(item):
        if item.stamp_ns > tf_until:
            raise Waiting("tf_timeout", "extrapolation into the future")
        return item.stamp_ns

    item, _, dropped, superseded = sync.take(0, resolve)
    assert item.msg == "msg6" and superseded == 6 and not dropped and len(sync) == 3
    tf_until = T0 + 9 * period
    item, *_ = sync.take(1, resolve)
    assert item.msg == "msg9" and len(sync) == 0


def test_a_frame_that_never_resolves_never_delays_others_and_expires_on_its_own_clock():
    sync = InputSync(cfg())
    resolve = lambda item: (_ for _ in ()).throw(Waiting("tf_timeout", "unknown frame")) if item.frame_id == "ghost" else "ok"  # noqa: E731
    sync.add_image(T0, "cam", "good0", now_ns=0)
    sync.add_image(T0 + 33 * MS, "ghost", "bad", now_ns=0)
    item, *_ = sync.take(0, resolve)
    assert item.msg == "good0" and len(sync) == 1  # taken at once although a newer one is stuck
    _, _, dropped, _ = sync.take(499 * MS, resolve)
    assert not dropped
    _, _, dropped, _ = sync.take(500 * MS, resolve)
    assert [(d.item.msg, d.reason) for d in dropped] == [("bad", "tf_timeout")] and len(sync) == 0
    sync.add_image(T0 + 66 * MS, "ghost", "bad2", now_ns=600 * MS)
    sync.add_image(T0 + 99 * MS, "cam", "good1", now_ns=600 * MS)
    item, _, dropped, superseded = sync.take(600 * MS, resolve)
    assert item.msg == "good1" and superseded == 1 and not dropped  # a newer good frame supersedes it


def test_rejected_frames_go_at_once_and_the_next_older_is_used():
    sync = InputSync(cfg())
    feed(sync, 3)
    resolve = lambda item: (_ for _ in ()).throw(Rejected("size_mismatch", "32x32 vs 20x20")) if item.msg == "msg2" else "ok"  # noqa: E731
    item, _, dropped, superseded = sync.take(0, resolve)
    assert item.msg == "msg1" and [d.reason for d in dropped] == ["size_mismatch"] and superseded == 1


def test_queue_is_bounded_in_time_not_in_frames():
    sync = InputSync(cfg())  # 0.5 s of 60 Hz = 30 frames: all kept while TF has none of them
    feed(sync, 30, rate_hz=60)
    waiting = lambda item: (_ for _ in ()).throw(Waiting("tf_timeout", "not yet"))  # noqa: E731
    assert sync.take(400 * MS, waiting)[2] == [] and len(sync) == 30
    assert len(sync.take(500 * MS, waiting)[2]) == 30 and len(sync) == 0
    guard = InputSync(cfg(max_pending=2))  # the count cap only guards memory
    guard.add_image(T0, "cam", "a", 0)
    guard.add_image(T0 + 1, "cam", "b", 0)
    assert [(d.item.msg, d.reason) for d in guard.add_image(T0 + 2, "cam", "c", 0)] == [("a", "pending_overflow")]


def test_zero_stamp_rate_limit_and_out_of_order():
    sync = InputSync(cfg(min_period_ns=100 * MS))
    assert [d.reason for d in sync.add_image(0, "cam", "z", 0)] == ["zero_stamp"]
    assert sync.add_image(T0, "cam", "a", 0) == []
    assert [d.reason for d in sync.add_image(T0 + 50 * MS, "cam", "b", 0)] == ["rate_limited"]
    assert sync.add_image(T0 + 100 * MS, "cam", "c", 0) == []
    assert sync.take(0, lambda item: "ok")[0].msg == "c"
    sync.add_image(T0 + 40 * MS, "cam", "late", 0)  # arrives after a newer frame was used
    assert [d.reason for d in sync.take(0, lambda item: "ok")[2]] == ["out_of_order"]
    sync.add_image(T0 - 60 * NS, "cam", "loop", 0)  # a bag restarted: a minute back is a new timeline
    assert sync.take(0, lambda item: "ok")[0].msg == "loop"


def test_camera_info_nearest_stamp_within_the_slop():
    sync = InputSync(cfg())
    with pytest.raises(Waiting, match="no camera_info received"):
        sync.match_info(T0, 0)
    sync.add_info(T0 + 1 * MS, "info+1ms")  # a driver stamping camera_info 1 ms after the image
    sync.add_info(T0 + 34 * MS, "next")
    assert sync.match_info(T0, 0) == "info+1ms"
    assert sync.match_info(T0 + 33 * MS, 0) == "next"
    with pytest.raises(Waiting, match="within 0.010 s"):
        sync.match_info(T0 + 60 * MS, 0)


def test_camera_info_match_is_final_only_when_no_closer_one_can_come():
    sync = InputSync(cfg())
    sync.add_info(T0 - 5 * MS, "before")
    with pytest.raises(Waiting):  # the image's own camera_info may still arrive, 1 ms after it
        sync.match_info(T0, waited_ns=0)
    assert sync.match_info(T0, waited_ns=10 * MS) == "before"  # waited one slop: take what there is
    sync.add_info(T0 + 1 * MS, "own")
    assert sync.match_info(T0, waited_ns=0) == "own"


def test_config_from_seconds_and_validation():
    c = SyncConfig.from_seconds(0.3, 0.02, 15.0, 50)
    assert (c.tf_wait_ns, c.camera_info_slop_ns, c.min_period_ns, c.max_pending) == (300 * MS, 20 * MS, 66_666_667, 50)
    assert SyncConfig.from_seconds(0.3, 0.02, 0.0, 50).min_period_ns == 0
    with pytest.raises(ValueError):
        SyncConfig(tf_wait_ns=-1)


def test_precheck_image_without_decoding():
    ok = SimpleNamespace(encoding="rgb8", height=2, width=2, step=6, data=bytes(12))
    assert precheck_image(ok, ("rgb8",)) is None
    assert "unsupported" in precheck_image(SimpleNamespace(**{**vars(ok), "encoding": "yuv422"}), ("rgb8",))
    assert "bytes" in precheck_image(SimpleNamespace(**{**vars(ok), "data": bytes(5)}), ("rgb8",))
    assert precheck_image(SimpleNamespace(format="jpeg", data=b"x"), ("rgb8",)) is None  # CompressedImage: checked when decoded
