"""Input synchronisation for the node: images + camera_info + TF, as a policy object (no ROS here).

Shaped like ros2/message_filters (ApproximateTime with a slop) followed by tf2_ros'
MessageFilter (hold a message until its transform exists, drop it after a timeout), for a
consumer that only ever wants the newest frame:

- Images wait in a pending queue as RAW messages (nothing decoded). The queue is bounded in
  time: an image is dropped when it waited `tf_wait_ns` (wall clock) without resolving; a
  count cap (`max_pending`) only guards memory and is sized to hold well over tf_wait_s of
  frames at camera rates. Within the time bound nothing is dropped for lack of room.
- `take` resolves NEWEST FIRST and returns the newest image whose camera_info and pose are
  available; every older image is then superseded (never decoded: the inference worker would
  discard it anyway). An image that cannot resolve (unknown frame, TF that never comes) is
  passed over, so it never delays the images behind it, and expires on its own clock.
- camera_info is matched by nearest stamp within `camera_info_slop_ns` (ApproximateTime
  semantics: drivers that stamp image and camera_info separately differ by a few ms). A
  match is final once a camera_info at or after the image stamp exists (they arrive in stamp
  order, so none could come closer), or after the image waited one slop of wall time.
  The node calls `take` again whenever a camera_info or a /tf message arrives (the last
  arrival completes the set, as in message_filters and tf2_ros' MessageFilter), not only on
  its timer. Newest first keeps that cheap: one successful resolution per call at most.
- `max_input_rate_hz` drops images whose stamp is closer than 1/rate to the last admitted one
  before they are queued (skipped, not an error).
- Stamps are integer nanoseconds everywhere (header sec * 1e9 + nanosec, exact).

Thread model: the node calls everything from its executor (one callback group); no locks.
"""
from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

NS = 1_000_000_000
INFO_HISTORY = 64  # camera_infos kept for matching (> 1 s at 60 Hz)
RESTART_NS = NS  # an image stamp this far behind the last taken one means the source restarted (bag loop)


@dataclass(frozen=True)
class SyncConfig:
    tf_wait_ns: int = NS // 2  # an image waits at most this long (wall clock) for camera_info and TF
    camera_info_slop_ns: int = 10_000_000  # |image stamp - camera_info stamp| allowed for a match
    min_period_ns: int = 0  # 1 / max_input_rate_hz; 0 admits every image
    max_pending: int = 100  # memory guard on waiting images

    def __post_init__(self):
        if self.tf_wait_ns < 0 or self.camera_info_slop_ns < 0 or self.min_period_ns < 0:
            raise ValueError(f"SyncConfig: times must be >= 0, got {self}")
        if self.max_pending < 1:
            raise ValueError(f"SyncConfig: max_pending must be >= 1, got {self.max_pending}")

    @staticmethod
    def from_seconds(tf_wait_s: float, camera_info_slop_s: float, max_input_rate_hz: float, max_pending: int) -> "SyncConfig":
        period = int(round(NS / max_input_rate_hz)) if max_input_rate_hz > 0 else 0
        return SyncConfig(int(round(tf_wait_s * NS)), int(round(camera_info_slop_s * NS)), period, int(max_pending))


@dataclass
class Pending:
    """A raw image waiting for its camera_info and pose. arrived_ns: monotonic clock."""

    stamp_ns: int
    frame_id: str
    msg: Any
    arrived_ns: int


class Waiting(LookupError):
    """Not resolvable yet; `reason` is the drop counter used if it expires (e.g. 'tf_timeout')."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class Rejected(ValueError):
    """Can never resolve (bad data): dropped at once under `reason`."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class Dropped:
    item: Pending
    reason: str
    message: str


class InputSync:
    def __init__(self, cfg: SyncConfig = SyncConfig()):
        self.cfg = cfg
        self._queue: deque[Pending] = deque()  # arrival order (oldest left)
        self._info_stamps: list[int] = []  # sorted
        self._info_values: list[Any] = []
        self._last_admitted_ns: int | None = None
        self._last_taken_ns: int | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def reset(self) -> None:
        self._queue.clear()
        self._last_admitted_ns = self._last_taken_ns = None

    # ------------------------------------------------------------------ camera_info

    def add_info(self, stamp_ns: int, value: Any) -> None:
        """Store a validated camera_info (any payload) by stamp; keeps the newest INFO_HISTORY."""
        i = bisect.bisect_left(self._info_stamps, stamp_ns)
        if i < len(self._info_stamps) and self._info_stamps[i] == stamp_ns:
            self._info_values[i] = value
        else:
            if self._info_stamps and stamp_ns < self._info_stamps[-1] - RESTART_NS:  # time went back: old infos are another run
                self._info_stamps.clear()
                self._info_values.clear()
                i = 0
            self._info_stamps.insert(i, stamp_ns)
            self._info_values.insert(i, value)
        if len(self._info_stamps) > INFO_HISTORY:
            del self._info_stamps[0], self._info_values[0]

    def match_info(self, stamp_ns: int, waited_ns: int) -> Any:
        """The camera_info nearest `stamp_ns` within the slop; Waiting('no_camera_info') if none (yet)."""
        s = self._info_stamps
        if not s:
            raise Waiting("no_camera_info", "no camera_info received yet")
        i = bisect.bisect_left(s, stamp_ns)
        best = min((j for j in (i - 1, i) if 0 <= j < len(s)), key=lambda j: abs(s[j] - stamp_ns))
        gap = abs(s[best] - stamp_ns)
        if gap > self.cfg.camera_info_slop_ns:
            raise Waiting("no_camera_info", f"no camera_info within {self.cfg.camera_info_slop_ns * 1e-9:.3f} s of the image stamp "
                                            f"(nearest is {gap * 1e-9:.3f} s away; raise camera_info_slop_s if the driver stamps them apart)")
        final = gap == 0 or s[-1] >= stamp_ns or waited_ns >= self.cfg.camera_info_slop_ns
        if not final:
            raise Waiting("no_camera_info", "waiting for a camera_info that may match more closely")
        return self._info_values[best]

    # ------------------------------------------------------------------ images

    def add_image(self, stamp_ns: int, frame_id: str, msg: Any, now_ns: int) -> list[Dropped]:
        """Queue a raw image. Returns what was dropped on the way: this image ('zero_stamp',
        'rate_limited') or the oldest waiting one ('pending_overflow')."""
        item = Pending(stamp_ns, frame_id, msg, now_ns)
        if stamp_ns <= 0:
            return [Dropped(item, "zero_stamp", "image stamp is 0: no pose can be looked up for it (the driver must stamp images)")]
        last = self._last_admitted_ns
        if last is not None and stamp_ns < last - RESTART_NS:
            last = self._last_admitted_ns = None  # the source restarted (bag loop)
        if last is not None and self.cfg.min_period_ns and 0 <= stamp_ns - last < self.cfg.min_period_ns:
            return [Dropped(item, "rate_limited", "above max_input_rate_hz")]
        self._last_admitted_ns = stamp_ns if last is None else max(last, stamp_ns)
        self._queue.append(item)
        out = []
        while len(self._queue) > self.cfg.max_pending:
            out.append(Dropped(self._queue.popleft(), "pending_overflow", f"more than max_pending={self.cfg.max_pending} images waiting"))
        return out

    def take(self, now_ns: int, resolve: Callable[[Pending], Any]) -> tuple[Pending | None, Any, list[Dropped], int]:
        """Resolve newest first. `resolve(item)` returns a result or raises Waiting / Rejected.

        Returns (item, its result) for the newest resolvable image or (None, None), the images
        dropped on the way (rejected, expired, out of order), and how many older images were
        superseded by the one taken (never decoded)."""
        dropped: list[Dropped] = []
        keep: list[Pending] = []  # newer than the taken one and still waiting (newest first)
        taken = result = None
        while self._queue:
            item = self._queue.pop()
            if self._is_out_of_order(item.stamp_ns):
                dropped.append(Dropped(item, "out_of_order", "image stamp is older than the last frame used"))
                continue
            try:
                result = resolve(item)
            except Rejected as exc:
                dropped.append(Dropped(item, exc.reason, str(exc)))
                continue
            except Waiting as exc:
                if now_ns - item.arrived_ns >= self.cfg.tf_wait_ns:
                    dropped.append(Dropped(item, exc.reason, str(exc)))
                else:
                    keep.append(item)
                continue
            taken = item
            break
        superseded = len(self._queue)
        self._queue.clear()  # older than the taken one: the worker would discard them anyway
        if taken is None:
            superseded = 0
        self._queue.extend(reversed(keep))
        if taken is not None:
            self._last_taken_ns = taken.stamp_ns
        return taken, result, dropped, superseded

    def _is_out_of_order(self, stamp_ns: int) -> bool:
        last = self._last_taken_ns
        return last is not None and last - RESTART_NS <= stamp_ns <= last


def precheck_image(msg: Any, known_encodings: tuple[str, ...] | None) -> str | None:
    """Why a raw sensor_msgs/Image can never be decoded (checked on arrival, without decoding), or
    None. Messages without an `encoding` (CompressedImage) are checked when decoded."""
    encoding = getattr(msg, "encoding", None)
    if encoding is None:
        return None
    if known_encodings and encoding not in known_encodings:
        return f"unsupported colour encoding '{encoding}' (supported: {', '.join(known_encodings)})"
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        return f"image has no pixels ({h}x{w})"
    if len(msg.data) != step * h:
        return f"data has {len(msg.data)} bytes, expected step*height = {step}*{h}"
    return None
