"""Raymaps against hand-computed geometry; patch tokens aligned with the Conv2d patch grid."""
import math

import numpy as np
import torch

from mvgd_core.cameras import look_at
from mvgd_core.raymap import fourier_encode, patch_raymap, patch_uv, pixel_rays, ray_maps, raymap_channels

K = torch.tensor([[100.0, 0, 31.5], [0, 80.0, 23.5], [0, 0, 1]], dtype=torch.float64)


def _pose():
    return torch.tensor(look_at([1.0, -2.0, 0.5], [3.0, 1.0, 1.5]), dtype=torch.float64)


def test_principal_point_ray_is_optical_axis_and_origin_is_centre():
    T = _pose()
    o, d = pixel_rays(K, T, torch.tensor([[31.5, 23.5]], dtype=torch.float64))
    np.testing.assert_allclose(d[0], T[:3, 2], atol=1e-12)  # optical axis (camera z) in the world
    np.testing.assert_allclose(o[0], T[:3, 3], atol=1e-12)  # camera centre
    expected = np.array([2.0, 3.0, 1.0]) / math.sqrt(14.0)  # look_at target - eye, normalized
    np.testing.assert_allclose(d[0], expected, atol=1e-12)


def test_off_axis_pixel_hand_computed():
    # identity pose: pixel (131.5, 23.5) is one focal length right of the principal point -> 45 deg in x
    o, d = pixel_rays(K, torch.eye(4, dtype=torch.float64), torch.tensor([[131.5, 23.5], [31.5, 103.5]], dtype=torch.float64))
    np.testing.assert_allclose(d[0], [1 / math.sqrt(2), 0, 1 / math.sqrt(2)], atol=1e-12)
    np.testing.assert_allclose(d[1], [0, 1 / math.sqrt(2), 1 / math.sqrt(2)], atol=1e-12)  # +v is +y (down)
    assert torch.equal(o, torch.zeros_like(o))


def test_dense_raymap_shapes_and_unit_norm():
    T = torch.stack([_pose(), torch.eye(4, dtype=torch.float64)])  # batched (2, 4, 4)
    o, d = ray_maps(K.expand(2, 3, 3), T, 6, 8)
    assert o.shape == d.shape == (2, 6, 8, 3)
    np.testing.assert_allclose(d.norm(dim=-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(o[0, 3, 5], T[0, :3, 3])
    # pixel (u=5, v=3) of camera 0 agrees with the single-pixel function
    _, d1 = pixel_rays(K, T[0], torch.tensor([[5.0, 3.0]], dtype=torch.float64))
    np.testing.assert_allclose(d[0, 3, 5], d1[0], atol=1e-12)


def test_fourier_encoding_values():
    x = torch.tensor([[0.25, -0.5, 1.0]])
    enc = fourier_encode(x, num_bands=3, max_freq=8.0)  # freqs 1, 2.5, 4
    assert enc.shape == (1, 3 * 7)
    np.testing.assert_allclose(enc[0, :3], x[0])  # raw input kept
    # layout per input dim: [sin f1..f3, cos f1..f3]; first input dim, first band: sin(pi * 0.25)
    np.testing.assert_allclose(enc[0, 3], math.sin(math.pi * 0.25), atol=1e-6)
    np.testing.assert_allclose(enc[0, 3 + 3], math.cos(math.pi * 0.25), atol=1e-6)
    np.testing.assert_allclose(enc[0, 3 + 2], math.sin(math.pi * 4 * 0.25), atol=1e-6)


def test_patch_tokens_align_with_conv_patch_grid():
    H, W, p = 16, 24, 8
    Kf, T = K.float(), _pose().float()
    tok = patch_raymap(Kf, T, H, W, p, origin_bands=4, dir_bands=3, max_freq=8.0)
    P = (H // p) * (W // p)
    assert tok.shape == (P, raymap_channels(4, 3))
    _, d = ray_maps(Kf, T, H, W)  # (H, W, 3)
    # a Conv2d(stride p) + flatten orders patches row-major: patch k covers rows (k // 3) * p, cols (k % 3) * p
    for k in range(P):
        r, c = (k // (W // p)) * p, (k % (W // p)) * p
        corners = tok[k, -12:].view(4, 3)
        np.testing.assert_allclose(corners[0], d[r, c], atol=1e-5)  # top-left pixel
        np.testing.assert_allclose(corners[3], d[r + p - 1, c + p - 1], atol=1e-5)  # bottom-right pixel
    centres, _ = patch_uv(H, W, p)
    np.testing.assert_allclose(centres[4], [1 * p + 3.5, 1 * p + 3.5])  # patch (row 1, col 1)
