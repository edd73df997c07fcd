"""How many of the camera's frames never reached the node, from the gaps between image stamps.

Why (stop 33, `benchmarks/bench_endurance.py`): a 640x480 rgb8 image is 900 KiB, above Fast DDS's
default 512 KiB shared-memory segment. With the sensor-data QoS every image driver and subscriber
uses (best effort), such messages go out as UDP fragments and most are lost: on 2 cores the node
received 37 % of a 30 Hz camera's images and published 3-6 depth maps/s instead of 7-12
(rmw_fastrtps issue #739; sizes in KiB, as Fast DDS sets them). Nothing in the node fails, so
without this count the loss is invisible. The node sees only what arrives; a camera's stamps are
regular, so the gaps between consecutive stamps (per frame_id) show what went missing: the frame
period is a low percentile of the gaps (at least PERIOD_PERCENTILE % of the frames must arrive
back to back for it to hold), each gap counts round(gap / period) frames, and the missing share is
the frames not received of those counted, over the images that arrived in the last WINDOW_S. Gaps
longer than MAX_GAP_S (a paused stream, a bag between loops) are left out. Losses are random in
practice; a regular pattern (every third frame) cannot be told from a slower camera and reads as
none. The demo bags read 0 %, and 24 % with mvgd-eval's every-4th-frame hold-out (below
LOSS_WARN).
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np

WINDOW_S = 4.0  # images that arrived this recently make the estimate
MAX_IMAGES = 1000  # ... at most this many (bounded memory at any rate)
MIN_GAPS = 20  # gaps needed for an estimate (a 5 Hz camera has 20 in 4 s)
PERIOD_PERCENTILE = 20
MAX_GAP_S = 1.0
LOSS_WARN = 0.34  # missing share that makes the status WARN: mvgd-eval withholds every 4th frame (0.25) on purpose
FASTDDS_SHM_SEGMENT_BYTES = 512 * 1024  # Fast DDS's default shared-memory segment


@dataclass(frozen=True)
class Gaps:
    """missing_share: frames missing of those the camera sent (0..1); rate_hz: the camera's rate
    from its stamps; largest_bytes: the largest image payload in the window."""

    missing_share: float
    rate_hz: float
    largest_bytes: int


class InputGaps:
    """Recent images' (arrival monotonic ns, frame_id, stamp ns, payload bytes), in arrival order."""

    def __init__(self, window_s: float = WINDOW_S, clock=time.monotonic_ns):
        self._seen: deque = deque(maxlen=MAX_IMAGES)
        self._window_ns, self._clock = int(window_s * 1e9), clock

    def add(self, frame_id: str, stamp_ns: int, nbytes: int) -> None:
        self._seen.append((self._clock(), frame_id, int(stamp_ns), int(nbytes)))

    def estimate(self) -> Gaps | None:
        """The window's estimate, or None with fewer than MIN_GAPS usable gaps."""
        since = self._clock() - self._window_ns
        seen = [x for x in list(self._seen) if x[0] >= since]  # list(): one C-level copy, the executor may add meanwhile
        last: dict[str, int] = {}
        gaps = []
        for _, frame_id, ns, _ in seen:
            prev = last.get(frame_id)
            if prev is not None and 0 < ns - prev <= MAX_GAP_S * 1e9:  # out of order / restarts / pauses: not a gap
                gaps.append(ns - prev)
            last[frame_id] = ns
        if len(gaps) < MIN_GAPS:
            return None
        g = np.asarray(gaps, dtype=np.float64)
        period = float(np.percentile(g, PERIOD_PERCENTILE))
        frames = np.maximum(1, np.rint(g / period))
        return Gaps(float((frames - 1).sum() / frames.sum()), 1e9 / period, max(b for *_, b in seen))


def loss_message(gaps: Gaps | None) -> str | None:
    """The WARN message for a lossy input, None when the input looks whole (or is unknown)."""
    if gaps is None or gaps.missing_share < LOSS_WARN:
        return None
    msg = f"{gaps.missing_share:.0%} of the camera's frames never reached the node (stamps at {gaps.rate_hz:.0f} Hz)"
    if gaps.largest_bytes > FASTDDS_SHM_SEGMENT_BYTES:
        msg += (f": images of {gaps.largest_bytes // 1024} KiB exceed Fast DDS's default 512 KiB shared-memory segment; give the camera "
                "driver a larger one (config/fastdds_large_images.xml, docs/ROS_NODE.md 'Large images') or use compressed images")
    return msg
