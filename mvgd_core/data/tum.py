"""TUM RGB-D benchmark format reader -> list[Frame].

    <seq>/rgb.txt           "stamp rgb/<stamp>.png" lines ('#' comments)
    <seq>/depth.txt         "stamp depth/<stamp>.png"   (uint16, metres = value / 5000)
    <seq>/groundtruth.txt   "stamp tx ty tz qx qy qz qw" (100 Hz motion capture)
    <seq>/associations*.txt optional "rgb_stamp rgb_path depth_stamp depth_path"

Conventions: TUM ground truth is the pose of the colour camera's optical centre in the
motion-capture world, with camera axes x right, y down, z forward -- already OpenCV
optical, so it is used as T_wc directly (no body->optical change). Depth is registered to
colour. Poses are interpolated from ground truth at each rgb stamp (lerp + slerp).

Intrinsics: the published per-camera values for 640x480. When the stored images are smaller
(e.g. a downscaled copy) the intrinsics are rescaled to the stored size with
cameras.resize_intrinsics. The images are stored with lens distortion (fr1: ~6 % radial at the
corners, 1-4 px at 96x128, as large as the parallax the matching measures); by default they are
undistorted into the same pinhole K with the published coefficients (depth, registered to
colour, with the same map, nearest), so every pinhole-model consumer sees pinhole images.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from mvgd_core.cameras import interpolate_pose, make_pose, quat_to_matrix, resize_intrinsics
from mvgd_core.data.scene_folder import read_depth_png, read_image_rgb
from mvgd_core.data.types import Frame
from mvgd_core.distortion import LensDistortion, rectify_map, remap_rgbd

log = logging.getLogger(__name__)

# fx, fy, cx, cy at 640 x 480 (TUM RGB-D "file formats" page, ROS default calibration for fr3).
TUM_INTRINSICS = {
    "fr1": (517.3, 516.5, 318.6, 255.3),
    "fr2": (520.9, 521.0, 325.1, 249.7),
    "fr3": (535.4, 539.2, 320.1, 247.6),
}
# k1 k2 p1 p2 k3 (plumb_bob), same page; fr3's images are already undistorted.
TUM_DISTORTION = {
    "fr1": (0.2624, -0.9531, -0.0054, 0.0026, 1.1633),
    "fr2": (0.2312, -0.7849, -0.0033, -0.0001, 0.9172),
    "fr3": (0.0, 0.0, 0.0, 0.0, 0.0),
}
TUM_HW = (480, 640)
DEPTH_SCALE = 5000.0


def read_stamped_list(path: Path, min_cols: int) -> list[list[str]]:
    """Rows of a whitespace-separated TUM text file (comments and blank lines dropped)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file missing")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        cols = line.split()
        if len(cols) < min_cols:
            raise ValueError(f"{path}:{n}: expected at least {min_cols} columns, got {len(cols)}: {line!r}")
        try:
            float(cols[0])
        except ValueError as exc:
            raise ValueError(f"{path}:{n}: first column must be a timestamp, got {cols[0]!r}") from exc
        rows.append(cols)
    return rows


def associate(stamps_a: np.ndarray, stamps_b: np.ndarray, max_dt: float = 0.02) -> list[tuple[int, int]]:
    """One-to-one pairs (i, j) with |a_i - b_j| <= max_dt, closest pairs first (like TUM's associate.py).

    Returns pairs sorted by a's index.
    """
    a, b = np.asarray(stamps_a, dtype=np.float64), np.asarray(stamps_b, dtype=np.float64)
    if len(a) == 0 or len(b) == 0:
        return []
    order = np.argsort(b)
    bs = b[order]
    cand = []
    lo, hi = np.searchsorted(bs, a - max_dt, "left"), np.searchsorted(bs, a + max_dt, "right")
    for i, t in enumerate(a):  # candidates: every b within the tolerance window
        for kk in range(lo[i], hi[i]):
            cand.append((abs(bs[kk] - t), i, int(order[kk])))
    used_a, used_b, pairs = set(), set(), []
    for _, i, j in sorted(cand):
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            pairs.append((i, j))
    return sorted(pairs)


class GroundTruth:
    """Ground-truth trajectory interpolated at arbitrary stamps; gaps longer than max_gap are refused."""

    def __init__(self, rows: list[list[str]], where: str, max_gap: float = 0.1):
        data = np.array([[float(x) for x in r[:8]] for r in rows], dtype=np.float64)
        if len(data) < 2:
            raise ValueError(f"{where}: need at least 2 ground-truth poses, got {len(data)}")
        if not np.isfinite(data).all():
            bad = int(np.flatnonzero(~np.isfinite(data).all(1))[0])
            raise ValueError(f"{where}: non-finite pose at stamp {data[bad, 0]}")
        data = data[np.argsort(data[:, 0])]
        self.stamps, self.t, self.q = data[:, 0], data[:, 1:4], data[:, 4:8]
        self.max_gap = max_gap

    def pose_at(self, stamp: float) -> np.ndarray | None:
        """(4, 4) T_wc at stamp, or None outside the trajectory or across a gap > max_gap."""
        s = self.stamps
        if stamp < s[0] or stamp > s[-1]:
            return None
        k = int(np.searchsorted(s, stamp))
        if s[k] == stamp:
            return make_pose(quat_to_matrix(self.q[k]), self.t[k])
        if s[k] - s[k - 1] > self.max_gap:
            return None
        T0, T1 = make_pose(quat_to_matrix(self.q[k - 1]), self.t[k - 1]), make_pose(quat_to_matrix(self.q[k]), self.t[k])
        return interpolate_pose(T0, T1, (stamp - s[k - 1]) / (s[k] - s[k - 1]))


def tum_intrinsics(camera, hw: tuple[int, int]) -> np.ndarray:
    """(3, 3) K for "fr1"|"fr2"|"fr3" (rescaled from 640x480 to hw) or a given (3, 3) / [fx, fy, cx, cy] at hw."""
    if isinstance(camera, str):
        if camera not in TUM_INTRINSICS:
            raise ValueError(f"unknown TUM camera {camera!r}; use one of {sorted(TUM_INTRINSICS)} or pass K")
        fx, fy, cx, cy = TUM_INTRINSICS[camera]
        K = torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float64)  # float64: no rounding
        return resize_intrinsics(K, TUM_HW, hw).numpy()
    K = np.asarray(camera, dtype=np.float64)
    if K.shape == (4,):
        K = np.array([[K[0], 0, K[2]], [0, K[1], K[3]], [0, 0, 1.0]])
    if K.shape != (3, 3):
        raise ValueError(f"camera intrinsics must be 'fr1'|'fr2'|'fr3', a 3x3 K or [fx, fy, cx, cy]; got shape {K.shape}")
    return K


def _rgb_depth_pairs(path: Path, associations: str | None, with_depth: bool, max_dt: float) -> tuple[list, int]:
    """([(rgb stamp, rgb file, depth stamp | None, depth file | None)], rgb rows left without a depth
    partner): from the `associations` file, or rgb.txt and depth.txt associated within max_dt s."""
    if associations:
        rows = read_stamped_list(path / associations, 4)
        return [(float(r[0]), r[1], float(r[2]), r[3]) for r in rows], 0
    rgb_rows = read_stamped_list(path / "rgb.txt", 2)
    if not with_depth:
        return [(float(r[0]), r[1], None, None) for r in rgb_rows], 0
    depth_rows = read_stamped_list(path / "depth.txt", 2)
    m = associate([float(r[0]) for r in rgb_rows], [float(r[0]) for r in depth_rows], max_dt)
    pairs = [(float(rgb_rows[i][0]), rgb_rows[i][1], float(depth_rows[j][0]), depth_rows[j][1]) for i, j in m]
    return pairs, len(rgb_rows) - len(pairs)


def read_tum(
    path,
    camera="fr1",
    max_dt: float = 0.02,
    depth_scale: float = DEPTH_SCALE,
    associations: str | None = None,
    with_depth: bool = True,
    report: dict | None = None,
    undistort: bool = True,
) -> list[Frame]:
    """Frames of a TUM RGB-D sequence folder, sorted by rgb stamp.

    camera: "fr1" | "fr2" | "fr3" or user K (3, 3) / [fx, fy, cx, cy] for the stored image size.
    max_dt: rgb-depth association tolerance (s). associations: file name inside `path` with
    precomputed pairs (else rgb.txt and depth.txt are associated here).
    Listed frames whose image files are absent, that have no depth partner, or no ground-truth
    pose at their stamp are skipped and counted (logged, and written into `report` if given:
    keys listed, missing_files, unassociated, no_pose, read). Raises ValueError when nothing
    usable remains, naming the counts. undistort: remove the camera's published lens distortion
    (named cameras only; a user K is taken as pinhole).
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: TUM sequence folder missing")
    gt = GroundTruth(read_stamped_list(path / "groundtruth.txt", 8), str(path / "groundtruth.txt"))
    pairs, unassociated = _rgb_depth_pairs(path, associations, with_depth, max_dt)
    stats = {"listed": len(pairs) + unassociated, "missing_files": 0, "unassociated": unassociated, "no_pose": 0, "read": 0}
    frames, K, hw = [], None, None
    for rgb_stamp, rgb_rel, depth_stamp, depth_rel in sorted(pairs, key=lambda p: p[0]):
        if not (path / rgb_rel).is_file() or (with_depth and depth_rel and not (path / depth_rel).is_file()):
            stats["missing_files"] += 1
            continue
        T = gt.pose_at(rgb_stamp)
        if T is None:
            stats["no_pose"] += 1
            continue
        rgb = read_image_rgb(path / rgb_rel)
        depth = read_depth_png(path / depth_rel, depth_scale) if with_depth and depth_rel else None
        if depth is not None and depth.shape != rgb.shape[:2]:
            raise ValueError(f"{path / depth_rel}: depth {depth.shape} does not match rgb {path / rgb_rel} {rgb.shape[:2]}")
        if hw is None:
            hw = rgb.shape[:2]
            K = tum_intrinsics(camera, hw)
        elif rgb.shape[:2] != hw:
            raise ValueError(f"{path / rgb_rel}: image size {rgb.shape[:2]} differs from the sequence's {hw}")
        frames.append(Frame(rgb=rgb, K=K, T_wc=T, depth=depth, stamp=rgb_stamp, frame_id=Path(rgb_rel).stem))
    stats["read"] = len(frames)
    if undistort and isinstance(camera, str) and frames:
        _undistort_frames(frames, LensDistortion("plumb_bob", TUM_DISTORTION[camera]))
    if report is not None:
        report.update(stats)
    skipped = stats["missing_files"] + stats["unassociated"] + stats["no_pose"]
    if skipped:
        log.info("%s: read %d frames; skipped %d missing files, %d unassociated (> %.3f s), %d without ground truth",
                 path, len(frames), stats["missing_files"], stats["unassociated"], max_dt, stats["no_pose"])
    if not frames:
        raise ValueError(f"{path}: no usable frames ({stats})")
    return frames


def _undistort_frames(frames: list[Frame], lens: LensDistortion) -> None:
    """In place: every frame's rgb and depth undistorted into its own K (one map for the sequence)."""
    if lens.is_identity:
        return
    pixel_map = rectify_map(frames[0].K, lens, frames[0].rgb.shape[:2])
    for f in frames:
        f.rgb, f.depth = remap_rgbd(f.rgb, f.depth, pixel_map)


def downscale_tum_copy(src, dst, hw: tuple[int, int] = (240, 320), jpeg_quality: int = 93, extra_files=("associations_every12.txt",)) -> dict:
    """Copy the frames present in TUM folder `src` to `dst`, downscaled to hw = (H, W).

    RGB is written as JPEG (cv2.INTER_AREA) and rgb.txt / association files are rewritten with
    .jpg names (every listed line kept, so frames absent from `src` stay listed and absent);
    depth stays 16-bit PNG at the same 1/5000 m scale, downscaled nearest-neighbour (no mixed
    depths). groundtruth.txt and depth.txt are copied unchanged; intrinsics follow from
    tum_intrinsics at read time. Returns counts {"rgb": n, "depth": m}.
    """
    import shutil

    import cv2

    src, dst = Path(src), Path(dst)
    (dst / "rgb").mkdir(parents=True, exist_ok=True)
    (dst / "depth").mkdir(parents=True, exist_ok=True)
    H, W = hw
    counts = {"rgb": 0, "depth": 0}
    for f in sorted((src / "rgb").glob("*.png")):
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        cv2.imwrite(str(dst / "rgb" / f"{f.stem}.jpg"), cv2.resize(img, (W, H), interpolation=cv2.INTER_AREA), [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        counts["rgb"] += 1
    for f in sorted((src / "depth").glob("*.png")):
        d = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(dst / "depth" / f.name), cv2.resize(d, (W, H), interpolation=cv2.INTER_NEAREST), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        counts["depth"] += 1
    for name in ("groundtruth.txt", "depth.txt"):
        shutil.copyfile(src / name, dst / name)
    for name in ("rgb.txt", *extra_files):
        if (src / name).is_file():
            lines = (src / name).read_text().splitlines()
            (dst / name).write_text("\n".join(ln if ln.startswith("#") else ln.replace(".png", ".jpg", 1) for ln in lines) + "\n")
    return counts
