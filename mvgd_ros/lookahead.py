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
clock is released anyway (the stream paused or ended; the node's timer, one frame per tick).

Target-pose requests (mvgd/target_pose) wait in the same queue (stop 23): one is rendered once
`lookahead` frames newer than the request have come, so its views also come from both sides of
the path (a view between keyframes is interpolated, not extrapolated). "Newer" goes by stamp:
every item is queued after the items stamped up to its own stamp, whatever the order in which
they came (DDS keeps no order across topics, and a frame waiting for late TF reaches the queue
after a request stamped later). Pure Python, no ROS;
`mvgd_ros.eval_scoring.node_conditioning` replays it and `mvgd-eval`'s gate uses it to know
which output is due.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any


# With a lag a live frame has keyframes on both sides of its path, and the photometric refinement
# takes one source more than RefineConfig's 4 (the renderer passes it): on the HoloLens walk's
# training frames (k = 2) live AbsRel 0.083 -> 0.074; without a lag a 5th source changed nothing
# there (MODEL_CARD "Target poses wait too (stop 23)").
LAGGED_REFINE_SOURCES = 5


def refine_sources(lookahead: int) -> int | None:
    """The live frame's refinement source limit at this lookahead_frames (None: the model's own)."""
    return LAGGED_REFINE_SOURCES if lookahead > 0 else None


@dataclass
class Lagged:
    """A posed frame, or a target-pose request, waiting for newer frames: what the node needs to
    build its job later."""

    frame: Any  # mvgd_core.data.types.Frame; None for a target request
    header: Any  # std_msgs/Header of its outputs (its own stamp and optical frame); None in replays
    keyframe: bool  # it became a keyframe on arrival
    arrived_s: float  # monotonic seconds
    target: Any = None  # a target request (the node's View; anything in replays); frame is then None
    stamp: float = 0.0  # seconds; orders a target among the frames

    @property
    def is_frame(self) -> bool:
        return self.target is None


class LookaheadQueue:
    """Frames and target requests in stamp order (ties: arrival order); released oldest first."""

    def __init__(self):
        self._q: deque[Lagged] = deque()
        self._frames = 0  # frames (not targets) in the queue

    def __len__(self) -> int:
        return len(self._q)

    def push(self, item: Lagged, lookahead: int) -> list[Lagged]:
        """Queue `item`; return the items now due, oldest first: each once `lookahead` frames newer
        than it are queued (with 0: `item` itself; after `lookahead` was lowered at runtime: several).
        Target requests do not count as newer frames. `item` goes after the queued items stamped
        up to its stamp."""
        at = len(self._q)
        while at > 0 and self._q[at - 1].stamp > item.stamp:
            at -= 1
        self._q.insert(at, item)
        self._frames += item.is_frame
        out = []
        while self._q and self._frames - self._q[0].is_frame >= max(lookahead, 0):
            out.append(self._pop())
        return out

    def _pop(self) -> Lagged:
        item = self._q.popleft()
        self._frames -= item.is_frame
        return item

    def expired(self, now_s: float, max_wait_s: float) -> Lagged | None:
        """The oldest item if it has waited longer than `max_wait_s` (no newer frame came), else
        None. One per call: the node's timer calls it every 50 ms, so items released together do
        not replace each other in the worker's newest-wins slots."""
        if self._q and now_s - self._q[0].arrived_s > max_wait_s:
            return self._pop()
        return None

    def drain(self) -> list[Lagged]:
        """Every waiting item, oldest first (a replay's end)."""
        out = list(self._q)
        self.clear()
        return out

    def clear(self) -> int:
        """Drop every waiting item (a reset: their poses may be stale); returns how many."""
        n = len(self._q)
        self._q.clear()
        self._frames = 0
        return n
