"""DeepVideoMVS sample-sequence layout reader -> list[Frame].

    <seq>/images/NNNNN.png     8-bit colour, one per frame
    <seq>/depth/NNNNN.png      uint16 millimetres, 0 = invalid, same names and size as images/
    <seq>/poses.txt            one camera-to-world 4 x 4 per line (16 numbers, row-major, metres);
                               line k belongs to the k-th image in sorted file-name order
    <seq>/K.txt                3 x 3 intrinsics of the stored images
    <seq>/keyframes/nmeas_{1,2,3}.txt   optional: "reference measurement..." image names per line

This is how ardaduz/deep-video-mvs stores its sample sequences (its loader reads poses with
`np.loadtxt(...).reshape(-1, 4, 4)` and depth `/ 1000`). Poses are OpenCV optical, used as T_wc
unchanged. There are no timestamps: frame k (sorted order) gets stamp k * `period_s` (a nominal
rate; the frames are consecutive video frames). frame_id is the image stem ("00003").
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mvgd_core.data.scene_folder import read_image_rgb
from mvgd_core.data.seven_scenes import check_intrinsics, check_pose, read_depth_mm, read_matrix_file
from mvgd_core.data.types import Frame

_IMG_EXT = (".png", ".jpg", ".jpeg")


def read_poses_file(path: Path) -> np.ndarray:
    """(N, 4, 4) float64 camera-to-world poses, one 16-number line each; errors name file:line."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: poses file missing")
    poses = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            vals = [float(x) for x in line.split()]
        except ValueError as exc:
            raise ValueError(f"{path}:{n}: pose line must be 16 numbers ({exc})") from exc
        if len(vals) != 16:
            raise ValueError(f"{path}:{n}: pose line must be 16 numbers (a row-major 4 x 4), got {len(vals)}")
        poses.append(check_pose(np.array(vals, dtype=np.float64).reshape(4, 4), f"{path}:{n}"))
    if not poses:
        raise ValueError(f"{path}: no poses")
    return np.stack(poses)


def list_images(path: Path) -> list[Path]:
    """Colour images of a DeepVideoMVS sequence, sorted by file name."""
    img_dir = path / "images"
    if not img_dir.is_dir():
        raise FileNotFoundError(f"{img_dir}: images folder missing (DeepVideoMVS layout: images/, depth/, poses.txt, K.txt)")
    imgs = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in _IMG_EXT)
    if not imgs:
        raise FileNotFoundError(f"{img_dir}: no .png/.jpg images")
    return imgs


def read_deepvideomvs(path, stride: int = 1, max_frames: int = 0, indices=None, with_depth: bool = True, period_s: float = 0.1) -> list[Frame]:
    """Frames of a DeepVideoMVS sequence folder in sorted file order.

    indices: positions in the full sorted sequence to read (e.g. a split from
    mvgd_core.data.splits), applied first; then every stride-th of those, then at most max_frames
    (0 = all). Only the selected images are decoded, but poses.txt, K.txt and the image/depth
    listing are always checked in full: a count mismatch, missing depth file, malformed pose
    line or wrong K shape raises FileNotFoundError / ValueError naming the file.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: DeepVideoMVS sequence folder missing")
    if stride < 1 or max_frames < 0:
        raise ValueError(f"read_deepvideomvs: stride must be >= 1 and max_frames >= 0, got {stride}, {max_frames}")
    imgs = list_images(path)
    poses = read_poses_file(path / "poses.txt")
    if len(poses) != len(imgs):
        raise ValueError(f"{path / 'poses.txt'}: {len(poses)} poses for {len(imgs)} images in {path / 'images'} (one pose line per image)")
    K = check_intrinsics(read_matrix_file(path / "K.txt", (3, 3), "intrinsics"), str(path / "K.txt"))
    if with_depth:
        missing = [p.stem for p in imgs if not (path / "depth" / f"{p.stem}.png").is_file()]
        if missing:
            raise FileNotFoundError(f"{path / 'depth'}: no depth png for {len(missing)} images, e.g. {missing[0]}.png")
    sel = np.arange(len(imgs)) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
    if sel.size and (sel.min() < 0 or sel.max() >= len(imgs)):
        raise ValueError(f"read_deepvideomvs: indices must be in [0, {len(imgs)}), got {sel.min()}..{sel.max()}")
    sel = sel[::stride]
    if max_frames:
        sel = sel[:max_frames]
    frames = []
    for k in sel.tolist():
        rgb = read_image_rgb(imgs[k])
        depth = read_depth_mm(path / "depth" / f"{imgs[k].stem}.png", rgb.shape[:2], imgs[k]) if with_depth else None
        frames.append(Frame(rgb=rgb, K=K, T_wc=poses[k], depth=depth, stamp=k * period_s, frame_id=imgs[k].stem))
    return frames


def read_keyframes(path, nmeas: int = 2) -> list[tuple[str, list[str]]]:
    """DeepVideoMVS's keyframe choice: [(reference stem, [measurement stems])] from keyframes/nmeas_{nmeas}.txt."""
    f = Path(path) / "keyframes" / f"nmeas_{nmeas}.txt"
    if not f.is_file():
        raise FileNotFoundError(f"{f}: keyframe file missing")
    out = []
    for n, line in enumerate(f.read_text().splitlines(), 1):
        names = [Path(x).stem for x in line.split()]
        if not names:
            continue
        if len(names) < 2:
            raise ValueError(f"{f}:{n}: need a reference and at least one measurement frame, got {line!r}")
        out.append((names[0], names[1:]))
    return out


def write_deepvideomvs(frames: list[Frame], path, jpeg_quality: int = 0) -> Path:
    """Write frames in this layout (tests, conversions); intrinsics from the first frame.

    jpeg_quality: 0 writes colour as PNG (lossless), 1-100 as JPEG of that quality (compact
    copies, e.g. training/gpu_kit.py)."""
    import cv2

    path = Path(path)
    (path / "images").mkdir(parents=True, exist_ok=True)
    (path / "depth").mkdir(exist_ok=True)
    ext, flags = (".jpg", [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]) if jpeg_quality else (".png", [])
    for k, f in enumerate(frames):
        cv2.imwrite(str(path / "images" / f"{k:05d}{ext}"), cv2.cvtColor(f.rgb, cv2.COLOR_RGB2BGR), flags)
        d = np.round(np.nan_to_num(f.depth, nan=0.0).astype(np.float64) * 1000.0) if f.depth is not None else np.zeros(f.rgb.shape[:2])
        cv2.imwrite(str(path / "depth" / f"{k:05d}.png"), np.where((d > 0) & (d < 65535), d, 0).astype(np.uint16),
                    [cv2.IMWRITE_PNG_COMPRESSION, 9])
    np.savetxt(path / "poses.txt", np.stack([f.T_wc.reshape(16) for f in frames]))
    np.savetxt(path / "K.txt", frames[0].K)
    return path
