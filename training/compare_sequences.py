#!/usr/bin/env python3
"""Two `evaluate_sequences.py` runs compared frame by frame (prints a table, writes JSON, draws a scatter).

    python training/compare_sequences.py runs/eval/A.json runs/eval/B.json [--camera live] [--out cmp.json] [--figure cmp.png] [--labels A B]

For each set and lag both runs scored, the observable frames they share: both medians (AbsRel,
δ1), the 95 % paired bootstrap interval of median(B) - median(A) and the share of frames where B
is better (`compare_models.paired_cell`, as the held-out tables are compared), so that a setting
or a retrained stage can be judged on the same frames of a robot's stream. The figure puts every
shared frame at (A's AbsRel, B's AbsRel), one colour per set: below the diagonal B is better.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "training"))

import numpy as np  # noqa: E402

from compare_models import paired_cell  # noqa: E402

TIE = 1e-4  # AbsRel differences below this count as equal
COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def shared_frames(a: dict, b: dict, camera: str) -> dict:
    """{(set, lag): [(frame key, row of A, row of B)]} over the observable frames both runs scored."""
    out = {}
    for name, by_lag in a["results"].items():
        for lag, cams in by_lag.items():
            other = b["results"].get(name, {}).get(lag, {}).get(camera)
            if camera not in cams or other is None:
                continue
            ra = {(r["sequence"], r["frame"]): r for r in cams[camera]["rows"] if r["regime"] == "observable"}
            rb = {(r["sequence"], r["frame"]): r for r in other["rows"] if r["regime"] == "observable"}
            keys = sorted(set(ra) & set(rb))
            if keys:
                out[name, lag] = [(k, ra[k], rb[k]) for k in keys]
    return out


def compare(a: dict, b: dict, camera: str = "live", boot: int = 2000, seed: int = 0) -> list[dict]:
    """One row per set and lag: medians, paired intervals (each cell its own generator from `seed`,
    so a cell does not depend on which others were computed), and the frames where B's AbsRel is
    lower by more than TIE (float noise between two runs of the same code is not a gain)."""
    rows = []
    for (name, lag), frames in shared_frames(a, b, camera).items():
        get = lambda side, k: np.array([f[side][k] for f in frames], float)  # noqa: E731
        absrel = paired_cell(get(1, "abs_rel"), get(2, "abs_rel"), -1, boot, np.random.default_rng(seed))
        d1 = paired_cell(get(1, "delta1"), get(2, "delta1"), 1, boot, np.random.default_rng(seed))
        rows.append({"set": name, "lag": lag, "frames": len(frames), "abs_rel": absrel, "delta1": d1,
                     "b_better": int((get(2, "abs_rel") < get(1, "abs_rel") - TIE).sum())})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| set | lag | observable frames | A AbsRel / δ1 | B AbsRel / δ1 | B − A AbsRel [95 %] | B better on |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        a, d = r["abs_rel"], r["delta1"]
        lines.append(f"| {r['set']} | {r['lag']} | {r['frames']} | {a['median_a']:.3f} / {d['median_a']:.3f} | {a['median_b']:.3f} / {d['median_b']:.3f} "
                     f"| {a['diff']:+.3f} [{a['ci95'][0]:+.3f}, {a['ci95'][1]:+.3f}] | {r['b_better']} of {r['frames']} |")
    return "\n".join(lines)


def scatter(path, a: dict, b: dict, camera: str, names: tuple[str, str]) -> Path:
    """Every shared observable frame at (A's AbsRel, B's AbsRel), log axes, one colour per set and lag."""
    from PIL import Image, ImageDraw, ImageFont

    groups = shared_frames(a, b, camera)
    vals = [v for fs in groups.values() for _, ra, rb in fs for v in (ra["abs_rel"], rb["abs_rel"]) if v > 0]
    lo, hi = (np.log10(min(vals)) - 0.05, np.log10(max(vals)) + 0.05) if vals else (-2.0, 0.0)
    size, pad = 420, 50
    img = Image.new("RGB", (size + 2 * pad + 260, size + 2 * pad), "white")
    draw, font = ImageDraw.Draw(img), ImageFont.load_default()
    P = lambda v: (np.log10(max(v, 1e-6)) - lo) / (hi - lo) * size  # noqa: E731
    draw.rectangle([pad, pad, pad + size, pad + size], outline=(0, 0, 0))
    draw.line([pad, pad + size, pad + size, pad], fill=(160, 160, 160))  # the diagonal: B = A
    for t in (0.02, 0.05, 0.1, 0.2, 0.5, 1.0):
        if lo <= np.log10(t) <= hi:
            draw.text((pad + P(t) - 8, pad + size + 6), f"{t:g}", fill=(0, 0, 0), font=font)
            draw.text((pad - 30, pad + size - P(t) - 5), f"{t:g}", fill=(0, 0, 0), font=font)
    draw.text((pad, pad + size + 22), f"AbsRel, {names[0]} (observable {camera} frames)", fill=(0, 0, 0), font=font)
    draw.text((pad, 8), f"AbsRel, {names[1]}: below the diagonal it is better", fill=(0, 0, 0), font=font)
    for i, ((name, lag), frames) in enumerate(groups.items()):
        c = COLOURS[i % len(COLOURS)]
        for _, ra, rb in frames:
            x, y = pad + P(ra["abs_rel"]), pad + size - P(rb["abs_rel"])
            draw.ellipse([x - 2.5, y - 2.5, x + 2.5, y + 2.5], fill=c)
        better = sum(rb["abs_rel"] < ra["abs_rel"] - TIE for _, ra, rb in frames)
        draw.text((pad + size + 20, pad + 16 * i), f"{name[:24]} / lag {lag}: {better} of {len(frames)} below", fill=c, font=font)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return Path(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a", help="evaluate_sequences.py JSON (the reference)")
    ap.add_argument("b", help="evaluate_sequences.py JSON (the candidate)")
    ap.add_argument("--camera", default="live", choices=("live", "virtual"))
    ap.add_argument("--out", default="", help="JSON of the rows ('' = none)")
    ap.add_argument("--figure", default="", help="PNG scatter ('' = none)")
    ap.add_argument("--labels", nargs=2, default=None, metavar=("A", "B"), help="names of the two runs in the figure (default: file names)")
    args = ap.parse_args(argv)
    try:
        a, b = (json.loads(Path(p).read_text()) for p in (args.a, args.b))
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"compare_sequences: {exc}") from exc
    rows = compare(a, b, args.camera)
    if not rows:
        raise SystemExit(f"compare_sequences: {args.a} and {args.b} share no observable {args.camera} frame")
    print(f"A = {args.a}\nB = {args.b}\n\n{table(rows)}")
    if args.out:
        Path(args.out).write_text(json.dumps({"a": args.a, "b": args.b, "camera": args.camera, "rows": rows}, indent=1))
    if args.figure:
        print(f"figure: {scatter(args.figure, a, b, args.camera, tuple(args.labels or (Path(args.a).stem, Path(args.b).stem)))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
