"""The sliding conditioning set: which posed frames the model conditions on (no ROS here).

Policy (all poses camera-to-world, optical, in the node's fixed frame):
- Add a frame when no keyframe is close to it in both position and orientation, i.e. for every
  keyframe it moved >= `min_translation` m or turned >= `min_rotation_deg`; or when
  `max_age_s` passed since the newest keyframe (a parked robot still refreshes its view of a
  changing scene); the first frame is always added.
- Keep at most `max_views`: when over, drop the older frame of the closest pair (distance
  below), so the set stays spread out, and among equally spaced frames the oldest goes - a
  camera moving steadily gets a sliding window.
- Distance between two poses, in units of the thresholds:
  d = |t_a - t_b| / min_translation + angle(R_a, R_b) / min_rotation_deg.
  `select` ranks keyframes for a target camera by the same distance (nearest = most overlap:
  close and looking the same way) and keeps the top k.
- Reset (empty the set) on request, when stamps go backwards (a bag restarted), or when TF
  re-resolves the newest keyframe's pose, at its own stamp, more than
  `reset_jump_translation` m away from where it was (a map correction: old poses would no
  longer agree with new ones).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mvgd_core.data.types import Frame


@dataclass(frozen=True)
class KeyframeConfig:
    min_translation: float = 0.2  # m
    min_rotation_deg: float = 15.0  # degrees
    max_age_s: float = 5.0  # s; <= 0 disables age-based keyframes
    max_views: int = 4
    reset_jump_translation: float = 0.5  # m; <= 0 disables the TF-jump reset

    def __post_init__(self):
        if self.min_translation <= 0 or self.min_rotation_deg <= 0:
            raise ValueError("min_translation and min_rotation_deg must be positive")
        if self.max_views < 1:
            raise ValueError(f"max_views must be >= 1, got {self.max_views}")


def rotation_angle_deg(Ra: np.ndarray, Rb: np.ndarray) -> float:
    """Angle (degrees) of the relative rotation Ra^T Rb."""
    cos = (np.trace(Ra.T @ Rb) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def pose_distance(Ta: np.ndarray, Tb: np.ndarray, cfg: KeyframeConfig) -> tuple[float, float, float]:
    """(translation m, rotation deg, normalized distance d) between two (4, 4) poses."""
    dt = float(np.linalg.norm(Ta[:3, 3] - Tb[:3, 3]))
    dr = rotation_angle_deg(Ta[:3, :3], Tb[:3, :3])
    return dt, dr, dt / cfg.min_translation + dr / cfg.min_rotation_deg


@dataclass
class KeyframeSet:
    cfg: KeyframeConfig = field(default_factory=KeyframeConfig)
    frames: list[Frame] = field(default_factory=list)  # oldest first

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def newest(self) -> Frame | None:
        return self.frames[-1] if self.frames else None

    def reset(self) -> None:
        self.frames.clear()

    def reason_to_add(self, frame: Frame) -> str | None:
        """Why `frame` would become a keyframe ('first', 'novel', 'age'), or None."""
        if not self.frames:
            return "first"
        if all(self._novel_wrt(frame, kf) for kf in self.frames):
            return "novel"
        if self.cfg.max_age_s > 0 and frame.stamp - self.newest.stamp >= self.cfg.max_age_s:
            return "age"
        return None

    def _novel_wrt(self, frame: Frame, kf: Frame) -> bool:
        dt, dr, _ = pose_distance(frame.T_wc, kf.T_wc, self.cfg)
        return dt >= self.cfg.min_translation or dr >= self.cfg.min_rotation_deg

    def add(self, frame: Frame) -> tuple[str | None, str | None]:
        """Offer a frame. Returns (why it was added or None, why the set was reset first or None)."""
        reset = None
        if self.frames and frame.stamp < self.newest.stamp:
            self.reset()
            reset = "time_backwards"
        reason = self.reason_to_add(frame)
        if reason is not None:
            self.frames.append(frame)
            while len(self.frames) > self.cfg.max_views:
                del self.frames[self._most_redundant()]
        return reason, reset

    def _most_redundant(self) -> int:
        """Index of the older frame of the closest pair; ties go to the oldest such frame."""
        best = None
        for i in range(len(self.frames)):
            for j in range(i + 1, len(self.frames)):
                d = pose_distance(self.frames[i].T_wc, self.frames[j].T_wc, self.cfg)[2]
                key = (round(d, 9), i)
                if best is None or key < best:
                    best = key
        return best[1]

    def correction(self, T_newest_now: np.ndarray) -> float:
        """How far (m) TF now puts the newest keyframe, at its own stamp, from where it was stored."""
        if not self.frames:
            return 0.0
        return float(np.linalg.norm(T_newest_now[:3, 3] - self.newest.T_wc[:3, 3]))

    def jumped(self, T_newest_now: np.ndarray) -> bool:
        return self.cfg.reset_jump_translation > 0 and self.correction(T_newest_now) > self.cfg.reset_jump_translation

    def select(self, T_wc_target: np.ndarray, k: int) -> list[Frame]:
        """The k keyframes nearest the target camera (normalized distance), oldest first; all if k <= 0."""
        if k <= 0 or k >= len(self.frames):
            return list(self.frames)
        d = [pose_distance(kf.T_wc, T_wc_target, self.cfg)[2] for kf in self.frames]
        keep = sorted(np.argsort(d, kind="stable")[:k])
        return [self.frames[i] for i in keep]

    def conditioning(self, live: Frame, k: int) -> list[Frame]:
        """Views to predict the live frame's depth from: the live frame itself (the paper's
        target-as-conditioning-view setting) plus up to max_views - 1 others, nearest first
        when `k` limits them."""
        others = [kf for kf in self.frames if kf is not live]
        limit = self.cfg.max_views - 1 if k <= 0 else min(k, self.cfg.max_views) - 1
        if limit < len(others):
            d = [pose_distance(kf.T_wc, live.T_wc, self.cfg)[2] for kf in others]
            others = [others[i] for i in sorted(np.argsort(d, kind="stable")[:limit])]
        return others + [live]
