"""A small pure-Python TF buffer: time-stamped transform tree with interpolated lookups.

Stands in for tf2_ros.Buffer where ROS is absent (bag reading, tests, the node's fallback).
Semantics follow tf2:
- `set_transform(parent, child, stamp, T, static)` stores T = T_parent_child (4, 4), the pose
  of `child` in `parent` (maps child coordinates into parent coordinates). Each frame has one
  parent; a new parent for a frame replaces its edge (and history).
- `lookup(target_frame, source_frame, stamp)` returns T_target_source (4, 4), mapping points
  in source_frame into target_frame at time `stamp` (seconds), like
  tf2 `lookup_transform(target, source, time)`. stamp=None means the latest common time.
- Dynamic edges interpolate between the two samples around `stamp` (lerp translation, slerp
  rotation); static edges hold for all times. A stamp outside a dynamic edge's sample range
  raises ExtrapolationError unless within `extrapolation_tolerance` (then the end sample is used).

Errors are all `TFError` (a LookupError): UnknownFrameError, NotConnectedError,
ExtrapolationError; their messages name the frames, stamps and available range.
All maths in float64 numpy; no ROS imports.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

from mvgd_core.cameras import make_pose, matrix_to_quat, quat_slerp, quat_to_matrix, validate_pose


class TFError(LookupError):
    """A transform cannot be looked up."""


class UnknownFrameError(TFError):
    """A frame name was never set."""


class NotConnectedError(TFError):
    """Both frames exist but lie in different trees."""


class ExtrapolationError(TFError):
    """The stamp lies before the first or after the last sample of a dynamic edge."""


def transform_from_tq(translation, quaternion_xyzw) -> np.ndarray:
    """(4, 4) float64 transform from a translation (3,) and a ROS-order quaternion (x, y, z, w)."""
    return make_pose(quat_to_matrix(quaternion_xyzw), translation)


@dataclass
class _Edge:
    parent: str
    static: bool
    stamps: list[float] = field(default_factory=list)  # sorted; one entry for static edges
    trans: list[np.ndarray] = field(default_factory=list)  # (3,) each
    quats: list[np.ndarray] = field(default_factory=list)  # (4,) xyzw each


class TFTree:
    """Transform tree with time-sorted samples per edge. See the module docstring.

    cache_time: seconds of dynamic history kept per edge, counted back from its newest sample
    (None = keep all, right for reading a whole bag). extrapolation_tolerance: seconds a
    lookup may lie outside a dynamic edge's sample range and still succeed (clamped).
    """

    def __init__(self, cache_time: float | None = None, extrapolation_tolerance: float = 0.0):
        self.cache_time = cache_time
        self.extrapolation_tolerance = extrapolation_tolerance
        self._edges: dict[str, _Edge] = {}  # child -> edge to its parent

    # ------------------------------------------------------------------ building

    def set_transform(self, parent: str, child: str, stamp: float, T, static: bool = False) -> None:
        """Store T_parent_child (4, 4) at `stamp` (s). Raises ValueError for bad input or cycles."""
        if not parent or not child or parent == child:
            raise ValueError(f"set_transform: need two distinct non-empty frame names, got parent={parent!r} child={child!r}")
        T = np.asarray(T, dtype=np.float64)
        if not np.isfinite(stamp):
            raise ValueError(f"set_transform {parent} -> {child}: stamp {stamp} is not finite")
        try:
            validate_pose(T)
        except ValueError as exc:
            raise ValueError(f"set_transform {parent} -> {child} @ {stamp:.6f}: {exc}") from exc
        if self._is_ancestor(child, parent):
            raise ValueError(f"set_transform {parent} -> {child}: would create a cycle ({child!r} is an ancestor of {parent!r})")
        edge = self._edges.get(child)
        if edge is None or edge.parent != parent or edge.static != static:
            edge = self._edges[child] = _Edge(parent=parent, static=static)
        t, q = T[:3, 3].copy(), matrix_to_quat(T[:3, :3])
        if static:  # one value for all times
            edge.stamps, edge.trans, edge.quats = [float(stamp)], [t], [q]
            return
        i = bisect.bisect_left(edge.stamps, stamp)
        if i < len(edge.stamps) and edge.stamps[i] == stamp:  # same stamp again: replace
            edge.trans[i], edge.quats[i] = t, q
        else:
            edge.stamps.insert(i, float(stamp))
            edge.trans.insert(i, t)
            edge.quats.insert(i, q)
        if self.cache_time is not None:
            k = bisect.bisect_left(edge.stamps, edge.stamps[-1] - self.cache_time)
            del edge.stamps[:k], edge.trans[:k], edge.quats[:k]

    def set_transform_tq(self, parent: str, child: str, stamp: float, translation, quaternion_xyzw, static: bool = False) -> None:
        """set_transform from a translation (3,) and a quaternion (x, y, z, w), as in TransformStamped."""
        try:
            T = transform_from_tq(translation, quaternion_xyzw)
        except ValueError as exc:
            raise ValueError(f"set_transform {parent} -> {child} @ {stamp:.6f}: {exc}") from exc
        self.set_transform(parent, child, stamp, T, static)

    def clear(self) -> None:
        self._edges.clear()

    # ------------------------------------------------------------------ queries

    @property
    def frames(self) -> set[str]:
        """All frame names (parents and children)."""
        return set(self._edges) | {e.parent for e in self._edges.values()}

    def parent_of(self, frame: str) -> str | None:
        e = self._edges.get(frame)
        return None if e is None else e.parent

    def time_range(self, parent: str, child: str) -> tuple[float, float] | None:
        """(first, last) stamp of a dynamic edge; None for static or missing edges."""
        e = self._edges.get(child)
        if e is None or e.parent != parent or e.static:
            return None
        return e.stamps[0], e.stamps[-1]

    def can_transform(self, target_frame: str, source_frame: str, stamp: float | None = None) -> bool:
        try:
            self.lookup(target_frame, source_frame, stamp)
            return True
        except TFError:
            return False

    def lookup(self, target_frame: str, source_frame: str, stamp: float | None = None) -> np.ndarray:
        """T_target_source (4, 4) float64 at `stamp` (s; None = latest common time). Raises TFError subclasses."""
        for f in (target_frame, source_frame):
            if f not in self.frames:
                known = sorted(self.frames)
                raise UnknownFrameError(f"frame {f!r} does not exist in the TF tree (known frames: {known})")
        if target_frame == source_frame:
            return np.eye(4)
        up_s, up_t = self._chain(source_frame), self._chain(target_frame)
        common = next((f for f in up_s if f in set(up_t)), None)
        if common is None:
            raise NotConnectedError(
                f"cannot transform {source_frame!r} into {target_frame!r}: not connected "
                f"({source_frame!r} has root {up_s[-1]!r}, {target_frame!r} has root {up_t[-1]!r})"
            )
        path_s, path_t = up_s[: up_s.index(common)], up_t[: up_t.index(common)]
        if stamp is None:
            stamp = self._latest_common_time(path_s + path_t)
        T_c_s = self._compose(path_s, stamp, target_frame, source_frame)  # T_common_source
        T_c_t = self._compose(path_t, stamp, target_frame, source_frame)  # T_common_target
        return _inv(T_c_t) @ T_c_s

    # ------------------------------------------------------------------ internals

    def _chain(self, frame: str) -> list[str]:
        """[frame, parent, grandparent, ..., root]."""
        out = [frame]
        while out[-1] in self._edges:
            out.append(self._edges[out[-1]].parent)
        return out

    def _is_ancestor(self, a: str, b: str) -> bool:
        return a in self._chain(b)

    def _latest_common_time(self, children: list[str]) -> float:
        dyn = [self._edges[c].stamps[-1] for c in children if not self._edges[c].static]
        return min(dyn) if dyn else 0.0

    def _compose(self, children: list[str], stamp: float, target: str, source: str) -> np.ndarray:
        """Product of edges from the common ancestor down to children[0]: T_ancestor_child0."""
        T = np.eye(4)
        for c in children:  # children[0] is the deepest; left-multiply by parents as we go up
            T = self._edge_at(c, stamp, target, source) @ T
        return T

    def _edge_at(self, child: str, stamp: float, target: str, source: str) -> np.ndarray:
        e = self._edges[child]
        if e.static:
            return make_pose(quat_to_matrix(e.quats[0]), e.trans[0])
        s = e.stamps
        tol = self.extrapolation_tolerance
        if stamp < s[0] - tol or stamp > s[-1] + tol:
            way = "past" if stamp < s[0] else "future"
            gap = s[0] - stamp if stamp < s[0] else stamp - s[-1]
            raise ExtrapolationError(
                f"lookup {source!r} -> {target!r} at t={stamp:.6f}: extrapolation into the {way} on edge "
                f"{e.parent!r} -> {child!r} ({gap:.4f} s outside its data [{s[0]:.6f}, {s[-1]:.6f}], {len(s)} samples)"
            )
        if stamp <= s[0]:
            return make_pose(quat_to_matrix(e.quats[0]), e.trans[0])
        if stamp >= s[-1]:
            return make_pose(quat_to_matrix(e.quats[-1]), e.trans[-1])
        i = bisect.bisect_right(s, stamp)  # s[i-1] <= stamp < s[i]
        a = (stamp - s[i - 1]) / (s[i] - s[i - 1])
        q = quat_slerp(e.quats[i - 1], e.quats[i], a)
        return make_pose(quat_to_matrix(q), (1 - a) * e.trans[i - 1] + a * e.trans[i])


def _inv(T: np.ndarray) -> np.ndarray:
    R, t = T[:3, :3], T[:3, 3]
    return make_pose(R.T, -R.T @ t)
