"""Inference off the executor: one consumer thread fed through newest-wins slots.

Callbacks `submit(lane, request)` and return at once. Each lane (e.g. "live" depth, "target"
views) holds at most one waiting request: a newer one replaces it and the replaced one is
counted as stale - a robot wants the depth of the latest image, not a backlog (the
image_pipeline camera_calibration pattern). Lanes are served round-robin so a busy camera
never starves on-demand targets. Exceptions in `process` are counted and handed to
`on_error`; the thread keeps running.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any, Callable


class InferenceWorker:
    def __init__(self, process: Callable[[str, Any], None], on_error: Callable[[str, BaseException], None] | None = None):
        self._process = process
        self._on_error = on_error
        self._slots: dict[str, Any] = {}  # lane -> waiting request (insertion order = service order)
        self._calls: list[Callable] = []  # `call`s waiting: run before any request
        self._cond = threading.Condition()
        self._stop = False
        self._busy = False
        self._busy_since: float | None = None  # monotonic start of the running request
        self.counts: Counter = Counter()  # submitted, stale, done, failed
        self._thread = threading.Thread(target=self._run, name="mvgd-inference", daemon=True)
        self._thread.start()

    def submit(self, lane: str, request: Any) -> bool:
        """Queue `request`; returns False when it replaced an older waiting request of the lane."""
        with self._cond:
            replaced = lane in self._slots
            self._slots.pop(lane, None)  # re-insert at the back: round-robin between lanes
            self._slots[lane] = request
            self.counts["submitted"] += 1
            if replaced:
                self.counts["stale"] += 1
            self._cond.notify()
        return not replaced

    def call(self, fn: Callable[[], Any], timeout: float | None = None) -> Any:
        """Run fn() on the inference thread, ahead of queued requests, and return its result (its
        exception is raised here). The node loads and warms the model this way so that every torch
        call runs on one thread: OpenMP keeps a thread pool per calling thread, and once one thread
        had used its pool, the model ran ~2x slower from another one on 2 cores (docs/BENCHMARKS.md)."""
        call = _Call(fn)
        with self._cond:
            if self._stop:
                raise RuntimeError("inference thread stopped")
            self._calls.append(call)
            self._cond.notify()
        if not call.done.wait(timeout):
            raise TimeoutError(f"inference thread did not run the call within {timeout} s")
        if call.error is not None:
            raise call.error
        return call.value

    def busy_for(self) -> float | None:
        """Seconds the running request has taken so far, or None when idle (stuck-worker diagnostics)."""
        with self._cond:
            return None if self._busy_since is None else time.monotonic() - self._busy_since

    def pending(self) -> int:
        with self._cond:
            return len(self._slots)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is waiting or running (tests and shutdown); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._slots and not self._busy, timeout)

    def stop(self, timeout: float = 3.0) -> bool:
        """Stop after the running request; waiting ones are discarded. False when the running one
        outlasts `timeout` (it cannot be interrupted; 3 s: ros2 launch escalates Ctrl-C to SIGTERM after 5)."""
        with self._cond:
            self._stop = True
            self._slots.clear()
            self._cond.notify_all()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stop or self._slots or self._calls)
                if self._stop:
                    for c in self._calls:
                        c.fail(RuntimeError("inference thread stopped"))
                    return
                call = self._calls.pop(0) if self._calls else None
                if call is None:
                    lane = next(iter(self._slots))
                    request = self._slots.pop(lane)
                    self._busy = True
                    self._busy_since = time.monotonic()
            if call is not None:
                call.run()
                continue
            try:
                self._process(lane, request)
                self.counts["done"] += 1
            except Exception as exc:  # keep serving: one bad request must not kill inference
                self.counts["failed"] += 1
                if self._on_error is not None:
                    self._on_error(lane, exc)
            finally:
                with self._cond:
                    self._busy = False
                    self._busy_since = None
                    self._cond.notify_all()


class _Call:
    """A function run once on the inference thread, its result or exception, and a done event."""

    def __init__(self, fn: Callable[[], Any]):
        self.fn, self.value, self.error, self.done = fn, None, None, threading.Event()

    def run(self) -> None:
        try:
            self.value = self.fn()
        except BaseException as exc:  # handed to the caller, not counted as an inference failure
            self.error = exc
        self.done.set()

    def fail(self, exc: BaseException) -> None:
        self.error = exc
        self.done.set()
