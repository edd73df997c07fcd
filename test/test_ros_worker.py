"""Inference worker: newest wins per lane, stale requests counted, errors survive (fake process)."""
import threading

from mvgd_ros.worker import InferenceWorker


class Gate:
    """A process function that records requests and blocks until released."""

    def __init__(self):
        self.seen = []
        self.started = threading.Semaphore(0)
        self.release = threading.Event()

    def __call__(self, lane, request):
        self.seen.append((lane, request))
        self.started.release()
        self.release.wait(10)
        if request == "boom":
            raise RuntimeError("bad request")


def test_newest_request_wins_and_stale_ones_are_counted():
    gate = Gate()
    w = InferenceWorker(gate)
    try:
        assert w.submit("live", 0)
        assert gate.started.acquire(timeout=10)  # request 0 is running, the slot is empty again
        assert w.submit("live", 1)
        assert not w.submit("live", 2)  # replaces 1
        assert not w.submit("live", 3)  # replaces 2
        assert w.pending() == 1
        gate.release.set()
        assert w.wait_idle(10)
        assert gate.seen == [("live", 0), ("live", 3)]
        assert w.counts["stale"] == 2 and w.counts["done"] == 2 and w.counts["submitted"] == 4
    finally:
        w.stop()


def test_lanes_do_not_replace_each_other_and_take_turns():
    gate = Gate()
    w = InferenceWorker(gate)
    try:
        w.submit("live", "a")
        assert gate.started.acquire(timeout=10)
        w.submit("live", "b")
        w.submit("target", "t")
        w.submit("live", "c")  # replaces b and moves the live lane behind target
        gate.release.set()
        assert w.wait_idle(10)
        assert gate.seen == [("live", "a"), ("target", "t"), ("live", "c")]
    finally:
        w.stop()


def test_a_failing_request_is_reported_and_the_worker_goes_on():
    gate = Gate()
    gate.release.set()
    errors = []
    w = InferenceWorker(gate, on_error=lambda lane, exc: errors.append((lane, str(exc))))
    try:
        w.submit("live", "boom")
        assert w.wait_idle(10)
        w.submit("live", "fine")
        assert w.wait_idle(10)
        assert errors == [("live", "bad request")]
        assert w.counts["failed"] == 1 and w.counts["done"] == 1
    finally:
        w.stop()


def test_stop_discards_waiting_requests_and_joins():
    gate = Gate()
    w = InferenceWorker(gate)
    w.submit("live", 1)
    assert gate.started.acquire(timeout=10)
    w.submit("live", 2)
    stopper = threading.Thread(target=w.stop)
    stopper.start()
    with w._cond:  # stop() clears the waiting slot before it joins
        assert w._cond.wait_for(lambda: w._stop and not w._slots, 10)
    gate.release.set()
    stopper.join(10)
    assert not w._thread.is_alive()
    assert gate.seen == [("live", 1)]


def test_busy_for_reports_a_running_request_for_stuck_worker_diagnostics():
    gate = Gate()
    w = InferenceWorker(gate)
    try:
        assert w.busy_for() is None
        w.submit("live", 1)
        assert gate.started.acquire(timeout=10)
        first = w.busy_for()
        assert first is not None and first >= 0.0
        assert w.busy_for() >= first  # grows while the request runs
        gate.release.set()
        assert w.wait_idle(10)
        assert w.busy_for() is None
    finally:
        w.stop()


def test_call_runs_on_the_inference_thread_before_waiting_requests():
    """The node loads and warms the model through `call`, so every torch call shares one thread
    (OpenMP pools are per thread). Results and exceptions come back to the caller; queued
    requests wait; a stopped worker refuses calls instead of hanging."""
    import pytest

    gate = Gate()
    w = InferenceWorker(gate)
    try:
        assert w.call(lambda: threading.current_thread().name) == "mvgd-inference"
        assert w.submit("live", 0)
        assert gate.started.acquire(timeout=10)
        w.submit("live", 1)  # waits behind the running request
        order = []
        t = threading.Thread(target=lambda: order.append(w.call(lambda: ("call", len(gate.seen)))))
        t.start()
        gate.release.set()
        t.join(10)
        assert order == [("call", 1)]  # ran before the waiting request 1
        assert w.wait_idle(10) and gate.seen == [("live", 0), ("live", 1)]
        with pytest.raises(ZeroDivisionError):
            w.call(lambda: 1 / 0)
        assert w.counts["failed"] == 0  # a failed call is the caller's error, not an inference failure
    finally:
        w.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        w.call(lambda: None, timeout=5)
