"""Small line charts drawn with PIL (there is no plotting package in the venv): the learning
curve (training/learning_curve.py) and the confidence calibration figure
(training/calibrate_confidence.py). One panel = `axes` (frame, grid, ticks, labels) plus one
`polyline` per series."""
from __future__ import annotations

import math
from typing import Callable

Map = Callable[[float], float]


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round values (1, 2 or 5 times a power of ten apart) inside [lo, hi], so an
    axis reads 0 / 100 / 200 rather than 0 / 127.71 / 255.41."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    mag = 10.0 ** math.floor(math.log10((hi - lo) / count))
    # the finest round step that gives at most count + 2 ticks
    step = next(m * mag for m in (1.0, 2.0, 5.0, 10.0, 20.0) if (hi - lo) / (m * mag) <= count + 1)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + k * step, 10) for k in range(int((hi - first) / step + 1e-9) + 1)]


def tick_format(ticks: list[float]) -> str:
    """The fewest decimals that write every tick exactly: "{:.0f}" for 0 / 100 / 200, "{:.2f}" for 0.05 steps."""
    d = next((d for d in range(4) if all(abs(round(t, d) - t) < 1e-9 * max(1.0, abs(t)) for t in ticks)), 4)
    return "{:.%df}" % d


def axes(draw, box, title: str, font, xlabel: str, xlim: tuple[float, float], ylim: tuple[float, float],
         xticks: list[float], xfmt: str = "{:.2f}") -> tuple[Map, Map]:
    """Draw a panel's frame, horizontal grid at round values, tick labels and titles in box
    (x0, y0, x1, y1) of a PIL ImageDraw. Returns the data -> pixel maps (X, Y); Y clamps to ylim."""
    x0, y0, x1, y1 = box
    px0, py0, px1, py1 = x0 + 42, y0 + 22, x1 - 14, y1 - 30
    (xlo, xhi), (ylo, yhi) = xlim, ylim
    X = lambda x: px0 + (px1 - px0) * (x - xlo) / ((xhi - xlo) or 1.0)  # noqa: E731
    Y = lambda y: py1 - (py1 - py0) * (min(max(y, ylo), yhi) - ylo) / ((yhi - ylo) or 1.0)  # noqa: E731
    draw.rectangle([px0, py0, px1, py1], outline=(0, 0, 0))
    draw.text((x0 + 4, y0 + 4), title, fill=(0, 0, 0), font=font)
    yticks = nice_ticks(ylo, yhi)
    yfmt = tick_format(yticks)
    for yv in yticks:
        draw.line([px0, Y(yv), px1, Y(yv)], fill=(225, 225, 225))
        draw.text((x0 + 2, Y(yv) - 6), yfmt.format(yv), fill=(0, 0, 0), font=font)
    for xv in xticks:
        draw.text((X(xv) - 8, py1 + 4), xfmt.format(xv), fill=(0, 0, 0), font=font)
    draw.text((px0 + 30, py1 + 16), xlabel, fill=(0, 0, 0), font=font)
    return X, Y


def polyline(draw, X: Map, Y: Map, xs, ys, colour) -> None:
    """One series: a line through the finite points and a dot on each."""
    pts = [(X(x), Y(y)) for x, y in zip(xs, ys) if math.isfinite(x) and math.isfinite(y)]
    if len(pts) > 1:
        draw.line(pts, fill=colour, width=2)
    for x, y in pts:
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
