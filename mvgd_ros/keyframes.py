"""The keyframe buffer and view selection: which posed frames the model conditions on (no ROS here).

Adopted from DeepVideoMVS (ardaduz/deep-video-mvs, dvmvs/utils.py `pose_distance` and
dvmvs/keyframe_buffer.py `KeyframeBuffer`), whose rule SimpleRecon (nianticlabs/simplerecon)
reuses for its online keyframes; read for the idea, written anew here:
- Pose distance between camera-to-world poses A, B: the relative pose rel = A^-1 B gives
  t = |t_rel| (m) and r = sqrt(2 (1 - min(3, trace R_rel) / 3)) (a chordal rotation measure,
  ~ angle in rad for small angles); d = sqrt(t^2 + r^2).
- A frame becomes a keyframe when d to the newest keyframe is >= `pose_distance` (0.1 in
  DVMVS' test settings), or when `max_age_s` passed since the newest keyframe (a parked robot
  still refreshes its view of a changing scene; ours, not DVMVS'); the first frame always.
- The buffer is a sliding window of the last `buffer_size` keyframes (DVMVS: 30): oldest out.
- Source views for a target camera are the keyframes with the lowest penalty
  r^2 + (t - b)^2, the translation term x5 when t < b, b = `optimal_baseline` (0.15 m): views
  with parallax near b win, short baselines and rotation-only views lose.

Scene scale (ours, opt-in): both thresholds are metres for rooms. With `reference_depth` > 0 they
shrink with the scene, x min(1, scene depth / reference_depth), the scene depth being the median
of the node's latest live depth map (`observe_depth`): a wrist camera 0.4 m from a table gets
views ~0.02 m apart instead of 0.15 m (models/MODEL_CARD.md "Real held-out sequences, every frame").
They never grow: on the walk larger baselines measured worse.

Outliers (a localisation glitch: one pose metres off) must never survive, and eviction by
age cannot protect one. A keyframe is an outlier when some earlier keyframe a and later
keyframe b at most `_OUTLIER_SPAN` keyframes apart around it agree with each other but both
lie far from it: the track went there and came straight back. "Far" is
max(`outlier_translation`, 4 x the usual keyframe spacing): the larger of the step from a to b
per keyframe and, with >= 6 keyframes, the buffer's median step (one glitch cannot move it), so
a sparse buffer (a fast robot, a slow node) does not flag its normal spacing. Legitimate motion
that leaves and comes back by more than that within three keyframes would be evicted too:
losing one view is cheap, keeping a glitch is not. A persistent jump (every later
pose shifted) is not an outlier: its a and b disagree. The node also re-checks keyframe poses
against TF (`recheck`): the newest moving more than `reset_jump_translation` means a map
correction (reset); an older one moving means its pose was revised (evicted).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from mvgd_core.data.types import Frame

_OUTLIER_SPAN = 3  # b - a <= 3: glitches of up to two consecutive keyframes are found


@dataclass(frozen=True)
class KeyframeConfig:
    pose_distance: float = 0.1  # d to the newest keyframe that admits a frame (DVMVS test_keyframe_pose_distance)
    optimal_baseline: float = 0.15  # m; DVMVS test_optimal_t_measure
    buffer_size: int = 30  # keyframes kept; DVMVS test_keyframe_buffer_size
    max_age_s: float = 5.0  # s; <= 0 disables age-based keyframes
    max_views: int = 6  # conditioning views per prediction, live frame included (the node's default, params.py)
    reset_jump_translation: float = 0.5  # m; <= 0 disables the TF-jump reset / re-check
    outlier_translation: float = 1.0  # m; <= 0 disables outlier eviction
    reference_depth: float = 0.0  # m; > 0: thresholds x min(1, scene depth / this) (module docstring); 0: fixed metres

    def __post_init__(self):
        if self.reference_depth < 0:
            raise ValueError(f"reference_depth must be >= 0, got {self.reference_depth}")
        if self.pose_distance < 0 or self.optimal_baseline <= 0:
            raise ValueError(f"pose_distance must be >= 0 and optimal_baseline > 0, got {self.pose_distance}, {self.optimal_baseline}")
        if self.max_views < 1:
            raise ValueError(f"max_views must be >= 1, got {self.max_views}")
        if self.buffer_size < 1:
            raise ValueError(f"buffer_size must be >= 1, got {self.buffer_size}")


def pose_distance(Ta: np.ndarray, Tb: np.ndarray) -> tuple[float, float, float]:
    """(d, r, t) between two (4, 4) camera-to-world poses: DVMVS' combined, rotation and translation measures."""
    Ra, Rb = Ta[:3, :3], Tb[:3, :3]
    R_rel = Ra.T @ Rb  # rotation of A^-1 B
    t = float(np.linalg.norm(Ra.T @ (Tb[:3, 3] - Ta[:3, 3])))  # |translation of A^-1 B|, done in float64
    r = float(np.sqrt(max(0.0, 2.0 * (1.0 - min(3.0, float(np.trace(R_rel))) / 3.0))))
    return float(np.hypot(t, r)), r, t


def view_penalty(Ta: np.ndarray, Tb: np.ndarray, optimal_baseline: float) -> float:
    """DVMVS' selection penalty r^2 + (t - b)^2, the translation term x5 below the optimal baseline b."""
    _, r, t = pose_distance(Ta, Tb)
    dt = t - optimal_baseline
    return r * r + (5.0 if dt < 0 else 1.0) * dt * dt


@dataclass
class KeyframeSet:
    cfg: KeyframeConfig = field(default_factory=KeyframeConfig)
    frames: list[Frame] = field(default_factory=list)  # oldest first
    evicted: Counter = field(default_factory=Counter)  # 'outlier', 'tf_revised'
    scene_depth: float | None = None  # m, median of the latest live depth (`observe_depth`); kept across resets

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def newest(self) -> Frame | None:
        return self.frames[-1] if self.frames else None

    def reset(self) -> None:
        self.frames.clear()

    def observe_depth(self, depth: np.ndarray) -> None:
        """Note the scene depth from a live depth map (m, 0 / non-finite = invalid). The node calls
        it from its worker thread: one float assignment, read whole by the executor thread. Off
        (reference_depth 0): nothing to compute; a later switch-on takes the next live depth."""
        if self.cfg.reference_depth <= 0:
            return
        d = np.asarray(depth, dtype=np.float64)
        valid = d[np.isfinite(d) & (d > 0)]
        if valid.size:
            self.scene_depth = float(np.median(valid))

    def scale(self) -> float:
        """Factor on pose_distance and optimal_baseline: min(1, scene depth / reference_depth),
        at least 0.05; 1 when off or before any depth."""
        if self.cfg.reference_depth <= 0 or self.scene_depth is None:
            return 1.0
        return float(np.clip(self.scene_depth / self.cfg.reference_depth, 0.05, 1.0))

    def reason_to_add(self, frame: Frame) -> str | None:
        """Why `frame` would become a keyframe ('first', 'novel', 'age'), or None."""
        if not self.frames:
            return "first"
        if pose_distance(self.newest.T_wc, frame.T_wc)[0] >= self.cfg.pose_distance * self.scale():
            return "novel"
        if self.cfg.max_age_s > 0 and frame.stamp - self.newest.stamp >= self.cfg.max_age_s:
            return "age"
        return None

    def add(self, frame: Frame) -> tuple[str | None, str | None]:
        """Offer a frame. Returns (why it was added or None, why the set was reset first or None)."""
        reset = None
        if self.frames and frame.stamp < self.newest.stamp:
            self.reset()
            reset = "time_backwards"
        reason = self.reason_to_add(frame)
        if reason is not None:
            self.frames.append(frame)
            self._evict_outliers()
            while len(self.frames) > self.cfg.buffer_size:
                del self.frames[0]
        return reason, reset

    def _evict_outliers(self) -> None:
        """Drop keyframes the track visited and immediately left (module docstring)."""
        if self.cfg.outlier_translation <= 0 or len(self.frames) < 3:
            return
        P = np.stack([f.T_wc[:3, 3] for f in self.frames])  # (N, 3)
        n = len(P)
        typical = float(np.median(np.linalg.norm(np.diff(P, axis=0), axis=1))) if n >= 6 else 0.0  # one glitch cannot move it
        bad = set()
        b = n - 1  # only windows that end at the new keyframe are new
        for a in range(max(0, b - _OUTLIER_SPAN), b - 1):
            ab = float(np.linalg.norm(P[a] - P[b]))
            far = max(self.cfg.outlier_translation, 4.0 * max(typical, ab / (b - a)))
            if ab <= far and all(np.linalg.norm(P[i] - P[a]) > far and np.linalg.norm(P[i] - P[b]) > far for i in range(a + 1, b)):
                bad.update(range(a + 1, b))
        for i in sorted(bad, reverse=True):
            del self.frames[i]
        self.evicted["outlier"] += len(bad)

    def recheck(self, pose_now: Callable[[Frame], np.ndarray | None]) -> bool:
        """Compare keyframe poses with TF now (pose_now(kf) -> (4, 4) or None when unavailable).
        Returns True when the newest keyframe moved (map correction: the caller resets);
        older keyframes that moved are evicted."""
        lim = self.cfg.reset_jump_translation
        if lim <= 0 or not self.frames:
            return False
        keep = []
        for kf in self.frames:
            T = pose_now(kf)
            moved = T is not None and float(np.linalg.norm(T[:3, 3] - kf.T_wc[:3, 3])) > lim
            if moved and kf is self.newest:
                return True
            if not moved:
                keep.append(kf)
        self.evicted["tf_revised"] += len(self.frames) - len(keep)
        self.frames[:] = keep
        return False

    def correction(self, T_newest_now: np.ndarray) -> float:
        """How far (m) TF now puts the newest keyframe, at its own stamp, from where it was stored."""
        if not self.frames:
            return 0.0
        return float(np.linalg.norm(T_newest_now[:3, 3] - self.newest.T_wc[:3, 3]))

    def jumped(self, T_newest_now: np.ndarray) -> bool:
        return self.cfg.reset_jump_translation > 0 and self.correction(T_newest_now) > self.cfg.reset_jump_translation

    def _best(self, candidates: list[Frame], T_wc_target: np.ndarray, k: int) -> list[Frame]:
        """The k candidates of lowest view penalty w.r.t. the target, in time order."""
        if k >= len(candidates):
            return list(candidates)
        b = self.cfg.optimal_baseline * self.scale()
        pen = [view_penalty(T_wc_target, kf.T_wc, b) for kf in candidates]
        keep = sorted(np.argsort(pen, kind="stable")[:k])
        return [candidates[i] for i in keep]

    def select(self, T_wc_target: np.ndarray, k: int) -> list[Frame]:
        """Up to k source keyframes for a target camera (lowest penalty first), oldest first;
        k <= 0 means max_views."""
        return self._best(self.frames, T_wc_target, self.cfg.max_views if k <= 0 else k)

    def conditioning(self, live: Frame, k: int) -> list[Frame]:
        """Views to predict the live frame's depth from: the live frame itself (the paper's
        target-as-conditioning-view setting) plus up to min(k, max_views) - 1 keyframes of
        lowest penalty w.r.t. the live camera (k <= 0: max_views)."""
        others = [kf for kf in self.frames if kf is not live]
        limit = (self.cfg.max_views if k <= 0 else min(k, self.cfg.max_views)) - 1
        return self._best(others, live.T_wc, max(limit, 0)) + [live]
