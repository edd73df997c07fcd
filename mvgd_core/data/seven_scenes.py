"""7-Scenes / 3DMatch RGB-D layout reader -> list[Frame].

    <seq>/frame-NNNNNN.color.png|.jpg   8-bit colour
    <seq>/frame-NNNNNN.depth.png        uint16 millimetres (0, and 65535 in 7-Scenes, = invalid)
    <seq>/frame-NNNNNN.pose.txt         4 x 4 camera-to-world, 4 lines of 4 numbers, metres
    <seq>/intrinsics.K.txt              3 x 3 intrinsics of the colour image (3DMatch style;
                                        7-Scenes itself ships none: pass K, e.g. fx = fy = 585,
                                        cx = 320, cy = 240)

This is the layout of Microsoft's 7-Scenes and of 3DMatch's RGB-D sequences, read by e.g.
andyzeng/tsdf-fusion (`fusion.py`/`demo.py`: `np.loadtxt("frame-%06d.pose.txt")` used as
camera-to-world, depth `/ 1000`, 65535 set to 0). Poses are OpenCV optical (x right, y down,
z forward), so they are used as T_wc unchanged. Frames are ordered by their number NNNNNN
(numbers may skip, e.g. every other frame); the stamp is that number * `period_s` (the
layout has no timestamps). Depth is assumed registered to colour (true for 3DMatch and the
tabletop sample; raw 7-Scenes depth is not registered and is read as stored).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from mvgd_core.cameras import validate_intrinsics, validate_pose
from mvgd_core.data.scene_folder import read_depth_png, read_image_rgb
from mvgd_core.data.types import Frame

K_FILE = "intrinsics.K.txt"
DEPTH_SCALE = 1000.0  # png units per metre (millimetres)
INVALID_DEPTH_RAW = 65535  # 7-Scenes' "no reading" value, read as 0
_NAME = re.compile(r"^frame-(\d+)\.color\.(png|jpg|jpeg)$")


def read_matrix_file(path: Path, shape: tuple[int, int], what: str) -> np.ndarray:
    """A whitespace-separated numeric matrix of `shape` from a text file; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} file missing")
    try:
        m = np.array([[float(x) for x in ln.split()] for ln in path.read_text().splitlines() if ln.strip()], dtype=np.float64)
    except ValueError as exc:  # non-numeric token or ragged rows
        raise ValueError(f"{path}: {what} must be {shape[0]} lines of {shape[1]} numbers ({exc})") from exc
    if m.shape != shape:
        raise ValueError(f"{path}: {what} must be {shape[0]} x {shape[1]} numbers, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError(f"{path}: {what} contains NaN or Inf")
    return m


def check_intrinsics(K: np.ndarray, where: str) -> np.ndarray:
    """K (3, 3) validated (finite, positive focal lengths, last row [0, 0, 1]); errors name `where`."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"{where}: intrinsics must be 3 x 3, got shape {K.shape}")
    try:
        validate_intrinsics(K)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    if not np.allclose(K[2], [0.0, 0.0, 1.0]):
        raise ValueError(f"{where}: last row of K must be [0, 0, 1], got {K[2].tolist()}")
    return K


def check_pose(T: np.ndarray, where: str) -> np.ndarray:
    """T (4, 4) validated as a rigid camera-to-world transform; errors name `where`."""
    try:
        validate_pose(T)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    return T


def read_depth_mm(path: Path, rgb_hw: tuple[int, int], rgb_path: Path, scale: float = DEPTH_SCALE) -> np.ndarray:
    """(H, W) float32 metres from a uint16 PNG (65535 -> 0 = invalid), checked against the colour size."""
    raw = read_depth_png(path, 1.0)
    if raw.shape != tuple(rgb_hw):
        raise ValueError(f"{path}: depth {raw.shape} does not match colour {rgb_path} {tuple(rgb_hw)}")
    raw[raw >= INVALID_DEPTH_RAW] = 0.0
    return raw / np.float32(scale)


def list_seven_scenes(path) -> list[tuple[int, Path]]:
    """(frame number, colour path) of every frame-NNNNNN.color.* in `path`, sorted by number."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: 7-Scenes sequence folder missing")
    found = sorted((int(m.group(1)), p) for p in path.iterdir() if (m := _NAME.match(p.name)))
    if not found:
        raise FileNotFoundError(f"{path}: no frame-NNNNNN.color.png|jpg files")
    nums = [n for n, _ in found]
    if len(set(nums)) != len(nums):
        dup = sorted({n for n in nums if nums.count(n) > 1})[0]
        raise ValueError(f"{path}: frame-{dup:06d} has more than one colour file (png and jpg)")
    return found


def read_seven_scenes(path, stride: int = 1, max_frames: int = 0, indices=None, K=None, depth_scale: float = DEPTH_SCALE, period_s: float = 1.0 / 30.0) -> list[Frame]:
    """Frames of a 7-Scenes / 3DMatch sequence folder, sorted by frame number.

    indices: positions in the full sorted sequence to read (e.g. a split), applied first; then
    every stride-th of those, then at most max_frames (0 = all).
    K: (3, 3) intrinsics for a folder without intrinsics.K.txt (7-Scenes proper); passing K
    when the file exists is refused, so the wrong camera is never used silently.
    depth_scale: png units per metre. period_s: stamp = frame number * period_s.
    Every listed frame needs its .depth.png and .pose.txt; a missing or malformed file raises
    FileNotFoundError / ValueError naming it. frame_id = "frame-NNNNNN".
    """
    path = Path(path)
    if stride < 1 or max_frames < 0:
        raise ValueError(f"read_seven_scenes: stride must be >= 1 and max_frames >= 0, got {stride}, {max_frames}")
    found = list_seven_scenes(path)
    k_path = path / K_FILE
    if K is not None and k_path.is_file():
        raise ValueError(f"{k_path}: the folder has intrinsics; do not also pass K")
    K = check_intrinsics(K, "read_seven_scenes(K=...)") if K is not None else check_intrinsics(read_matrix_file(k_path, (3, 3), "intrinsics"), str(k_path))
    if indices is not None:
        sel = np.asarray(indices, dtype=np.int64).reshape(-1)
        if sel.size and (sel.min() < 0 or sel.max() >= len(found)):
            raise ValueError(f"read_seven_scenes: indices must be in [0, {len(found)}), got {sel.min()}..{sel.max()}")
        found = [found[i] for i in sel.tolist()]
    found = found[::stride]
    if max_frames:
        found = found[:max_frames]
    frames = []
    for num, rgb_path in found:
        stem = f"frame-{num:06d}"
        T = check_pose(read_matrix_file(path / f"{stem}.pose.txt", (4, 4), "pose"), str(path / f"{stem}.pose.txt"))
        rgb = read_image_rgb(rgb_path)
        depth = read_depth_mm(path / f"{stem}.depth.png", rgb.shape[:2], rgb_path, depth_scale)
        frames.append(Frame(rgb=rgb, K=K, T_wc=T, depth=depth, stamp=num * period_s, frame_id=stem))
    return frames


def write_seven_scenes(frames: list[Frame], path, numbers=None, depth_scale: float = DEPTH_SCALE) -> Path:
    """Write frames in this layout (tests, conversions): png colour, uint16 depth, 4 x 4 poses.

    numbers: frame numbers (default 0, 1, ...). Intrinsics are taken from the first frame.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    import cv2

    numbers = list(range(len(frames))) if numbers is None else list(numbers)
    np.savetxt(path / K_FILE, frames[0].K)
    for n, f in zip(numbers, frames):
        stem = path / f"frame-{n:06d}"
        cv2.imwrite(f"{stem}.color.png", cv2.cvtColor(f.rgb, cv2.COLOR_RGB2BGR))
        d = np.round(np.nan_to_num(f.depth, nan=0.0).astype(np.float64) * depth_scale) if f.depth is not None else np.zeros(f.rgb.shape[:2])
        cv2.imwrite(f"{stem}.depth.png", np.where((d > 0) & (d < INVALID_DEPTH_RAW), d, 0).astype(np.uint16))
        np.savetxt(f"{stem}.pose.txt", f.T_wc)
    return path
