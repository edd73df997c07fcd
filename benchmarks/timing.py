"""What the benchmarks share: the timer (median over repeats of the median over calls, ms), the
JSON they write and their HxW argument."""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch


def median_ms(run: Callable[[], object], repeats: int, calls: int) -> float:
    """Call `run` once to warm up, then `repeats` x `calls` times; ms, median of per-repeat medians
    (one slow phase of a shared machine moves one repeat, not the result)."""
    run()
    per = []
    for _ in range(repeats):
        ts = []
        for _ in range(calls):
            t = time.perf_counter()
            run()
            ts.append(time.perf_counter() - t)
        per.append(float(np.median(ts)) * 1000)
    return float(np.median(per))


def hw_arg(text: str) -> tuple[int, int]:
    """argparse type for an image size: '128' -> (128, 128); '96x128' -> (96, 128)."""
    try:
        h, _, w = text.lower().partition("x")
        hw = (int(h), int(w or h))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected N or HxW, e.g. 96x128") from None
    if min(hw) < 16:
        raise argparse.ArgumentTypeError(f"size {text!r}: at least 16 pixels a side")
    return hw


def write_results(out: str, script: str, argv, rows: list) -> Path:
    """JSON with the command that made it, the environment and the rows; returns its path."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = f"python benchmarks/{script} " + " ".join(argv if argv is not None else sys.argv[1:])
    path.write_text(json.dumps({"command": cmd.strip(), "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
                                "load_average": list(os.getloadavg()), "rows": rows}, indent=2))
    return path


def print_table(rows: list, columns: list[tuple[str, str, str]]) -> None:
    """A markdown table of rows (dicts): columns are (header, key, format spec)."""
    print("\n| " + " | ".join(h for h, _, _ in columns) + " |\n|" + "---|" * len(columns))
    for r in rows:
        print("| " + " | ".join(format(r[k], f) for _, k, f in columns) + " |")


def finish(rows: list, columns: list[tuple[str, str, str]], out: str, script: str, argv) -> int:
    """Print the table, write the JSON, say where; the exit status."""
    print_table(rows, columns)
    print(f"\nJSON: {write_results(out, script, argv, rows)}")
    return 0
