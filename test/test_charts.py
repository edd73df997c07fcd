"""mvgd_core.charts: the PIL line charts of the learning-curve and calibration figures."""
from PIL import Image, ImageDraw, ImageFont

from mvgd_core import charts


def test_axes_map_data_to_the_panel_and_clamp_y():
    img = Image.new("RGB", (400, 300), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    X, Y = charts.axes(draw, (0, 0, 400, 300), "t", ImageFont.load_default(), "x", (0.0, 2.0), (0.0, 1.0), [0, 1, 2])
    assert X(0.0) < X(1.0) < X(2.0) and X(2.0) <= 400
    assert Y(1.0) < Y(0.5) < Y(0.0) <= 300  # image rows grow downwards
    assert Y(5.0) == Y(1.0) and Y(-1.0) == Y(0.0)  # out of range: on the frame


def test_polyline_skips_non_finite_points_and_draws_the_rest():
    img = Image.new("RGB", (200, 200), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    X, Y = charts.axes(draw, (0, 0, 200, 200), "", ImageFont.load_default(), "", (0.0, 1.0), (0.0, 1.0), [])
    charts.polyline(draw, X, Y, [0.0, 0.5, float("nan"), 1.0], [0.0, float("inf"), 0.3, 1.0], (255, 0, 0))
    import numpy as np

    red = int((np.asarray(img) == (255, 0, 0)).all(-1).sum())
    assert red > 50  # the line from (0, 0) to (1, 1) and its dots
    assert img.getpixel((int(X(0.5)), int(Y(0.5)))) == (255, 0, 0)  # on the diagonal through the finite points


def test_nice_ticks_are_round_and_inside_the_range():
    assert charts.nice_ticks(0.0, 510.82) == [0.0, 100.0, 200.0, 300.0, 400.0, 500.0]
    assert charts.nice_ticks(0.0, 45.0) == [0.0, 10.0, 20.0, 30.0, 40.0]
    assert charts.nice_ticks(0.12, 0.31) == [0.15, 0.2, 0.25, 0.3]
    assert charts.nice_ticks(1.0, 1.0) == [1.0]  # a flat series keeps one tick
    assert charts.tick_format([0.0, 100.0, 200.0]) == "{:.0f}"
    assert charts.tick_format([0.15, 0.2, 0.25]) == "{:.2f}"
    assert charts.tick_format([0.0, 2.5]) == "{:.1f}"
