import numpy as np
import pytest
import torch

from mvgd_core import cameras as C


def test_resize_intrinsics_maps_pixel_centres():
    K = C.make_intrinsics(100.0, 100.0, 31.5, 23.5)  # principal point at the centre of 64x48
    K2 = C.resize_intrinsics(K, (48, 64), (24, 32))
    assert K2[0, 0] == pytest.approx(50.0)
    assert K2[0, 2] == pytest.approx(15.5)  # still the centre of a 32-wide image
    assert K2[1, 2] == pytest.approx(11.5)


def test_unproject_then_project_round_trip():
    K = C.make_intrinsics(50.0, 60.0, 15.5, 11.5)
    T = torch.tensor(C.look_at([1.0, 2.0, 0.5], [4.0, 0.0, 0.0]), dtype=torch.float32)
    depth = torch.rand(24, 32) * 4 + 1
    pts = C.unproject_depth(depth, K, T).reshape(-1, 3)
    uv, z = C.project_points(pts, K, T)
    grid = C.pixel_grid(24, 32)[..., :2].reshape(-1, 2)
    assert torch.allclose(uv, grid, atol=1e-3)
    assert torch.allclose(z, depth.reshape(-1), atol=1e-4)


def test_hand_computed_projection():
    K = C.make_intrinsics(100.0, 100.0, 50.0, 40.0)
    T = torch.eye(4)
    uv, z = C.project_points(torch.tensor([[1.0, -0.5, 2.0]]), K, T)
    assert uv[0].tolist() == pytest.approx([100.0, 15.0])
    assert z.item() == pytest.approx(2.0)


def test_look_at_matches_rep103_optical_frame():
    # A camera looking along world +x in a z-up world is the optical frame of an identity body.
    assert np.allclose(C.look_at([0, 0, 0], [1, 0, 0]), C.optical_pose_from_body_pose(np.eye(4)))
    T = np.eye(4)
    T[:3, 3] = [1, 2, 3]
    assert np.allclose(C.body_pose_from_optical_pose(C.optical_pose_from_body_pose(T)), T)


def test_invert_pose():
    T = torch.tensor(C.look_at([1.0, 2.0, 3.0], [0.0, 0.0, 0.0]))
    assert torch.allclose(C.invert_pose(T) @ T, torch.eye(4, dtype=T.dtype), atol=1e-9)


def test_quaternion_round_trip_and_slerp():
    q = np.array([0.1, -0.2, 0.3, 0.9])
    q /= np.linalg.norm(q)
    assert np.allclose(C.matrix_to_quat(C.quat_to_matrix(q)), q)
    qz90 = np.array([0, 0, np.sin(np.pi / 4), np.cos(np.pi / 4)])
    half = C.quat_slerp([0, 0, 0, 1], qz90, 0.5)
    assert np.allclose(half, [0, 0, np.sin(np.pi / 8), np.cos(np.pi / 8)])


@pytest.mark.parametrize(
    "K, msg",
    [
        (C.make_intrinsics(-1.0, 1.0, 0.0, 0.0), "focal"),
        (C.make_intrinsics(float("nan"), 1.0, 0.0, 0.0), "NaN"),
    ],
)
def test_bad_intrinsics_raise(K, msg):
    with pytest.raises(ValueError, match=msg):
        C.validate_intrinsics(K)


def test_bad_poses_raise():
    T = np.eye(4)
    T[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        C.validate_pose(T)
    S = np.eye(4)
    S[0, 0] = 2.0
    with pytest.raises(ValueError, match="orthonormal"):
        C.validate_pose(S)
    M = np.diag([1.0, 1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="orthonormal"):
        C.validate_pose(M)
    with pytest.raises(ValueError, match="NaN"):
        C.quat_to_matrix([np.nan, 0, 0, 1])
