"""Node statistics: counters, rates, latency; rendered as diagnostic_msgs or JSON.

Published as diagnostic_msgs/DiagnosticArray on /diagnostics (the ROS convention, read by
rqt_robot_monitor and diagnostic_aggregator) when diagnostic_msgs is installed - it is pinned
in requirements.txt and declared in package.xml - otherwise as std_msgs/String holding the
same key/values as JSON on /mvgd/diagnostics. Thread-safe: the executor and the inference
worker both record.

Levels follow diagnostic_updater's tasks (`health_checks`): a FrequencyStatus-style check of
the depth rate against [min, max] * (1 -/+ tolerance), a stale-input check (no image for
input_timeout_s: WARN), a stuck-worker check (one inference running for worker_stuck_s: WARN),
ERROR after FAILURES_ERROR inference failures in a row (one failure: WARN), WARN for frames
dropped in the period (malformed /tf rejected by the TF layer included), WARN when the live
depth of the period was unobservable (mean observable share below UNOBSERVABLE_WARN: no
parallax, a monocular guess), WARN when half of a period's frames left the fixed-lag queue by
lookahead_max_wait_s instead of by newer frames (too short for the camera's rate), WARN when a
third or more of the camera's frames never arrived (`mvgd_ros.input_gaps`: e.g. large raw images
over Fast DDS's default shared memory). Like a
CompositeDiagnosticTask, the status takes the worst level and that level's messages.
"""
from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass

from mvgd_core.observability import WEAK_MIN

try:
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
except ImportError:
    DiagnosticArray = None


LEVELS = ("ok", "warn", "error")
FAILURES_ERROR = 3  # inference failures in a row that make the status ERROR
RESCALE_WINDOW = 30  # recent live depth maps whose |refine_rescale| depth_refine_rescale is the median of
RESCALE_MIN = 10  # ... of which at least this many must have a value
UNOBSERVABLE_WARN = WEAK_MIN  # mean observable share of a period's live depth below this: WARN (the evaluation's "none" regime)


@dataclass(frozen=True)
class HealthConfig:
    """Thresholds of `health_checks` (node parameters of the same names); 0 disables a check."""

    expected_rate_hz: tuple[float, float] = (0.0, 0.0)  # [min, max] depth maps per second
    rate_tolerance: float = 0.1
    input_timeout_s: float = 3.0
    worker_stuck_s: float = 30.0
    clock_skew_warn_s: float = 30.0  # median image stamp -> publish beyond this (or 1 s ahead): stamps not in the node's clock


def health_checks(cfg: HealthConfig, *, depth_rate_hz: float, depth_wanted: bool, since_image_s: float | None, uptime_s: float,
                  worker_busy_s: float | None, failure_streak: int, dropped: int, tf_rejected: int = 0,
                  observable_share: float | None = None, images: int = 0, lookahead_expired: int = 0,
                  latency_s: float | None = None, input_loss: str | None = None) -> list[tuple[str, str]]:
    """[(level, message)] of every check that is not OK (diagnostic_updater semantics)."""
    out = []
    lo, hi = cfg.expected_rate_hz
    if (lo > 0 or hi > 0) and depth_wanted:  # FrequencyStatus: only while someone wants depth
        if depth_rate_hz == 0:
            out.append(("error", "no depth published this period"))
        elif depth_rate_hz < lo * (1 - cfg.rate_tolerance):
            out.append(("warn", f"depth rate too low ({depth_rate_hz:.2f} Hz < {lo:g} Hz)"))
        elif hi > 0 and depth_rate_hz > hi * (1 + cfg.rate_tolerance):
            out.append(("warn", f"depth rate too high ({depth_rate_hz:.2f} Hz > {hi:g} Hz)"))
    if cfg.input_timeout_s > 0:
        idle = uptime_s if since_image_s is None else since_image_s
        if idle >= cfg.input_timeout_s:
            out.append(("warn", f"no image for {idle:.1f} s" if since_image_s is not None else f"no image received yet ({idle:.1f} s)"))
    if cfg.worker_stuck_s > 0 and worker_busy_s is not None and worker_busy_s >= cfg.worker_stuck_s:
        out.append(("warn", f"inference running for {worker_busy_s:.1f} s (stuck?)"))
    if failure_streak >= FAILURES_ERROR:
        out.append(("error", f"{failure_streak} inference failures in a row"))
    elif failure_streak:
        out.append(("warn", f"{failure_streak} inference failure(s)"))
    if dropped:
        out.append(("warn", f"{dropped} frames dropped"))
    if input_loss:  # frames lost before the node (mvgd_ros.input_gaps): the transport, not the node
        out.append(("warn", input_loss))
    if tf_rejected:
        out.append(("warn", f"{tf_rejected} malformed transforms rejected"))
    if images >= 3 and 2 * lookahead_expired >= images:  # a stream's end expires a frame or two, not half of them
        out.append(("warn", f"{lookahead_expired} of {images} frames waited lookahead_max_wait_s for newer frames: raise it above "
                            "lookahead_frames / the camera rate"))
    if cfg.clock_skew_warn_s > 0 and latency_s is not None and (latency_s > cfg.clock_skew_warn_s or latency_s < -1.0):  # a bag on wall time
        out.append(("warn", f"image stamps are {abs(latency_s):.0f} s {'behind' if latency_s > 0 else 'ahead of'} this node's clock: "
                            "a bag played without --clock and use_sim_time:=true, or unsynchronised clocks (latency figures are meaningless)"))
    if observable_share is not None and observable_share < UNOBSERVABLE_WARN:
        out.append(("warn", f"depth not observable (share {observable_share:.2f}): the cameras have no parallax (not moving, or "
                            "turning in place), depth is a monocular guess"))
    return out


def summarize(checks: list[tuple[str, str]]) -> tuple[str, str]:
    """(worst level, its messages joined) or ('ok', 'running')."""
    if not checks:
        return "ok", "running"
    worst = max(LEVELS.index(level) for level, _ in checks)
    return LEVELS[worst], "; ".join(m for level, m in checks if LEVELS.index(level) == worst)


class NodeStats:
    """Counters since start plus per-period rates and latencies (reset by `snapshot`)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.totals: Counter = Counter()  # images, depth_published, rgb_published, skipped_no_subscribers, ...
        self.drops: Counter = Counter()  # by reason
        self.resets: Counter = Counter()  # by reason
        self._period: Counter = Counter()
        self._latency: list[float] = []  # image stamp -> publish (s), this period
        self._infer: list[float] = []  # model wall time per prediction (s), this period
        self._refined: list[float] = []  # share of live depth pixels the photometric refinement replaced, this period
        self._observable: list[float] = []  # Prediction.observable_share of live depth maps, this period
        self._fused: list[float] = []  # Prediction.fused_share of virtual-view depth, this period
        self._rescale: deque = deque(maxlen=RESCALE_WINDOW)  # |refine_rescale| of recent live depth maps (None: no value), across periods
        self._t0 = time.monotonic()
        self.conditioning_views = 0
        self.keyframes = 0
        self.last: dict[str, float] = {}  # counter -> monotonic time it last moved
        self.failure_streak = 0  # inference failures since the last success
        self.started = time.monotonic()

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.totals[key] += n
            self._period[key] += n
            self.last[key] = time.monotonic()
            if key == "inference_failed":
                self.failure_streak += n

    def since(self, key: str) -> float | None:
        """Seconds since counter `key` last moved, or None if never."""
        with self._lock:
            t = self.last.get(key)
        return None if t is None else time.monotonic() - t

    def drop(self, reason: str) -> None:
        with self._lock:
            self.drops[reason] += 1
            self._period["dropped"] += 1

    def reset(self, reason: str) -> None:
        with self._lock:
            self.resets[reason] += 1

    def published(self, kind: str, latency_s: float, infer_s: float) -> None:
        with self._lock:
            self.totals[kind] += 1
            self._period[kind] += 1
            self.last[kind] = time.monotonic()
            self.failure_streak = 0
            self._latency.append(latency_s)
            self._infer.append(infer_s)

    def refined(self, share: float, rescale: float | None = None) -> None:
        """One live depth map's share of pixels the photometric refinement replaced, and how far it
        moved the map as a whole (log; `mvgd_core.refine.frame_rescale`, None: too few pixels)."""
        with self._lock:
            self._refined.append(share)
            self._rescale.append(None if rescale is None else abs(rescale))

    def fused(self, share: float | None) -> None:
        """One virtual view's share of depth pixels fused with keyframes' live depth (None: none was fused)."""
        if share is not None:
            with self._lock:
                self._fused.append(share)

    def observed(self, share: float | None) -> None:
        """One live depth map's observable share (None: the model gave none)."""
        if share is not None:
            with self._lock:
                self._observable.append(share)

    def _rescale_median(self) -> float | None:
        """Median |refine_rescale| over the recent window, None with fewer than RESCALE_MIN values."""
        v = [x for x in self._rescale if x is not None]
        return _upper_median(v) if len(v) >= RESCALE_MIN else None

    def snapshot(self, extra: dict | None = None, health: tuple[HealthConfig, dict] | None = None) -> dict[str, str]:
        """Key/values for this period (rates per second over it), then start a new period.

        `_level` / `_message` come from `health_checks(cfg, **facts)` with health = (cfg, facts);
        this period's depth rate, failure streak and drops are filled in here."""
        with self._lock:
            now = time.monotonic()
            dt = max(now - self._t0, 1e-9)
            rescale = self._rescale_median()
            out = {
                "image_rate_hz": f"{self._period['images'] / dt:.2f}",
                "depth_rate_hz": f"{self._period['depth_published'] / dt:.2f}",
                "rgb_rate_hz": f"{self._period['rgb_published'] / dt:.2f}",
                "latency_mean_s": _mean(self._latency),
                "latency_max_s": f"{max(self._latency):.3f}" if self._latency else "n/a",
                "inference_mean_s": _mean(self._infer),
                "depth_refined_share": _mean(self._refined),
                "depth_refine_rescale": "n/a" if rescale is None else f"{rescale:.3f}",
                "depth_observable_share": _mean(self._observable),
                "virtual_depth_fused_share": _mean(self._fused),
                "dropped_this_period": str(self._period["dropped"]),
                "keyframes": str(self.keyframes),
                "conditioning_views": str(self.conditioning_views),
            }
            out.update({f"total_{k}": str(v) for k, v in sorted(self.totals.items())})
            out.update({f"drop_{k}": str(v) for k, v in sorted(self.drops.items())})
            out.update({f"reset_{k}": str(v) for k, v in sorted(self.resets.items())})
            facts = {"depth_rate_hz": self._period["depth_published"] / dt, "failure_streak": self.failure_streak,
                     "images": self._period["images"], "lookahead_expired": self._period["lookahead_expired"],
                     "dropped": self._period["dropped"], "uptime_s": now - self.started,
                     "observable_share": sum(self._observable) / len(self._observable) if self._observable else None,
                     "latency_s": _upper_median(self._latency) if self._latency else None}
            out["inference_failure_streak"] = str(self.failure_streak)
            self._period.clear()
            self._latency.clear()
            self._infer.clear()
            self._refined.clear()
            self._observable.clear()
            self._fused.clear()
            self._t0 = now
        out.update(extra or {})
        cfg, given = health if health is not None else (HealthConfig(input_timeout_s=0.0, worker_stuck_s=0.0), {})
        facts.update({"depth_wanted": False, "since_image_s": None, "worker_busy_s": None})
        facts.update(given)
        out["_level"], out["_message"] = summarize(health_checks(cfg, **facts))
        return out


def _upper_median(v: list[float]) -> float:
    """The middle value of a non-empty list (the upper one of the two for an even count)."""
    return sorted(v)[len(v) // 2]


def _mean(v: list[float]) -> str:
    return f"{sum(v) / len(v):.3f}" if v else "n/a"


def to_message(kv: dict[str, str], name: str, hardware_id: str, stamp):
    """DiagnosticArray with one status when diagnostic_msgs exists, else std_msgs/String (JSON)."""
    level, message = kv["_level"], kv["_message"]
    values = {k: v for k, v in kv.items() if not k.startswith("_")}
    if DiagnosticArray is None:
        from std_msgs.msg import String

        return String(data=json.dumps({"name": name, "level": level, "message": message, "values": values}))
    status = DiagnosticStatus(
        level={"ok": DiagnosticStatus.OK, "warn": DiagnosticStatus.WARN, "error": DiagnosticStatus.ERROR}[level],
        name=name, message=message, hardware_id=hardware_id,
        values=[KeyValue(key=k, value=v) for k, v in values.items()],
    )
    arr = DiagnosticArray(status=[status])
    arr.header.stamp = stamp
    return arr


def message_type():
    """(class, topic) the node publishes diagnostics with."""
    if DiagnosticArray is not None:
        return DiagnosticArray, "/diagnostics"
    from std_msgs.msg import String

    return String, "/mvgd/diagnostics"
