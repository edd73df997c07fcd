"""DeepVideoMVS and 7-Scenes readers: round trips on tiny synthetic folders, the pose/depth
convention checked by reprojection, bad input, the fixed split; and a check on the real
sequences when ../shared/data is present (skipped in a fresh clone)."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mvgd_core.cameras import invert_pose, project_points, unproject_depth
from mvgd_core.data.deepvideomvs import read_deepvideomvs, read_keyframes, write_deepvideomvs
from mvgd_core.data.render import render_sequence
from mvgd_core.data.seven_scenes import read_seven_scenes, write_seven_scenes
from mvgd_core.data.splits import HOLOLENS_NUM_FRAMES, hololens_split, split_indices, tabletop_split
from mvgd_core.data.types import Frame

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def frames():
    return render_sequence(3, 4, 24, 32, trajectory="forward")  # translating: real parallax


def reprojection_agreement(a: Frame, b: Frame) -> tuple[float, int]:
    """(median |d_b(reprojected) - z| / z, pixels compared): a's depth into b, against b's depth."""
    pts = unproject_depth(torch.from_numpy(a.depth).double(), torch.from_numpy(a.K), torch.from_numpy(a.T_wc))
    ok_a = torch.from_numpy(a.depth > 0).reshape(-1)
    uv, z = project_points(pts.reshape(-1, 3), torch.from_numpy(b.K), torch.from_numpy(b.T_wc))
    u, v = uv[:, 0].round().long(), uv[:, 1].round().long()
    ok = ok_a & (z > 0) & (u >= 0) & (u < b.width) & (v >= 0) & (v < b.height)
    db = torch.from_numpy(b.depth).double()[v[ok], u[ok]]
    zz = z[ok]
    keep = db > 0
    rel = ((db[keep] - zz[keep]).abs() / zz[keep]).numpy()
    return float(np.median(rel)) if rel.size else float("nan"), int(rel.size)


def _check_same(a: list[Frame], b: list[Frame]):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert np.array_equal(x.rgb, y.rgb)
        np.testing.assert_allclose(y.K, x.K, rtol=1e-12)
        np.testing.assert_allclose(y.T_wc, x.T_wc, atol=1e-12)
        d = np.where(x.depth < 65.535, x.depth, 0)
        assert np.abs(d - y.depth).max() <= 0.0005 + 1e-6  # millimetre PNGs


# --------------------------------------------------------------------------- formats


def test_deepvideomvs_round_trip_order_and_selection(tmp_path, frames):
    write_deepvideomvs(frames, tmp_path)
    back = read_deepvideomvs(tmp_path)
    _check_same(frames, back)
    assert [f.frame_id for f in back] == ["00000", "00001", "00002", "00003"]
    assert [f.stamp for f in back] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    # indices first, then stride, then max_frames: all positions in the full sorted sequence
    sel = read_deepvideomvs(tmp_path, indices=[1, 2, 3], stride=2, max_frames=1)
    assert [f.frame_id for f in sel] == ["00001"]
    assert [f.frame_id for f in read_deepvideomvs(tmp_path, stride=3)] == ["00000", "00003"]


def test_seven_scenes_round_trip_numbers_and_invalid_depth(tmp_path, frames):
    write_seven_scenes(frames, tmp_path, numbers=[15, 17, 19, 113])
    raw = cv2.imread(str(tmp_path / "frame-000017.depth.png"), cv2.IMREAD_UNCHANGED)
    raw[0, 0] = 65535  # 7-Scenes' "no reading"
    cv2.imwrite(str(tmp_path / "frame-000017.depth.png"), raw)
    back = read_seven_scenes(tmp_path)
    assert [f.frame_id for f in back] == ["frame-000015", "frame-000017", "frame-000019", "frame-000113"]
    assert back[1].depth[0, 0] == 0.0
    back[1].depth[0, 0] = np.float32(round(frames[1].depth[0, 0] * 1000) / 1000)
    _check_same(frames, back)
    assert [f.frame_id for f in read_seven_scenes(tmp_path, indices=[1, 2, 3], stride=2)] == ["frame-000017", "frame-000113"]


@pytest.mark.parametrize("layout", ["deepvideomvs", "seven_scenes"])
def test_depth_reprojects_into_the_neighbour(tmp_path, frames, layout):
    """The convention check: depth (millimetres) + camera-to-world poses put a frame's points
    onto its neighbour's depth. Reading the poses as world-to-camera breaks it."""
    if layout == "deepvideomvs":
        back = read_deepvideomvs(write_deepvideomvs(frames, tmp_path))
    else:
        back = read_seven_scenes(write_seven_scenes(frames, tmp_path))
    err, n = reprojection_agreement(back[0], back[1])
    assert n > 100 and err < 0.005
    wrong = Frame(rgb=back[1].rgb, K=back[1].K, T_wc=invert_pose(torch.from_numpy(back[1].T_wc)).numpy(), depth=back[1].depth)
    wrong0 = Frame(rgb=back[0].rgb, K=back[0].K, T_wc=invert_pose(torch.from_numpy(back[0].T_wc)).numpy(), depth=back[0].depth)
    err_w, n_w = reprojection_agreement(wrong0, wrong)
    assert n_w < 50 or err_w > 0.02


# --------------------------------------------------------------------------- bad input


def test_deepvideomvs_bad_input_names_the_file(tmp_path, frames):
    with pytest.raises(FileNotFoundError, match="sequence folder missing"):
        read_deepvideomvs(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="images folder missing"):
        read_deepvideomvs(tmp_path)
    write_deepvideomvs(frames, tmp_path)
    poses = (tmp_path / "poses.txt").read_text().splitlines()

    (tmp_path / "poses.txt").write_text("\n".join(poses[:3]) + "\n")
    with pytest.raises(ValueError, match=r"poses.txt: 3 poses for 4 images"):
        read_deepvideomvs(tmp_path)
    (tmp_path / "poses.txt").write_text("\n".join(poses[:2] + [" ".join(poses[2].split()[:12])] + poses[3:]) + "\n")
    with pytest.raises(ValueError, match=r"poses.txt:3: pose line must be 16 numbers .* got 12"):
        read_deepvideomvs(tmp_path)
    (tmp_path / "poses.txt").write_text("\n".join(poses[:1] + ["1 0 0 0 0 1 0 0 0 0 1 0 0 0 x 1"] + poses[2:]) + "\n")
    with pytest.raises(ValueError, match=r"poses.txt:2: pose line must be 16 numbers"):
        read_deepvideomvs(tmp_path)
    (tmp_path / "poses.txt").write_text("\n".join(poses[:1] + ["2 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1"] + poses[2:]) + "\n")
    with pytest.raises(ValueError, match=r"poses.txt:2: .*orthonormal"):
        read_deepvideomvs(tmp_path)
    (tmp_path / "poses.txt").write_text("\n".join(poses) + "\n")

    (tmp_path / "K.txt").write_text("500 0 16\n0 500 12\n")
    with pytest.raises(ValueError, match=r"K.txt: intrinsics must be 3 x 3 numbers, got shape \(2, 3\)"):
        read_deepvideomvs(tmp_path)
    np.savetxt(tmp_path / "K.txt", frames[0].K)

    (tmp_path / "depth" / "00002.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"depth: no depth png for 1 images, e.g. 00002.png"):
        read_deepvideomvs(tmp_path)
    cv2.imwrite(str(tmp_path / "depth" / "00002.png"), np.zeros((10, 10), np.uint16))
    with pytest.raises(ValueError, match=r"00002.png: depth \(10, 10\) does not match colour .*00002.png \(24, 32\)"):
        read_deepvideomvs(tmp_path)
    cv2.imwrite(str(tmp_path / "depth" / "00002.png"), np.zeros((24, 32), np.uint8))
    with pytest.raises(ValueError, match=r"00002.png: depth PNG must be single-channel uint16"):
        read_deepvideomvs(tmp_path)
    with pytest.raises(ValueError, match=r"indices must be in \[0, 4\)"):
        read_deepvideomvs(tmp_path, indices=[4])
    (tmp_path / "keyframes").mkdir()
    (tmp_path / "keyframes" / "nmeas_1.txt").write_text("00001.png 00000.png\n00002.png\n")
    with pytest.raises(ValueError, match=r"nmeas_1.txt:2: need a reference"):
        read_keyframes(tmp_path, 1)


def test_seven_scenes_bad_input_names_the_file(tmp_path, frames):
    with pytest.raises(FileNotFoundError, match="no frame-NNNNNN.color"):
        read_seven_scenes(tmp_path)
    write_seven_scenes(frames, tmp_path)
    (tmp_path / "frame-000001.pose.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"frame-000001.pose.txt: pose file missing"):
        read_seven_scenes(tmp_path)
    (tmp_path / "frame-000001.pose.txt").write_text("1 0 0 0\n0 1 0 0\n0 0 1 0\n")
    with pytest.raises(ValueError, match=r"frame-000001.pose.txt: pose must be 4 x 4 numbers, got shape \(3, 4\)"):
        read_seven_scenes(tmp_path)
    (tmp_path / "frame-000001.pose.txt").write_text("1 0 0 0\n0 1 0 0\n0 0 1 nan\n0 0 0 1\n")
    with pytest.raises(ValueError, match=r"frame-000001.pose.txt: pose contains NaN"):
        read_seven_scenes(tmp_path)
    np.savetxt(tmp_path / "frame-000001.pose.txt", frames[1].T_wc)
    (tmp_path / "frame-000002.depth.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"frame-000002.depth.png: depth file missing"):
        read_seven_scenes(tmp_path)
    cv2.imwrite(str(tmp_path / "frame-000002.depth.png"), np.zeros((24, 31), np.uint16))
    with pytest.raises(ValueError, match=r"frame-000002.depth.png: depth \(24, 31\) does not match colour"):
        read_seven_scenes(tmp_path)
    cv2.imwrite(str(tmp_path / "frame-000002.depth.png"), np.zeros((24, 32), np.uint16))
    (tmp_path / "intrinsics.K.txt").write_text("500 0 16 0\n0 500 12 0\n0 0 1 0\n")
    with pytest.raises(ValueError, match=r"intrinsics.K.txt: intrinsics must be 3 x 3 numbers, got shape \(3, 4\)"):
        read_seven_scenes(tmp_path)
    (tmp_path / "intrinsics.K.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"intrinsics.K.txt: intrinsics file missing"):
        read_seven_scenes(tmp_path)
    assert len(read_seven_scenes(tmp_path, K=frames[0].K)) == 4  # 7-Scenes proper: K given by the caller
    cv2.imwrite(str(tmp_path / "frame-000003.color.jpg"), frames[3].rgb)
    with pytest.raises(ValueError, match=r"frame-000003 has more than one colour file"):
        read_seven_scenes(tmp_path, K=frames[0].K)


# --------------------------------------------------------------------------- split


def test_split_is_fixed_and_disjoint():
    train, held = hololens_split()
    assert (len(train), len(held)) == (279, 94) and HOLOLENS_NUM_FRAMES == 373
    assert train.max() + 1 == held.min() and held.max() == 372  # contiguous: the last quarter, in time
    assert not set(train.tolist()) & set(held.tolist())
    assert len(tabletop_split(50)[0]) == 0 and len(tabletop_split(50)[1]) == 50
    assert split_indices("tabletop_box", 50, "train").size == 0
    assert split_indices("anything", 8, "train").tolist() == list(range(6))
    with pytest.raises(ValueError, match="split must be one of"):
        split_indices("hololens_office", 8, "test")


# --------------------------------------------------------------------------- the real sequences


@pytest.mark.skipif(not (SHARED / "hololens_office").is_dir(), reason="real sequences not present (../shared/data)")
def test_real_hololens_depth_agrees_with_the_next_frame():
    f = read_deepvideomvs(SHARED / "hololens_office", indices=[279, 281])  # first held-out frames
    assert f[0].rgb.shape == (360, 540, 3) and f[0].frame_id == "00284"
    err, n = reprojection_agreement(f[0], f[1])
    assert n > 50_000 and err < 0.01


@pytest.mark.skipif(not (SHARED / "tabletop_box").is_dir(), reason="real sequences not present (../shared/data)")
def test_real_tabletop_depth_agrees_with_a_neighbour():
    f = read_seven_scenes(SHARED / "tabletop_box", indices=[10, 12])
    assert f[0].rgb.shape == (480, 640, 3)
    err, n = reprojection_agreement(f[0], f[1])
    assert n > 20_000 and err < 0.01


# --------------------------------------------------------------------------- the shipped demo bag


def test_shipped_hololens_bag_is_the_heldout_walk_with_attribution():
    from mvgd_core.data.rosbag_io import read_bag

    bag = Path(__file__).resolve().parents[1] / "data" / "bags" / "hololens_office"
    assert sum(f.stat().st_size for f in bag.iterdir()) < 20e6
    text = (bag / "ATTRIBUTION.md").read_text()
    assert "MIT License" in text and "Copyright (c) 2020 Arda Duzceker" in text and "deep-video-mvs" in text
    frames = read_bag(bag)
    assert len(frames) == 47 and frames[0].rgb.shape == (180, 270, 3) and frames[0].depth is not None
    t = np.stack([f.T_wc[:3, 3] for f in frames])
    assert np.linalg.norm(np.diff(t, axis=0), axis=1).sum() > 5.0  # a walk, not a rotation
    if (SHARED / "hololens_office").is_dir():  # exactly the held-out frames, every second one
        src = read_deepvideomvs(SHARED / "hololens_office", indices=hololens_split()[1], stride=2, with_depth=False)
        assert max(np.abs(a.T_wc - b.T_wc).max() for a, b in zip(frames, src)) < 1e-5
