"""Scene-folder and TUM readers: round trips, association, GT poses against depth, bad input."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mvgd_core.cameras import project_points, unproject_depth
from mvgd_core.data.render import render_sequence
from mvgd_core.data.sampler import resize_frame
from mvgd_core.data.scene_folder import find_scene_folders, read_scene_folder, write_scene_folder
from mvgd_core.data.tum import GroundTruth, associate, read_tum, tum_intrinsics

TUM_SMALL = Path(__file__).resolve().parents[1] / "data" / "tum_fr1_rpy_small"


@pytest.fixture(scope="module")
def frames():
    return render_sequence(2, 3, 12, 16)


@pytest.mark.parametrize("depth_format", ["npy", "png"])
def test_scene_folder_round_trip(tmp_path, frames, depth_format):
    write_scene_folder(frames, tmp_path / "s", depth_format=depth_format)
    back = read_scene_folder(tmp_path / "s")
    assert len(back) == len(frames)
    for a, b in zip(frames, back):
        assert np.array_equal(a.rgb, b.rgb) and a.stamp == b.stamp
        np.testing.assert_allclose(b.K, a.K)
        np.testing.assert_allclose(b.T_wc, a.T_wc)
        tol = 0 if depth_format == "npy" else 0.0005 + 1e-6  # png: millimetres
        assert np.abs(a.depth - b.depth).max() <= tol
    assert find_scene_folders(tmp_path) == [tmp_path / "s"]


def test_scene_folder_shared_intrinsics_and_quaternion_pose(tmp_path, frames):
    write_scene_folder(frames[:1], tmp_path, depth_format="npy")
    meta = yaml.safe_load((tmp_path / "cameras.yaml").read_text())
    K = frames[0].K
    meta["intrinsics"] = {"fx": float(K[0, 0]), "fy": float(K[1, 1]), "cx": float(K[0, 2]), "cy": float(K[1, 2]), "width": 16, "height": 12}
    e = meta["frames"][0]
    del e["K"], e["T_wc"]
    e["pose"] = {"t": [1.0, 2.0, 3.0], "q": [0.0, 0.0, 0.0, 1.0]}
    (tmp_path / "cameras.yaml").write_text(yaml.safe_dump(meta))
    f = read_scene_folder(tmp_path)[0]
    np.testing.assert_allclose(f.K, K)
    np.testing.assert_allclose(f.T_wc[:3, 3], [1, 2, 3])


def test_scene_folder_errors_name_the_file(tmp_path, frames):
    with pytest.raises(FileNotFoundError, match="cameras.yaml missing"):
        read_scene_folder(tmp_path)
    write_scene_folder(frames, tmp_path, depth_format="npy")
    np.save(tmp_path / "depth" / "000001.npy", np.zeros((5, 5), np.float32))
    with pytest.raises(ValueError, match=r"000001.*depth \(5, 5\) does not match rgb \(12, 16\)"):
        read_scene_folder(tmp_path)
    (tmp_path / "rgb" / "000002.png").unlink()
    np.save(tmp_path / "depth" / "000001.npy", frames[1].depth)
    with pytest.raises(FileNotFoundError, match="000002"):
        read_scene_folder(tmp_path)
    meta = yaml.safe_load((tmp_path / "cameras.yaml").read_text())
    meta["frames"][0]["T_wc"][0][3] = float("nan")
    (tmp_path / "cameras.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(ValueError, match="NaN"):
        read_scene_folder(tmp_path)


def test_associate_is_one_to_one_within_tolerance():
    # closest pairs first: a[1] takes b[2] (2 ms) over b[1] (3 ms); a[2] is 35 ms from anything left
    assert associate([0.0, 0.033, 0.066, 0.5], [0.001, 0.030, 0.031, 0.9], max_dt=0.02) == [(0, 0), (1, 2)]
    assert associate([0.0, 0.033, 0.066], [0.001, 0.030, 0.031], max_dt=0.04) == [(0, 0), (1, 2), (2, 1)]
    assert associate([1.0], [], 0.02) == []


def test_ground_truth_interpolation_and_gaps():
    rows = [["0.0", "0", "0", "0", "0", "0", "0", "1"], ["0.01", "1", "0", "0", "0", "0", "0", "1"], ["1.0", "5", "0", "0", "0", "0", "0", "1"]]
    gt = GroundTruth(rows, "gt")
    np.testing.assert_allclose(gt.pose_at(0.005)[:3, 3], [0.5, 0, 0])
    assert gt.pose_at(0.5) is None  # across a 0.99 s gap
    assert gt.pose_at(-1.0) is None


def test_tum_shipped_copy_reads_with_association_and_skips_missing():
    report = {}
    frames = read_tum(TUM_SMALL, report=report)
    assert report["read"] == 58 and report["missing_files"] > 600  # rgb.txt lists the whole sequence
    assert report["listed"] == report["read"] + report["missing_files"] + report["unassociated"] + report["no_pose"]
    f = frames[0]
    assert f.rgb.shape == (240, 320, 3) and f.depth.shape == (240, 320) and f.depth.dtype == np.float32
    np.testing.assert_allclose(f.K, tum_intrinsics("fr1", (240, 320)))
    np.testing.assert_allclose(f.K[0], [258.65, 0, 159.05])
    assert 0.3 < np.median(f.depth[f.depth > 0]) < 5.0  # metres, depth scale 5000
    same = read_tum(TUM_SMALL, associations="associations_every12.txt")
    assert [g.stamp for g in same] == [g.stamp for g in frames]


def _median_reprojection_error(a, b, T_b):
    pts = unproject_depth(torch.as_tensor(a.depth).double(), torch.as_tensor(a.K), torch.as_tensor(a.T_wc)).reshape(-1, 3)
    uv, z = project_points(pts, torch.as_tensor(b.K), torch.as_tensor(T_b))
    u, v = uv[:, 0].round().long(), uv[:, 1].round().long()
    ok = (torch.as_tensor(a.depth).reshape(-1) > 0) & (z > 0) & (u >= 0) & (u < b.width) & (v >= 0) & (v < b.height)
    db = torch.as_tensor(b.depth)[v[ok], u[ok]].double()
    m = db > 0
    return float((db[m] - z[ok][m]).abs().median())


def test_tum_ground_truth_poses_reproject_depth_consistently():
    # consecutive pairs 0.4 s apart, at 120x160 to keep the test light (nearest depth, exact K)
    frames = [resize_frame(f, (120, 160), crop_to_aspect=False) for f in read_tum(TUM_SMALL, associations="associations_every12.txt")[:10]]
    gt = [_median_reprojection_error(a, b, b.T_wc) for a, b in zip(frames, frames[1:])]
    ident = [_median_reprojection_error(a, b, a.T_wc) for a, b in zip(frames, frames[1:])]
    assert np.median(gt) < 0.05, f"median reprojection error with GT poses {np.median(gt) * 1000:.0f} mm"
    assert np.median(ident) > 3 * np.median(gt)


def test_tum_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        read_tum(tmp_path / "nope")
    shutil.copytree(TUM_SMALL, tmp_path / "t")
    with pytest.raises(ValueError, match="unknown TUM camera 'fr9'"):
        read_tum(tmp_path / "t", camera="fr9")
    (tmp_path / "t" / "groundtruth.txt").write_text("# header\n1305031229.5 1 2\n")
    with pytest.raises(ValueError, match=r"groundtruth.txt:2: expected at least 8 columns"):
        read_tum(tmp_path / "t")
    (tmp_path / "t" / "groundtruth.txt").write_text("1.0 0 0 0 0 0 0 1\n2.0 0 0 0 0 0 0 1\n")
    with pytest.raises(ValueError, match="no usable frames.*'no_pose': 58"):
        read_tum(tmp_path / "t", associations="associations_every12.txt")
