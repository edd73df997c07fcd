"""Paired comparison of two models' held-out tables: is the difference bigger than the noise?

    python training/compare_models.py runs/eval/default.json runs/eval/candidate.json [--out runs/eval/cmp.json]

Both JSONs come from training/evaluate_model.py with the same arguments, so every section holds
the very same targets (same seeds, frames and conditioning views) in the same order; the check
below refuses files where they differ. Per section, task (cond / novel) and metric, over the
observable-regime targets: the median of A, the median of B, and a 95 % paired bootstrap
interval of median(B) - median(A) (targets resampled with replacement, the same draw for both
models), plus the share of targets on which B is better. Verdict per cell: "B better" / "A
better" when the interval excludes 0, else "level". Why: the card's rule ("better on the
held-out tables") was read off medians of 48-64 targets, and differences of 0.005 were within
what another draw of targets gives; this says which ones are not.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

# metric -> +1 when higher is better, -1 when lower is
METRICS = {"abs_rel": -1, "delta1": +1, "psnr": +1}
TASKS = ("cond", "novel")


class CompareError(ValueError):
    """The two evaluations do not hold the same targets."""


def _targets(section: dict, task: str) -> list[dict]:
    return section.get("per_sample", {}).get(task, [])


def _check_same_targets(a: list[dict], b: list[dict], where: str) -> None:
    if len(a) != len(b):
        raise CompareError(f"{where}: {len(a)} vs {len(b)} targets; run evaluate_model.py with the same arguments")
    for i, (ra, rb) in enumerate(zip(a, b)):
        same = ra.get("regime") == rb.get("regime") and abs(ra.get("observable_frac", 0) - rb.get("observable_frac", 0)) < 1e-9
        if not same:
            raise CompareError(f"{where}: target {i} differs (regime / observability); not the same targets")


def paired_cell(a: np.ndarray, b: np.ndarray, sign: int, boot: int, rng: np.random.Generator) -> dict:
    """Medians of a and b (n,), the 95 % bootstrap interval of median(b) - median(a), the share of
    targets where b is better, and the verdict."""
    n = len(a)
    idx = rng.integers(0, n, size=(boot, n))
    diff = np.median(b[idx], axis=1) - np.median(a[idx], axis=1)
    lo, hi = np.percentile(diff, [2.5, 97.5])
    better = float(np.mean(sign * (b - a) > 0))
    gains = sign * np.array([lo, hi])  # > 0: B better at that end of the interval
    verdict = "B better" if (gains > 0).all() else "A better" if (gains < 0).all() else "level"
    return {"n": n, "median_a": float(np.median(a)), "median_b": float(np.median(b)),
            "diff": float(np.median(b) - np.median(a)), "ci95": [float(lo), float(hi)], "b_better_share": better, "verdict": verdict}


def compare(ja: dict, jb: dict, method: str = "mvgd", boot: int = 2000, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for sec in ja["sections"]:
        if sec not in jb["sections"]:
            continue
        for task in TASKS:
            ta, tb = _targets(ja["sections"][sec], task), _targets(jb["sections"][sec], task)
            _check_same_targets(ta, tb, f"{sec}/{task}")
            keep = [i for i, r in enumerate(ta) if r.get("regime") == "observable"]
            for metric, sign in METRICS.items():
                key = f"{method}/{metric}"
                pairs = [(ta[i].get(key), tb[i].get(key)) for i in keep]
                pairs = [(x, y) for x, y in pairs if x is not None and y is not None and np.isfinite(x) and np.isfinite(y)]
                if len(pairs) < 5:
                    continue
                a, b = (np.array(v, dtype=np.float64) for v in zip(*pairs))
                rows.append({"section": sec, "task": task, "metric": metric, **paired_cell(a, b, sign, boot, rng)})
    return rows


def print_table(rows: list[dict], name_a: str, name_b: str) -> None:
    print(f"A = {name_a}\nB = {name_b}\nobservable-regime targets, medians; 95 % paired bootstrap interval of median(B) - median(A)\n")
    print("| section | task | metric | n | A | B | B - A [95 % interval] | B better on | verdict |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        lo, hi = r["ci95"]
        print(f"| {r['section']} | {r['task']} | {r['metric']} | {r['n']} | {r['median_a']:.3f} | {r['median_b']:.3f} | "
              f"{r['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}] | {100 * r['b_better_share']:.0f} % | {r['verdict']} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("a", type=Path, help="evaluate_model.py JSON of the reference (e.g. the shipped model)")
    p.add_argument("b", type=Path, help="evaluate_model.py JSON of the candidate")
    p.add_argument("--method", default="mvgd", help="row to compare: mvgd (what the node publishes) or mvgd_net")
    p.add_argument("--boot", type=int, default=2000, help="bootstrap draws")
    p.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = p.parse_args(argv)
    try:
        ja, jb = (json.loads(x.read_text()) for x in (args.a, args.b))
        rows = compare(ja, jb, args.method, args.boot)
    except (OSError, json.JSONDecodeError, KeyError, CompareError) as exc:
        print(f"compare_models: {exc}", file=sys.stderr)
        return 2
    print_table(rows, f"{args.a} ({ja.get('model')})", f"{args.b} ({jb.get('model')})")
    if args.out:
        args.out.write_text(json.dumps({"a": str(args.a), "b": str(args.b), "method": args.method, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
