#!/usr/bin/env python3
"""Where the error is: held-out depth error by how much parallax the target has (prints a table, writes JSON and a chart).

    python training/parallax_report.py runs/eval/stop23_chunk.json runs/eval/stop24_h11.json --labels "7 depths" "11 depths"
    python training/parallax_report.py runs/eval/default.json --section hololens --task novel --figure parallax.png

Reads the per-target rows `training/evaluate_model.py` stores (observable regime only) and
splits them by their median parallax (`median_disparity_px`: how far, in model pixels, a 25 %
depth change moves the target's points in the best conditioning view). Per bin: the median
AbsRel of MVGD in each report, and of the network alone, `mvs` on its kept pixels and the oracle
reprojection from the first report (those rows do not depend on the inference settings).
Reports must hold the very same targets (the card's command with the same --num and seeds).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

BINS = (0.0, 2.0, 4.0, 8.0, math.inf)  # median parallax, model pixels
REFERENCES = (("mvgd_net", "network alone"), ("mvs_confident", "mvs, kept pixels"), ("reprojection", "oracle reprojection"))


def observable_rows(report: dict, section: str, task: str) -> list[dict]:
    """The per-target rows of one section and task in the observable regime; ValueError if absent."""
    try:
        rows = report["sections"][section]["per_sample"][task]
    except KeyError as exc:
        raise ValueError(f"report has no per-target rows for section {section!r}, task {task!r}") from exc
    return [r for r in rows if r.get("regime") == "observable"]


def by_parallax(rows: list[dict], method: str, bins=BINS) -> list[dict]:
    """Per bin [lo, hi): {"lo", "hi", "n", "abs_rel_median"} of `method` over the rows (NaN where empty)."""
    disp = np.array([r["median_disparity_px"] for r in rows], dtype=float)
    err = np.array([r.get(f"{method}/abs_rel", np.nan) for r in rows], dtype=float)
    out = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        k = (disp >= lo) & (disp < hi) & np.isfinite(err)
        out.append({"lo": lo, "hi": hi, "n": int(k.sum()), "abs_rel_median": float(np.median(err[k])) if k.any() else math.nan})
    return out


def series(reports: list[dict], labels: list[str], section: str, task: str) -> dict:
    """{label: per-bin rows}: MVGD in every report, then the reference rows of the first."""
    rows = [observable_rows(r, section, task) for r in reports]
    if len({len(x) for x in rows}) > 1:
        raise ValueError(f"the reports hold different observable targets ({[len(x) for x in rows]}): run them with the same command")
    out = {f"MVGD, {label}": by_parallax(x, "mvgd") for label, x in zip(labels, rows)}
    for method, name in REFERENCES:
        binned = by_parallax(rows[0], method)
        if any(b["n"] for b in binned):
            out[name] = binned
    return out


def save_chart(path, result: dict, title: str) -> Path:
    """One panel: median AbsRel per parallax bin, one line per series."""
    from PIL import Image, ImageDraw, ImageFont

    from mvgd_core import charts

    colours = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (127, 127, 127), (255, 127, 14)]
    img = Image.new("RGB", (760, 420), "white")
    draw, font = ImageDraw.Draw(img), ImageFont.load_default()
    names = list(result)
    nb = len(next(iter(result.values())))
    ys = [b["abs_rel_median"] for s in result.values() for b in s if math.isfinite(b["abs_rel_median"])]
    X, Y = charts.axes(draw, (0, 0, 560, 420), title, font, "median parallax of the target (model px), bin", (-0.3, nb - 0.7),
                       (0.0, min(max(ys + [0.1]) * 1.1, 1.0)), list(range(nb)), "{:.0f}")  # lines above 1.0 clamp
    for i, name in enumerate(names):
        charts.polyline(draw, X, Y, list(range(nb)), [b["abs_rel_median"] for b in result[name]], colours[i % len(colours)])
        draw.text((570, 30 + 18 * i), name, fill=colours[i % len(colours)], font=font)
    first = next(iter(result.values()))
    for j, b in enumerate(first):
        draw.text((570, 150 + 16 * j), f"bin {j}: [{b['lo']:g}, {b['hi']:g}) px, n={b['n']}", fill=(0, 0, 0), font=font)
    img.save(path)
    return Path(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reports", nargs="+", help="evaluate_model.py JSON reports of the same targets")
    ap.add_argument("--labels", nargs="*", default=None, help="one per report (default: the file names)")
    ap.add_argument("--section", default="procedural", help="procedural, hololens or tabletop")
    ap.add_argument("--task", default="cond", choices=["cond", "novel"], help="live camera (cond) or novel views")
    ap.add_argument("--figure", default="", help="also draw the chart to this PNG")
    ap.add_argument("--out", default="", help="JSON path (default: next to the first report, parallax_<section>_<task>.json)")
    args = ap.parse_args(argv)
    labels = args.labels or [Path(p).stem for p in args.reports]
    if len(labels) != len(args.reports):
        ap.error(f"{len(labels)} labels for {len(args.reports)} reports")
    try:
        reports = [json.loads(Path(p).read_text()) for p in args.reports]
        result = series(reports, labels, args.section, args.task)
    except (OSError, ValueError) as exc:
        print(f"parallax_report: error: {exc}", file=sys.stderr)
        return 2
    cmd = "python training/parallax_report.py " + " ".join(argv if argv is not None else sys.argv[1:])
    bins = next(iter(result.values()))
    print(f"\n`{cmd.strip()}`: {args.section}, {args.task}, observable targets, median AbsRel per parallax bin (targets)\n")
    print("| | " + " | ".join(f"[{b['lo']:g}, {b['hi']:g}) px ({b['n']})" for b in bins) + " |")
    print("|---" * (len(bins) + 1) + "|")
    for name, s in result.items():
        print(f"| {name} | " + " | ".join("–" if not b["n"] else f"{b['abs_rel_median']:.3f}" for b in s) + " |")
    out = Path(args.out) if args.out else Path(args.reports[0]).parent / f"parallax_{args.section}_{args.task}.json"
    out.write_text(json.dumps({"command": cmd.strip(), "section": args.section, "task": args.task, "series": result}, indent=2))
    print(f"\nJSON: {out}")
    if args.figure:
        print(f"figure: {save_chart(args.figure, result, f'{args.section}, {args.task}: median AbsRel by parallax')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
