"""The frames the node adds to TF for its outputs, latched on /tf_static (REP 103).

Per camera frame_id seen (or given as the `camera_frame` parameter):
- its optical child `<frame_id>_mvgd_optical` when the frame is a body frame (x forward, z up),
  which the outputs are then stamped with (an optical frame_id is used as it is);
- one frame per `virtual_offsets` entry, `<frame_id>_mvgd_virtual_<i>`, child of that optical frame.
The whole set goes out on every change, like tf2_ros' StaticTransformBroadcaster (the latched
/tf_static message replaces the previous one for late joiners).

Bounded: at most `max_cameras` camera frames are kept (LRU); a frame_id evicted by newer ones
drops its transforms from the latched set and is re-latched if it comes back.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from mvgd_ros.frames import optical_output_frame, virtual_frame_name
from mvgd_ros.lru import LruDict
from mvgd_ros.tf import broadcast_message

MAX_CAMERA_FRAMES = 64  # distinct camera frame_ids remembered (one node serves one camera: a few at most)


class StaticFrames:
    """camera frame_id -> (output frame, [TransformStamped]) with the latched /tf_static set."""

    def __init__(self, publish: Callable[[list], None], offsets: list[np.ndarray], convention: str,
                 max_cameras: int = MAX_CAMERA_FRAMES):
        self._publish = publish  # called with the full list of TransformStamped to latch
        self._offsets = offsets  # T_optical_virtual (4, 4) per virtual_offsets entry
        self._convention = convention
        self._cameras: LruDict[str, tuple[str, list]] = LruDict(max_cameras)

    @property
    def evicted(self) -> int:
        return self._cameras.evicted

    def __len__(self) -> int:
        return len(self._cameras)

    def output_frame(self, frame_id: str, stamp) -> tuple[str, bool]:
        """(frame to stamp `frame_id`'s outputs with, whether it was latched just now).
        `stamp` (builtin_interfaces/Time) stamps newly latched transforms."""
        known = self._cameras.get(frame_id)
        if known is not None:
            return known[0], False
        out, T_frame_optical = optical_output_frame(frame_id, self._convention)
        transforms = [] if T_frame_optical is None else [broadcast_message(frame_id, out, T_frame_optical, stamp)]
        transforms += [broadcast_message(out, virtual_frame_name(frame_id, i), T, stamp) for i, T in enumerate(self._offsets)]
        evicted = self._cameras.put(frame_id, (out, transforms))
        if transforms or any(ts for _, (_, ts) in evicted):  # the latched set changed
            self._publish(self.transforms())
        return out, True

    def transforms(self) -> list:
        """Every latched TransformStamped, one per child frame (the first latched wins, as before)."""
        seen, out = set(), []
        for _, ts in self._cameras.values():
            for t in ts:
                if t.child_frame_id not in seen:
                    seen.add(t.child_frame_id)
                    out.append(t)
        return out

    def children(self) -> set[str]:
        return {t.child_frame_id for t in self.transforms()}
