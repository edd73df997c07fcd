"""Node statistics: counters, rates, latency; rendered as diagnostic_msgs or JSON.

Published as diagnostic_msgs/DiagnosticArray on /diagnostics (the ROS convention, read by
rqt_robot_monitor and diagnostic_aggregator) when diagnostic_msgs is installed - it is pinned
in requirements.txt and declared in package.xml - otherwise as std_msgs/String holding the
same key/values as JSON on /mvgd/diagnostics. Thread-safe: the executor and the inference
worker both record.
"""
from __future__ import annotations

import json
import threading
import time
from collections import Counter

try:
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
except ImportError:
    DiagnosticArray = None


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
        self._t0 = time.monotonic()
        self.conditioning_views = 0
        self.keyframes = 0

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.totals[key] += n
            self._period[key] += n

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
            self._latency.append(latency_s)
            self._infer.append(infer_s)

    def snapshot(self, extra: dict | None = None) -> dict[str, str]:
        """Key/values for this period (rates per second over it), then start a new period."""
        with self._lock:
            now = time.monotonic()
            dt = max(now - self._t0, 1e-9)
            out = {
                "image_rate_hz": f"{self._period['images'] / dt:.2f}",
                "depth_rate_hz": f"{self._period['depth_published'] / dt:.2f}",
                "rgb_rate_hz": f"{self._period['rgb_published'] / dt:.2f}",
                "latency_mean_s": _mean(self._latency),
                "latency_max_s": f"{max(self._latency):.3f}" if self._latency else "n/a",
                "inference_mean_s": _mean(self._infer),
                "dropped_this_period": str(self._period["dropped"]),
                "keyframes": str(self.keyframes),
                "conditioning_views": str(self.conditioning_views),
            }
            out.update({f"total_{k}": str(v) for k, v in sorted(self.totals.items())})
            out.update({f"drop_{k}": str(v) for k, v in sorted(self.drops.items())})
            out.update({f"reset_{k}": str(v) for k, v in sorted(self.resets.items())})
            dropped, failed = self._period["dropped"], self._period["inference_failed"]
            self._period.clear()
            self._latency.clear()
            self._infer.clear()
            self._t0 = now
        out.update(extra or {})
        if failed:
            level, message = "error", f"{failed} inference failures"
        elif dropped:
            level, message = "warn", f"{dropped} frames dropped"
        else:
            level, message = "ok", "running"
        out["_level"], out["_message"] = level, message
        return out


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
