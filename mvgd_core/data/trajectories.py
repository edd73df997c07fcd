"""Robot-like camera trajectories through a `Scene`, kept in free space and looking at something.

Kinds (TRAJECTORY_KINDS):
- "forward": a ground robot driving ahead with slowly varying heading; it turns in place
  when the way ahead is blocked.
- "turn": turning in place (yaw sweep of 60-300 degrees) with a little drift.
- "handheld": a person holding the camera towards a point of interest: small translation
  random walk plus rotational jitter and roll.
- "wide": a sparse wide-baseline rig: cameras all around a point of interest (1-4 m away).

Poses are OpenCV optical camera-to-world (4, 4) float64 in the z-up world (REP 103), built
from a REP 103 body orientation (yaw about z, pitch about y with positive = nose down, roll
about x) and converted once with cameras.optical_pose_from_body_pose.
"""
from __future__ import annotations

import numpy as np
import torch

from mvgd_core.cameras import look_at, optical_pose_from_body_pose, resize_intrinsics
from mvgd_core.data.scenes import Scene, clearance

TRAJECTORY_KINDS = ("forward", "turn", "handheld", "wide")

MARGIN = 0.25  # m: minimum camera clearance to any surface
_PROBE_HW = (12, 16)  # low-res depth probe used to check that views look at something
_MIN_VALID = 0.5  # at least this fraction of probe pixels must hit geometry
_NEAR = 0.2  # m: pixels closer than this count as "staring into a surface"
_MAX_NEAR_FRAC = 0.15


def random_intrinsics(rng: np.random.Generator, height: int, width: int, hfov_deg=(50.0, 90.0)) -> np.ndarray:
    """(3, 3) float64 pinhole K for an image of (height, width): random horizontal FoV, near-square pixels."""
    hfov = np.radians(rng.uniform(*hfov_deg))
    fx = (width / 2) / np.tan(hfov / 2)
    fy = fx * rng.uniform(0.98, 1.02)
    cx = (width - 1) / 2 + rng.uniform(-0.02, 0.02) * width
    cy = (height - 1) / 2 + rng.uniform(-0.02, 0.02) * height
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def pose_from_ypr(position, yaw: float, pitch: float, roll: float = 0.0) -> np.ndarray:
    """Optical camera-to-world (4, 4) from a position and REP 103 body yaw/pitch/roll (radians)."""
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    Rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1.0]])
    Ry = np.array([[cp, 0, sp], [0, 1.0, 0], [-sp, 0, cp]])
    Rx = np.array([[1.0, 0, 0], [0, cr, -sr], [0, sr, cr]])
    T = np.eye(4)
    T[:3, :3] = Rz @ Ry @ Rx
    T[:3, 3] = position
    return optical_pose_from_body_pose(T)


def _in_nav(scene: Scene, p: np.ndarray) -> np.ndarray:
    p = np.atleast_2d(p)
    lo, hi = scene.nav_xy
    return np.all((p[:, :2] >= lo) & (p[:, :2] <= hi), axis=1)


def _free(scene: Scene, p, margin: float = MARGIN) -> np.ndarray:
    """(P,) bool: points inside the navigable area with clearance > margin."""
    p = np.atleast_2d(np.asarray(p, dtype=np.float64))
    return (clearance(scene, p) > margin) & _in_nav(scene, p)


def _sample_free(scene: Scene, rng: np.random.Generator, n: int = 1, tries: int = 64) -> np.ndarray:
    """(n, 3) free positions (batched rejection sampling; best clearance as a last resort)."""
    lo, hi = scene.nav_xy
    out = []
    for _ in range(tries):
        cand = np.concatenate([rng.uniform(lo, hi, (64, 2)), rng.uniform(scene.nav_z[0], scene.nav_z[1], (64, 1))], 1)
        out.extend(cand[_free(scene, cand)])
        if len(out) >= n:
            return np.asarray(out[:n])
    cand = np.concatenate([rng.uniform(lo, hi, (256, 2)), rng.uniform(scene.nav_z[0], scene.nav_z[1], (256, 1))], 1)
    best = cand[np.argsort(-clearance(scene, cand))]
    return np.concatenate([np.asarray(out).reshape(-1, 3), best])[:n]


def _point_of_interest(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    if len(scene.anchors) and rng.random() < 0.8:
        return scene.anchors[rng.integers(len(scene.anchors))] + rng.normal(0, 0.1, 3)
    lo, hi = scene.nav_xy
    return np.array([*rng.uniform(lo, hi), rng.uniform(0.2, 1.0)])


def _forward(scene, rng, n):
    p = _sample_free(scene, rng)[0]
    yaw, pitch = rng.uniform(0, 2 * np.pi), np.radians(rng.uniform(-5, 20))
    speed = rng.uniform(0.05, 0.3)
    yaw_rate, turning = 0.0, 0.0
    poses = []
    for _ in range(n):
        poses.append(pose_from_ypr(p, yaw, pitch, rng.normal(0, np.radians(0.5))))
        heading = np.array([np.cos(yaw), np.sin(yaw), 0.0])
        ahead = p + np.outer([speed, 0.5, 1.0, 1.5], heading)  # look-ahead like a local planner
        if _free(scene, ahead).all():
            turning = 0.0
            yaw_rate = 0.8 * yaw_rate + rng.normal(0, np.radians(2.0))
            p, yaw = p + speed * heading, yaw + yaw_rate
        else:  # obstacle ahead: turn in place towards the freer side until the way is clear
            if turning == 0.0:
                side = [clearance(scene, p + 1.0 * np.array([np.cos(yaw + s), np.sin(yaw + s), 0.0]))[0] for s in (0.8, -0.8)]
                turning = np.radians(rng.uniform(10, 20)) * (1.0 if side[0] >= side[1] else -1.0)
            yaw += turning
    return poses


def _turn(scene, rng, n):
    p = _sample_free(scene, rng)[0]
    yaw0 = rng.uniform(0, 2 * np.pi)
    sweep = np.sign(rng.normal()) * np.radians(rng.uniform(60, 300))
    pitch = np.radians(rng.uniform(-5, 15))
    drift = rng.normal(0, 0.005, 3) * np.array([1, 1, 0.2])
    return [pose_from_ypr(p + k * drift, yaw0 + sweep * k / max(n - 1, 1), pitch, 0.0) for k in range(n)]


def _handheld(scene, rng, n):
    p = _sample_free(scene, rng)[0]
    target = _point_of_interest(scene, rng)
    step = rng.uniform(0.005, 0.03)
    ang = np.zeros(3)
    poses = []
    for _ in range(n):
        d = target - p
        yaw = np.arctan2(d[1], d[0])
        pitch = -np.arctan2(d[2], np.linalg.norm(d[:2]))  # positive pitch looks down
        ang = 0.9 * ang + rng.normal(0, np.radians([1.0, 1.0, 1.5]))
        poses.append(pose_from_ypr(p, yaw + ang[0], pitch + ang[1], ang[2]))
        nxt = p + rng.normal(0, step, 3) * np.array([1, 1, 0.5])
        if _free(scene, nxt)[0]:
            p = nxt
    return poses


def _wide(scene, rng, n):
    target = _point_of_interest(scene, rng)
    pos = []
    for _ in range(200):
        az, dist = rng.uniform(0, 2 * np.pi, 64), rng.uniform(1.0, 4.0, 64)
        z = rng.uniform(scene.nav_z[0], scene.nav_z[1], 64)
        cand = np.stack([target[0] + dist * np.cos(az), target[1] + dist * np.sin(az), z], 1)
        pos.extend(cand[_free(scene, cand)])
        if len(pos) >= n:
            break
    pos = np.asarray(pos[:n]).reshape(-1, 3)
    if len(pos) < n:  # cramped scene: fill with any free positions
        pos = np.concatenate([pos, _sample_free(scene, rng, n - len(pos))])
    order = np.argsort(np.arctan2(pos[:, 1] - target[1], pos[:, 0] - target[0]))  # sweep around the target
    return [look_at(q, target + rng.normal(0, 0.15, 3)) for q in pos[order]]


_GENERATORS = {"forward": _forward, "turn": _turn, "handheld": _handheld, "wide": _wide}


def view_quality(scene: Scene, T_wc: np.ndarray, K: np.ndarray, height: int, width: int) -> np.ndarray:
    """(F,) score per pose: fraction of probe pixels hitting geometry minus a penalty for
    pixels nearer than _NEAR (staring into a wall). A view "looks at something" when
    score passes `_good`."""
    from mvgd_core.data.render import render  # local import: render imports this module

    Kp = resize_intrinsics(torch.as_tensor(K, dtype=torch.float32), (height, width), _PROBE_HW)
    depth = render(scene, Kp, T_wc, *_PROBE_HW).depth.reshape(len(T_wc), -1).numpy()
    valid = (depth > 0).mean(1)
    near = ((depth > 0) & (depth < _NEAR)).mean(1)
    return valid - np.where(near > _MAX_NEAR_FRAC, 1.0, 0.0)


def random_trajectory(
    scene: Scene, rng: np.random.Generator, kind: str, num_frames: int, K: np.ndarray, height: int, width: int, attempts: int = 8
) -> np.ndarray:
    """(num_frames, 4, 4) optical camera-to-world poses of trajectory `kind` through `scene`.

    Every camera centre has clearance > MARGIN where the scene allows it, and every view has
    >= 50% of pixels on geometry and few pixels nearer than 0.2 m; up to `attempts` draws are
    tried and the best one is kept if none passes everywhere.
    """
    if kind not in _GENERATORS:
        raise ValueError(f"unknown trajectory kind {kind!r}; choose from {TRAJECTORY_KINDS}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    best, best_score = None, -np.inf
    for _ in range(attempts):
        T = np.stack(_GENERATORS[kind](scene, rng, num_frames))
        free = clearance(scene, T[:, :3, 3]) > MARGIN * 0.5
        score = float(np.min(view_quality(scene, T, K, height, width) - np.where(free, 0.0, 1.0)))
        if score >= _MIN_VALID:
            return T
        if score > best_score:
            best, best_score = T, score
    return best
