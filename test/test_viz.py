"""viz: colormap shapes and ends, invalid pixels black, error maps, grids and PNG round trip."""
import cv2
import numpy as np
import pytest
import torch

from mvgd_core import viz


def test_colorize_depth_shape_dtype_and_invalid_black():
    d = np.linspace(0.5, 5.0, 48 * 64, dtype=np.float32).reshape(48, 64)
    d[0, :5] = 0.0
    d[1, 0] = np.nan
    d[1, 1] = np.inf
    img = viz.colorize_depth(d)
    assert img.shape == (48, 64, 3) and img.dtype == np.uint8
    assert (img[0, :5] == 0).all() and (img[1, :2] == 0).all()
    assert (img[10:].reshape(-1, 3).max(1) > 0).all()  # valid pixels are never black in turbo
    mask = np.ones_like(d, bool)
    mask[20, 20] = False
    assert (viz.colorize_depth(d, valid=mask)[20, 20] == 0).all()


def test_colorize_depth_accepts_torch():
    img = viz.colorize_depth(torch.full((4, 5), 2.0))
    assert img.shape == (4, 5, 3)


def test_colormap_ends_are_monotonic_near_warm():
    d = np.array([[1.0, 2.0, 4.0, 8.0]], np.float32)
    turbo = viz.colorize_depth(d, lo=1.0, hi=8.0, cmap="turbo")[0].astype(int)
    # near = red end of turbo, far = blue end
    assert turbo[0, 0] > turbo[0, 2] and turbo[-1, 2] > turbo[-1, 0]
    vir = viz.colorize_depth(d, lo=1.0, hi=8.0, cmap="viridis")[0].astype(int)
    brightness = vir.sum(1)
    assert (np.diff(brightness) < 0).all()  # viridis: near bright yellow -> far dark purple
    # values outside [lo, hi] clamp to the ends
    out = viz.colorize_depth(np.array([[0.1, 100.0]], np.float32), lo=1.0, hi=8.0)[0]
    assert (out[0] == turbo[0]).all() and (out[1] == turbo[-1]).all()


def test_unknown_colormap_raises():
    with pytest.raises(ValueError, match="colormap"):
        viz.colorize_depth(np.ones((2, 2), np.float32), cmap="nope")


def test_depth_range_is_robust_to_outliers():
    d = np.full((100, 100), 2.0, np.float32)
    d.flat[:50] = 1000.0  # 0.5 % outliers
    d.flat[50:100] = 0.0  # invalid
    lo, hi = viz.depth_range(d)
    assert lo == pytest.approx(2.0) and hi < 3.0
    assert viz.depth_range(np.zeros((3, 3))) == (0.0, 1.0)


def test_error_map_zero_dark_large_bright_invalid_black():
    gt = np.full((2, 3), 2.0, np.float32)
    pred = np.array([[2.0, 3.0, 4.0], [0.0, 2.0, 2.0]], np.float32)
    gt[1, 1] = 0.0
    err = viz.abs_rel_error(pred, gt)
    assert err[0].tolist() == pytest.approx([0.0, 0.5, 1.0]) and np.isnan(err[1, :2]).all()
    img = viz.colorize_error(pred, gt, max_err=0.5).astype(int)
    assert img[0, 0].sum() < img[0, 1].sum() == img[0, 2].sum()  # clamped at max_err
    assert (img[1, :2] == 0).all()


def test_grid_labels_sizes_and_png_round_trip(tmp_path):
    a = np.full((48, 64, 3), 200, np.uint8)
    b = torch.rand(3, 24, 32)  # other size and layout: resized into the cell
    g = viz.make_grid([[a, b], [None]], [["one", "two"], ["empty"]], pad=2, bar=16)
    assert g.shape == (2 * (48 + 16 + 4), 2 * (64 + 4), 3)
    assert g[2 + 16 + 10, 2 + 10].tolist() == [200, 200, 200]
    assert g[2 + 16:2 + 16 + 48, 2:2 + 64].min() == 200  # label text stays in its bar
    assert g[2:2 + 16, 2:2 + 64].max() > 150  # a light caption on the black bar
    p = viz.save_png(tmp_path / "sub" / "g.png", g)
    back = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
    assert np.array_equal(back, g)
    with pytest.raises(ValueError):
        viz.make_grid([[None]])


def test_depth_panel_rows_shared_scale_errors_under_depths_and_observability():
    d = np.random.default_rng(0).uniform(1, 3, (24, 32)).astype(np.float32)
    gt = d * 1.1
    rgb = np.zeros((24, 32, 3), np.uint8)
    obs = np.zeros((24, 32), bool)
    obs[:, :16] = True
    img = viz.depth_panel([rgb, rgb], d, gt, pred_rgb=rgb, gt_rgb=rgb, extra_depths={"plane sweep": gt}, obs_mask=obs)
    assert viz.legible_cell((24, 32)) == (120, 160)  # small maps are shown 5x, big enough to read
    cell_h, cell_w = 120 + 16 + 4, 160 + 4
    # rows: inputs, depths (GT, MVGD, plane sweep, scale), errors (observability, MVGD err, sweep err), RGB
    assert img.shape == (4 * cell_h, 4 * cell_w, 3)

    def cell(r, c):
        return img[r * cell_h + 2 + 16: (r + 1) * cell_h - 2, c * cell_w + 2: (c + 1) * cell_w - 2]

    # one colour scale: the method that equals GT is drawn exactly like GT
    assert np.array_equal(cell(1, 0), cell(1, 2)) and not np.array_equal(cell(1, 0), cell(1, 1))
    # under GT: the observability mask (green observable half, grey the other half)
    o = cell(2, 0)
    assert o[20, 12].tolist() == [60, 200, 80] and o[20, 130].tolist() == [110, 110, 110]
    # the exact method's error map is all dark, the other's is not
    assert cell(2, 2).max() < 40 and cell(2, 1).max() > 40


def test_method_depth_row_order_and_colorbar_ends():
    gt = np.linspace(1, 4, 12 * 16, dtype=np.float32).reshape(12, 16)
    cells, labels = viz.method_depth_row(gt, {"A": gt, "B": gt * 2}, obs_mask=gt > 2)
    assert labels == ["GT depth", "A", "B", "scale", "observable", "A err", "B err"]
    assert np.array_equal(cells[0], cells[1])  # same depth, same colours
    lo, hi = viz.depth_range(gt)
    bar = viz.depth_colorbar(lo, hi, (48, 16))
    ramp = viz.colorize_depth(np.array([[lo, hi]], np.float32), lo, hi)[0]
    assert bar[0, -1].tolist() == ramp[0].tolist() and bar[-1, -1].tolist() == ramp[1].tolist()  # near on top, far at the bottom
    g = viz.colorize_observability(np.array([[True, False]]), np.array([[True, False]]))
    assert g[0, 0].tolist() == [60, 200, 80] and g[0, 1].tolist() == [0, 0, 0]  # no GT: black
