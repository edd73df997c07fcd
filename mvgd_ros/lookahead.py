"""Fixed-lag live depth: a frame waits for a few newer frames before its depth is predicted.

Why (stop 22, node parameter `lookahead_frames`, default 0 = live): a camera moving forward
sees its past keyframes straight behind it, so they give little parallax where it looks. Once a
few newer frames have arrived (and become keyframes, a baseline further on), the frame's
conditioning views can come from both sides of its path (MODEL_CARD "Fixed-lag depth" has the
measurements). Mapping (nvblox, a TSDF) takes depth a fraction of a second late without harm,
since each map is stamped with its own frame and placed by TF at that stamp; reactive obstacle
avoidance wants the lowest latency and keeps 0. Offline mapping smooths over a fixed lag for the
same reason (fixed-lag smoothing).

The node offers every posed frame to its keyframe set on arrival (so a newer keyframe is a
candidate view at once) and queues it here; each arriving frame releases the one `lookahead`
frames older, so the lag is `lookahead` / (the rate of frames the node uses) and exactly one
frame is released per frame, as without a lag. A frame that waited `max_wait_s` on the wall
clock is released anyway (the stream paused or ended; the node's timer, one frame per tick). Pure Python, no ROS;
`mvgd_ros.eval_scoring.node_conditioning` replays it.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass
class Lagged:
    """A posed frame waiting for newer ones: what the node needs to build its job later."""

    frame: Any  # mvgd_core.data.types.Frame
    header: Any  # std_msgs/Header of its outputs (its own stamp and optical frame); None in replays
    keyframe: bool  # it became a keyframe on arrival
    arrived_s: float  # monotonic seconds


class LookaheadQueue:
    """Frames in arrival order, released oldest first."""

    def __init__(self):
        self._q: deque[Lagged] = deque()

    def __len__(self) -> int:
        return len(self._q)

    def push(self, item: Lagged, lookahead: int) -> list[Lagged]:
        """Queue `item`; return the frames now due, oldest first: all but the newest `lookahead`
        (with 0: `item` itself; after `lookahead` was lowered at runtime: several)."""
        self._q.append(item)
        return [self._q.popleft() for _ in range(max(len(self._q) - max(lookahead, 0), 0))]

    def expired(self, now_s: float, max_wait_s: float) -> Lagged | None:
        """The oldest frame if it has waited longer than `max_wait_s` (no newer frame came), else
        None. One per call: the node's timer calls it every 50 ms, so frames released together do
        not replace each other in the worker's newest-wins slot."""
        if self._q and now_s - self._q[0].arrived_s > max_wait_s:
            return self._q.popleft()
        return None

    def drain(self) -> list[Lagged]:
        """Every waiting frame, oldest first (a replay's end)."""
        out = list(self._q)
        self._q.clear()
        return out

    def clear(self) -> int:
        """Drop every waiting frame (a reset: their poses may be stale); returns how many."""
        n = len(self._q)
        self._q.clear()
        return n
