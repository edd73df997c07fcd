"""Scene folder format: a plain on-disk posed RGB-D sequence (reader + writer).

    <scene>/
      cameras.yaml          format, shared intrinsics, one entry per frame (see docs/DATA_FORMATS.md)
      rgb/<name>.png|.jpg   8-bit colour
      depth/<name>.png      uint16 millimetres (0 = invalid)   or   depth/<name>.npy float32 metres

cameras.yaml:
    format: mvgd_scene_folder/1
    intrinsics: {fx: .., fy: .., cx: .., cy: .., width: W, height: H}   # default for all frames
    depth_scale: 1000.0                                                  # png units per metre
    frames:
      - {name: "000000", stamp: 0.0, T_wc: [[4 x 4 rows]]}                # camera-to-world, OpenCV optical
      - {name: "000001", stamp: 0.1, pose: {t: [x, y, z], q: [qx, qy, qz, qw]}, K: [fx, fy, cx, cy]}

Per-frame `K` overrides the shared intrinsics; `pose` (translation + ROS-order quaternion) is
an alternative to `T_wc`. Intrinsics refer to the image size stored on disk.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import yaml

from mvgd_core.cameras import make_pose, quat_to_matrix
from mvgd_core.data.types import Frame

FORMAT = "mvgd_scene_folder/1"
META = "cameras.yaml"
_RGB_EXT = (".png", ".jpg", ".jpeg")


def find_scene_folders(path) -> list[Path]:
    """[path] if it is a scene folder, else its immediate sub-folders that are (sorted)."""
    path = Path(path)
    if (path / META).is_file():
        return [path]
    found = sorted(p for p in path.iterdir() if (p / META).is_file()) if path.is_dir() else []
    if not found:
        raise FileNotFoundError(f"{path}: no scene folder here (no {META} in it or in its sub-folders)")
    return found


def read_image_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB from an 8-bit colour or grey image file; FileNotFoundError/ValueError otherwise."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image file missing")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"{path}: cannot decode image")
    if img.dtype != np.uint8:
        raise ValueError(f"{path}: expected an 8-bit colour image, got {img.dtype}")
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2)
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)


def read_depth_png(path: Path, scale: float) -> np.ndarray:
    """(H, W) float32 metres from a single-channel uint16 PNG storing metres * scale."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: depth file missing")
    d = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if d is None:
        raise ValueError(f"{path}: cannot decode depth image")
    if d.dtype != np.uint16 or d.ndim != 2:
        raise ValueError(f"{path}: depth PNG must be single-channel uint16, got {d.dtype} with shape {d.shape}")
    return d.astype(np.float32) / scale


def _frame_pose(entry: dict, where: str) -> np.ndarray:
    if "T_wc" in entry:
        T = np.asarray(entry["T_wc"], dtype=np.float64)
        if T.shape != (4, 4):
            raise ValueError(f"{where}: T_wc must be 4 x 4, got shape {T.shape}")
        return T
    if "pose" in entry:
        p = entry["pose"]
        try:
            return make_pose(quat_to_matrix(p["q"]), np.asarray(p["t"], dtype=np.float64).reshape(3))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where}: pose needs t: [x, y, z] and q: [qx, qy, qz, qw] ({exc})") from exc
    raise ValueError(f"{where}: frame needs T_wc (4 x 4) or pose {{t, q}}")


def _frame_K(entry: dict, shared: dict | None, where: str) -> np.ndarray:
    if "K" in entry:
        fx, fy, cx, cy = (float(x) for x in entry["K"])
    elif shared:
        try:
            fx, fy, cx, cy = (float(shared[k]) for k in ("fx", "fy", "cx", "cy"))
        except KeyError as exc:
            raise ValueError(f"{where}: shared intrinsics lack {exc}") from exc
    else:
        raise ValueError(f"{where}: no K for this frame and no shared `intrinsics`")
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def read_scene_folder(path) -> list[Frame]:
    """All frames of a scene folder, in file order. Raises FileNotFoundError / ValueError naming the file and frame."""
    path = Path(path)
    meta_path = path / META
    if not meta_path.is_file():
        raise FileNotFoundError(f"{path}: not a scene folder ({META} missing)")
    try:
        meta = yaml.safe_load(meta_path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{meta_path}: invalid YAML: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path}: expected `format: {FORMAT}`")
    entries = meta.get("frames") or []
    if not entries:
        raise ValueError(f"{meta_path}: no frames listed")
    shared = meta.get("intrinsics")
    scale = float(meta.get("depth_scale", 1000.0))
    frames = []
    for i, e in enumerate(entries):
        where = f"{meta_path} frames[{i}]"
        if not isinstance(e, dict) or "name" not in e:
            raise ValueError(f"{where}: each frame needs a `name`")
        name = str(e["name"])
        where = f"{where} ({name})"
        rgb_path = next((path / "rgb" / f"{name}{x}" for x in _RGB_EXT if (path / "rgb" / f"{name}{x}").is_file()), None)
        if rgb_path is None:
            raise FileNotFoundError(f"{where}: no rgb/{name}.png or .jpg")
        rgb = read_image_rgb(rgb_path)
        if shared and (shared.get("width"), shared.get("height")) != (None, None) and "K" not in e:
            if (rgb.shape[1], rgb.shape[0]) != (int(shared["width"]), int(shared["height"])):
                raise ValueError(f"{rgb_path}: image is {rgb.shape[1]}x{rgb.shape[0]}, intrinsics are for {shared['width']}x{shared['height']}")
        depth = None
        if (path / "depth" / f"{name}.npy").is_file():
            depth = np.load(path / "depth" / f"{name}.npy").astype(np.float32)
        elif (path / "depth" / f"{name}.png").is_file():
            depth = read_depth_png(path / "depth" / f"{name}.png", scale)
        if depth is not None and depth.shape != rgb.shape[:2]:
            raise ValueError(f"{where}: depth {depth.shape} does not match rgb {rgb.shape[:2]}")
        if depth is not None and not np.isfinite(depth).all():
            raise ValueError(f"{where}: depth contains NaN or Inf (use 0 for invalid)")
        frames.append(Frame(rgb=rgb, K=_frame_K(e, shared, where), T_wc=_frame_pose(e, where), depth=depth, stamp=float(e.get("stamp", i)), frame_id=name))
    return frames


def write_scene_folder(frames: list[Frame], path, depth_format: str = "png", rgb_format: str = "png", depth_scale: float = 1000.0) -> Path:
    """Write frames as a scene folder at `path` (created). Returns the path.

    depth_format "png": uint16 depth * depth_scale (mm by default; values beyond 65535 units
    become 0 = invalid); "npy": exact float32 metres. rgb_format "png" (lossless) or "jpg".
    Intrinsics and poses are written per frame (K as [fx, fy, cx, cy], T_wc as 4 x 4 rows).
    """
    if depth_format not in ("png", "npy") or rgb_format not in ("png", "jpg"):
        raise ValueError(f"write_scene_folder: depth_format must be png|npy and rgb_format png|jpg, got {depth_format}, {rgb_format}")
    if not frames:
        raise ValueError("write_scene_folder: no frames")
    path = Path(path)
    (path / "rgb").mkdir(parents=True, exist_ok=True)
    entries = []
    for i, f in enumerate(frames):
        name = f"{i:06d}"
        cv2.imwrite(str(path / "rgb" / f"{name}.{rgb_format}"), cv2.cvtColor(f.rgb, cv2.COLOR_RGB2BGR))
        if f.depth is not None:
            (path / "depth").mkdir(exist_ok=True)
            if depth_format == "npy":
                np.save(path / "depth" / f"{name}.npy", f.depth.astype(np.float32))
            else:
                d = np.round(f.depth.astype(np.float64) * depth_scale)
                cv2.imwrite(str(path / "depth" / f"{name}.png"), np.where((d > 0) & (d <= 65535), d, 0).astype(np.uint16))
        K = f.K
        entries.append({"name": name, "stamp": float(f.stamp), "K": [float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])], "T_wc": f.T_wc.tolist()})
    meta = {"format": FORMAT, "depth_scale": float(depth_scale), "frames": entries}
    (path / META).write_text(yaml.safe_dump(meta, sort_keys=False, default_flow_style=None))
    return path
