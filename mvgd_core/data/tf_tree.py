"""A small pure-Python TF buffer: time-stamped transform tree with interpolated lookups.

Stands in for tf2_ros.Buffer where ROS is absent (bag reading, tests, the node's fallback).
Semantics follow tf2:
- `set_transform(parent, child, stamp, T, static)` stores T = T_parent_child (4, 4), the pose
  of `child` in `parent` (maps child coordinates into parent coordinates). Each frame has one
  parent; a new parent for a frame replaces its edge (and history).
- `lookup(target_frame, source_frame, stamp)` returns T_target_source (4, 4), mapping points
  in source_frame into target_frame at time `stamp`, like tf2 `lookup_transform(target,
  source, time)`. stamp=None means the latest common time.
- Dynamic edges interpolate between the two samples around `stamp` (lerp translation, slerp
  rotation); static edges hold for all times. A stamp outside a dynamic edge's sample range
  raises ExtrapolationError unless within `extrapolation_tolerance` (then the end sample is used).

Time unit: any one unit used consistently by the caller - float seconds (bag reading) or
integer nanoseconds (the ROS node: float seconds near 1.7e9 keep only ~0.2 us, enough to turn
a lookup at the newest sample into an extrapolation). `cache_time` and
`extrapolation_tolerance` are in the same unit.

Speed (the node's fallback must keep up with real trees, >= 10k inserts and lookups per
second on one core, benchmarks/bench_input.py): samples are stored as plain Python float
tuples (x, y, z, qx, qy, qz, qw), chains are composed with quaternion arithmetic in pure
Python (numpy call overhead dominates for 3-vectors), and only the result becomes a (4, 4).

Errors are all `TFError` (a LookupError): UnknownFrameError, NotConnectedError,
ExtrapolationError; their messages name the frames, stamps and available range.
All maths in float64; no ROS imports.
"""
from __future__ import annotations

import bisect
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from mvgd_core.cameras import make_pose, matrix_to_quat, quat_to_matrix

_ORTHO_TOL = 1e-3
_MAX_NAMES_IN_ERRORS = 20


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


# ---------------------------------------------------------------------- pure-Python rigid maths
# A transform is a 7-tuple (x, y, z, qx, qy, qz, qw) with a unit quaternion.

Tq = tuple  # (x, y, z, qx, qy, qz, qw)
_IDENTITY: Tq = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)


def checked_tq(translation, quaternion_xyzw) -> Tq:
    """A normalised 7-tuple; ValueError for non-finite values or a zero quaternion."""
    x, y, z = (float(v) for v in translation)
    qx, qy, qz, qw = (float(v) for v in quaternion_xyzw)
    if not all(math.isfinite(v) for v in (x, y, z)):
        raise ValueError(f"translation contains NaN or Inf: {(x, y, z)}")
    if not all(math.isfinite(v) for v in (qx, qy, qz, qw)):
        raise ValueError(f"quaternion contains NaN or Inf: {[qx, qy, qz, qw]}")
    n = math.sqrt(qx * qx + qy * qy + qz * qz + qw * qw)
    if n < 1e-9:
        raise ValueError("quaternion has zero norm")
    return (x, y, z, qx / n, qy / n, qz / n, qw / n)


def _rotate(qx, qy, qz, qw, vx, vy, vz):
    """q * v * q^-1 for a unit quaternion (v' = v + 2w (u x v) + 2 u x (u x v))."""
    cx, cy, cz = qy * vz - qz * vy, qz * vx - qx * vz, qx * vy - qy * vx
    cx, cy, cz = cx * 2.0, cy * 2.0, cz * 2.0
    return (vx + qw * cx + qy * cz - qz * cy, vy + qw * cy + qz * cx - qx * cz, vz + qw * cz + qx * cy - qy * cx)


def _compose(a: Tq, b: Tq) -> Tq:
    """a * b (apply b, then a)."""
    ax, ay, az, aqx, aqy, aqz, aqw = a
    bx, by, bz, bqx, bqy, bqz, bqw = b
    rx, ry, rz = _rotate(aqx, aqy, aqz, aqw, bx, by, bz)
    return (ax + rx, ay + ry, az + rz,
            aqw * bqx + aqx * bqw + aqy * bqz - aqz * bqy,
            aqw * bqy - aqx * bqz + aqy * bqw + aqz * bqx,
            aqw * bqz + aqx * bqy - aqy * bqx + aqz * bqw,
            aqw * bqw - aqx * bqx - aqy * bqy - aqz * bqz)


def _inverse(a: Tq) -> Tq:
    x, y, z, qx, qy, qz, qw = a
    rx, ry, rz = _rotate(-qx, -qy, -qz, qw, x, y, z)
    return (-rx, -ry, -rz, -qx, -qy, -qz, qw)


def _interpolate(a: Tq, b: Tq, alpha: float) -> Tq:
    """Lerp translation, slerp rotation (short way round; lerp when nearly parallel)."""
    ax, ay, az, aqx, aqy, aqz, aqw = a
    bx, by, bz, bqx, bqy, bqz, bqw = b
    dot = aqx * bqx + aqy * bqy + aqz * bqz + aqw * bqw
    if dot < 0.0:
        bqx, bqy, bqz, bqw, dot = -bqx, -bqy, -bqz, -bqw, -dot
    if dot > 0.9995:
        wa, wb = 1.0 - alpha, alpha
    else:
        theta = math.acos(min(dot, 1.0))
        s = math.sin(theta)
        wa, wb = math.sin((1.0 - alpha) * theta) / s, math.sin(alpha * theta) / s
    qx, qy, qz, qw = wa * aqx + wb * bqx, wa * aqy + wb * bqy, wa * aqz + wb * bqz, wa * aqw + wb * bqw
    n = math.sqrt(qx * qx + qy * qy + qz * qz + qw * qw)
    return (ax + alpha * (bx - ax), ay + alpha * (by - ay), az + alpha * (bz - az), qx / n, qy / n, qz / n, qw / n)


def tq_to_matrix(a: Tq) -> np.ndarray:
    """(4, 4) float64 from a 7-tuple."""
    x, y, z, qx, qy, qz, qw = a
    return np.array([
        [1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qz * qw), 2 * (qx * qz + qy * qw), x],
        [2 * (qx * qy + qz * qw), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qx * qw), y],
        [2 * (qx * qz - qy * qw), 2 * (qy * qz + qx * qw), 1 - 2 * (qx * qx + qy * qy), z],
        [0.0, 0.0, 0.0, 1.0],
    ])


def _matrix_to_tq(T: np.ndarray) -> Tq:
    """7-tuple from a (4, 4) rigid transform; ValueError if it is not one (numpy only: fast)."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"expected a (4, 4) transform, got shape {T.shape}")
    if not np.isfinite(T).all():
        raise ValueError("pose contains NaN or Inf")
    R = T[:3, :3]
    err = float(np.abs(R @ R.T - np.eye(3)).max())
    if err > _ORTHO_TOL or np.linalg.det(R) < 0:
        raise ValueError(f"rotation is not orthonormal with det +1 (|RR^T - I| = {err:.2e})")
    if float(np.abs(T[3] - (0.0, 0.0, 0.0, 1.0)).max()) > 1e-6:
        raise ValueError(f"last row must be [0, 0, 0, 1], got {T[3].tolist()}")
    return checked_tq(T[:3, 3], matrix_to_quat(R))


@dataclass
class _Edge:
    parent: str
    static: bool
    stamps: list = field(default_factory=list)  # sorted; one entry for static edges
    values: list = field(default_factory=list)  # Tq per stamp


class TFTree:
    """Transform tree with time-sorted samples per edge. See the module docstring.

    cache_time: dynamic history kept per edge, counted back from its newest sample (None =
    keep all, right for reading a whole bag). extrapolation_tolerance: how far a lookup may lie
    outside a dynamic edge's sample range and still succeed (clamped). Both in the stamp unit.
    """

    def __init__(self, cache_time: float | None = None, extrapolation_tolerance: float = 0.0):
        self.cache_time = cache_time
        self.extrapolation_tolerance = extrapolation_tolerance
        self._edges: dict[str, _Edge] = {}  # child -> edge to its parent
        self._parents: Counter = Counter()  # parent name -> number of children (O(1) "frame exists")

    # ------------------------------------------------------------------ building

    def set_transform(self, parent: str, child: str, stamp, T, static: bool = False) -> None:
        """Store T_parent_child (4, 4) at `stamp`. Raises ValueError for bad input or cycles."""
        try:
            tq = _matrix_to_tq(T)
        except ValueError as exc:
            raise ValueError(f"set_transform {parent} -> {child} @ {stamp}: {exc}") from exc
        self.insert_checked(parent, child, stamp, tq, static)

    def set_transform_tq(self, parent: str, child: str, stamp, translation, quaternion_xyzw, static: bool = False) -> None:
        """set_transform from a translation (3,) and a quaternion (x, y, z, w), as in TransformStamped."""
        try:
            tq = checked_tq(translation, quaternion_xyzw)
        except ValueError as exc:
            raise ValueError(f"set_transform {parent} -> {child} @ {stamp}: {exc}") from exc
        self.insert_checked(parent, child, stamp, tq, static)

    def insert_checked(self, parent: str, child: str, stamp, tq: Tq, static: bool = False) -> None:
        """Store a 7-tuple made by `checked_tq` (the fast path: no re-validation of the rotation)."""
        if not parent or not child or parent == child:
            raise ValueError(f"set_transform: need two distinct non-empty frame names, got parent={parent!r} child={child!r}")
        if not math.isfinite(stamp):
            raise ValueError(f"set_transform {parent} -> {child}: stamp {stamp} is not finite")
        edge = self._edges.get(child)
        if edge is None or edge.parent != parent or edge.static != static:
            if (edge is None or edge.parent != parent) and self._is_ancestor(child, parent):
                raise ValueError(f"set_transform {parent} -> {child}: would create a cycle ({child!r} is an ancestor of {parent!r})")
            self.drop_edge(child)
            edge = self._edges[child] = _Edge(parent=parent, static=static)
            self._parents[parent] += 1
        if static:  # one value for all times
            edge.stamps, edge.values = [stamp], [tq]
            return
        s = edge.stamps
        if not s or stamp > s[-1]:  # the common case: in order
            s.append(stamp)
            edge.values.append(tq)
        else:
            i = bisect.bisect_left(s, stamp)
            if s[i] == stamp:  # same stamp again: replace
                edge.values[i] = tq
            else:
                s.insert(i, stamp)
                edge.values.insert(i, tq)
        if self.cache_time is not None and s[-1] - s[0] > self.cache_time:
            k = bisect.bisect_left(s, s[-1] - self.cache_time)
            del s[:k], edge.values[:k]

    def drop_edge(self, child: str) -> None:
        """Forget `child`'s edge to its parent, static or dynamic (bounded-memory eviction); no-op if unknown."""
        old = self._edges.pop(child, None)
        if old is not None:
            self._parents[old.parent] -= 1
            if self._parents[old.parent] <= 0:
                del self._parents[old.parent]

    def clear(self) -> None:
        self._edges.clear()
        self._parents.clear()

    def clear_edge(self, child: str) -> None:
        """Forget the dynamic history of `child`'s edge (the frame stays known until new data)."""
        e = self._edges.get(child)
        if e is not None and not e.static:
            self.drop_edge(child)

    # ------------------------------------------------------------------ queries

    def has_frame(self, frame: str) -> bool:
        return frame in self._edges or frame in self._parents

    @property
    def frames(self) -> set[str]:
        """All frame names (parents and children)."""
        return set(self._edges) | set(self._parents)

    def parent_of(self, frame: str) -> str | None:
        e = self._edges.get(frame)
        return None if e is None else e.parent

    def time_range(self, parent: str, child: str):
        """(first, last) stamp of a dynamic edge; None for static or missing edges."""
        e = self._edges.get(child)
        if e is None or e.parent != parent or e.static:
            return None
        return e.stamps[0], e.stamps[-1]

    def can_transform(self, target_frame: str, source_frame: str, stamp=None) -> bool:
        try:
            self.lookup_tq(target_frame, source_frame, stamp)
            return True
        except TFError:
            return False

    def lookup(self, target_frame: str, source_frame: str, stamp=None) -> np.ndarray:
        """T_target_source (4, 4) float64 at `stamp` (None = latest common time). Raises TFError subclasses."""
        return tq_to_matrix(self.lookup_tq(target_frame, source_frame, stamp))

    def lookup_tq(self, target_frame: str, source_frame: str, stamp=None) -> Tq:
        """As `lookup`, as a 7-tuple (x, y, z, qx, qy, qz, qw)."""
        for f in (target_frame, source_frame):
            if not self.has_frame(f):  # fail fast: no chain walking for names never seen
                known = sorted(self.frames)
                more = f" and {len(known) - _MAX_NAMES_IN_ERRORS} more" if len(known) > _MAX_NAMES_IN_ERRORS else ""
                raise UnknownFrameError(f"frame {f!r} does not exist in the TF tree (known frames: {known[:_MAX_NAMES_IN_ERRORS]}{more})")
        if target_frame == source_frame:
            return _IDENTITY
        up_s, up_t = self._chain(source_frame), self._chain(target_frame)
        in_t = set(up_t)
        common = next((f for f in up_s if f in in_t), None)
        if common is None:
            raise NotConnectedError(
                f"cannot transform {source_frame!r} into {target_frame!r}: not connected "
                f"({source_frame!r} has root {up_s[-1]!r}, {target_frame!r} has root {up_t[-1]!r})"
            )
        path_s, path_t = up_s[: up_s.index(common)], up_t[: up_t.index(common)]
        if stamp is None:
            stamp = self._latest_common_time(path_s + path_t)
        T_c_s = self._compose_path(path_s, stamp, target_frame, source_frame)  # T_common_source
        if not path_t:
            return T_c_s
        T_c_t = self._compose_path(path_t, stamp, target_frame, source_frame)  # T_common_target
        return _compose(_inverse(T_c_t), T_c_s)

    # ------------------------------------------------------------------ internals

    def _chain(self, frame: str) -> list[str]:
        """[frame, parent, grandparent, ..., root]."""
        out = [frame]
        edges = self._edges
        while out[-1] in edges:
            out.append(edges[out[-1]].parent)
        return out

    def _is_ancestor(self, a: str, b: str) -> bool:
        return a in self._chain(b)

    def _latest_common_time(self, children: list[str]):
        dyn = [self._edges[c].stamps[-1] for c in children if not self._edges[c].static]
        return min(dyn) if dyn else 0

    def _compose_path(self, children: list[str], stamp, target: str, source: str) -> Tq:
        """Product of edges from the common ancestor down to children[0]: T_ancestor_child0."""
        if not children:
            return _IDENTITY
        T = self._edge_at(children[0], stamp, target, source)
        for c in children[1:]:  # children[0] is the deepest; left-multiply by parents as we go up
            T = _compose(self._edge_at(c, stamp, target, source), T)
        return T

    def _edge_at(self, child: str, stamp, target: str, source: str) -> Tq:
        e = self._edges[child]
        s = e.stamps
        if e.static:
            return e.values[0]
        if stamp <= s[0] or stamp >= s[-1]:
            tol = self.extrapolation_tolerance
            lo, hi = (s[0] - tol, s[-1] + tol) if tol else (s[0], s[-1])  # no float tolerance near int ns stamps
            if stamp < lo or stamp > hi:
                way = "past" if stamp < s[0] else "future"
                gap = s[0] - stamp if stamp < s[0] else stamp - s[-1]
                raise ExtrapolationError(
                    f"lookup {source!r} -> {target!r} at t={stamp}: extrapolation into the {way} on edge "
                    f"{e.parent!r} -> {child!r} ({gap} outside its data [{s[0]}, {s[-1]}], {len(s)} samples)"
                )
            return e.values[0] if stamp <= s[0] else e.values[-1]
        i = bisect.bisect_right(s, stamp)  # s[i-1] <= stamp < s[i]
        if s[i - 1] == stamp:
            return e.values[i - 1]
        return _interpolate(e.values[i - 1], e.values[i], (stamp - s[i - 1]) / (s[i] - s[i - 1]))
