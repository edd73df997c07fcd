#!/usr/bin/env python3
"""Everything after the network, for a newly trained one: the learned stage, its confidence head and
the calibration, in one resumable command (e.g. after `training/gpu_session.sh` brings back a candidate).

    python training/finish_model.py --model candidate.pt --write models/candidates/finished.pt --work runs/finish

A retrained network's checkpoint has no learned stage (`refine_net`), and the stage reads the
network's own outputs, so it is rebuilt on them:
1. gather the shipped stage's six training sets and its tuning set with their seeds (docs/TRAINING.md;
   never an evaluation seed, the HoloLens held-out quarter or the tabletop), in two processes;
2. train a stage from scratch on them with the shipped weights per set (stop 36: from scratch, 2000
   steps reach the shipped stage's tuning figure, 0.197 against 0.198);
3. add and train its uncertainty head, the depth frozen (stop 37);
4. fit the confidence calibration, four tables (`calibrate_confidence.py`).
Each step's output lands in --work and is kept: a rerun skips what exists, so an interrupted run
resumes. ~60 min on 2 CPU cores at --scale 1. --only picks sets (e.g. without the HoloLens folder,
which a fresh clone lacks: the replay and HoloLens sets need it, see --hololens); --scale shrinks the
sets (a dry run).
"""
from __future__ import annotations

import argparse
import math
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
STAGE_SCRIPT = [sys.executable, str(ROOT / "training" / "train_refine_net.py")]


class GatheredSet(NamedTuple):
    """One `train_refine_net.py gather` set: its arguments, its share of the training batches
    (None: the tuning set, reported on, never trained on) and the lane (process) it is gathered in."""

    name: str
    args: tuple[str, ...]
    weight: float | None
    lane: int


# The shipped stage's sets (stops 31-32) and its tuning set (procedural seed 6,000,000).
SETS = (
    GatheredSet("val_procedural", ("--source", "procedural", "--num", "200", "--views", "3", "--seed", "6000000"), None, 0),
    GatheredSet("proc_a", ("--source", "procedural", "--num", "2400", "--views", "2", "3", "4", "--seed", "8000000"), 0.5, 0),
    GatheredSet("hololens", ("--source", "hololens_train", "--num", "1500", "--seed", "8100000"), 0.5, 0),
    GatheredSet("replay_tum", ("--source", "replay_tum", "--seed", "0"), 0.5, 0),
    GatheredSet("proc_b", ("--source", "procedural", "--num", "1600", "--views", "5", "6", "--seed", "8200000"), 0.5, 1),
    GatheredSet("replay_hololens", ("--source", "replay_hololens", "--seed", "0"), 2.0, 1),
    GatheredSet("replay_procedural", ("--source", "replay_procedural", "--seed", "8300000", "--sequences", "12"), 1.0, 1),
)
SCALED = ("--num", "--sequences")  # the arguments --scale shrinks


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] finish_model: {msg}", flush=True)


def scaled(args: tuple[str, ...], scale: float) -> list[str]:
    """args with the values after --num / --sequences multiplied by scale (at least the number of
    views for --num, at least 1 for --sequences)."""
    out = list(args)
    views = 5  # gather's default --views 2 3 4 5 6
    if "--views" in out:
        after = out[out.index("--views") + 1:]
        views = next((k for k, v in enumerate(after) if v.startswith("--")), len(after))
    for i, a in enumerate(out[:-1]):
        if a in SCALED:
            out[i + 1] = str(max(views if a == "--num" else 1, math.ceil(int(out[i + 1]) * scale)))
    return out


def run(cmd: list[str], log_path: Path) -> None:
    """Run one step, its output in log_path; SystemExit naming the log when it fails."""
    log(" ".join(shlex.quote(c) for c in cmd) + f"  (log: {log_path})")
    with open(log_path, "w") as f:
        if subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT).returncode != 0:
            raise SystemExit(f"finish_model: step failed, see {log_path}")


def gather_sets(a, sets: list[GatheredSet]) -> dict[str, Path]:
    """{name: path} of every set, gathering the missing ones: one process per lane, the lanes side by side."""
    script = STAGE_SCRIPT + ["gather", "--model", str(a.model), "--threads", "1"]
    paths = {s.name: a.work / f"{s.name}.pt" for s in sets}

    def lane(k: int) -> None:
        for s in (s for s in sets if s.lane == k):
            if paths[s.name].is_file():
                log(f"{paths[s.name]} exists: kept")
                continue
            run(script + scaled(s.args, a.scale) + ["--hololens", a.hololens, "--out", str(paths[s.name])], a.work / f"gather_{s.name}.log")

    with ThreadPoolExecutor(2) as pool:
        for f in [pool.submit(lane, k) for k in (0, 1)]:
            f.result()
    return paths


def train_steps(a, sets: list[GatheredSet], paths: dict[str, Path]) -> Path:
    """The stage, then its head (stage.pt, head.pt in --work, each skipped when it exists): head.pt."""
    script = STAGE_SCRIPT + ["train", "--threads", str(a.threads)]
    train = [s for s in sets if s.weight is not None]
    report = [str(paths[s.name]) for s in sets if s.weight is None]
    data = ["--data", *[str(paths[s.name]) for s in train], "--weights", *[str(s.weight) for s in train]]
    stage, head = a.work / "stage.pt", a.work / "head.pt"
    if not stage.is_file():
        run(script + ["--model", str(a.model), *data, "--steps", str(a.steps), "--lr", "1e-3", "--report", *report,
                      "--write", str(stage)], a.work / "train_stage.log")
    if not head.is_file():
        run(script + ["--model", str(stage), *data, "--init-stage", "--uncertainty", "--steps", str(a.head_steps), "--lr", "1e-3",
                      "--report", *report, "--write", str(head)], a.work / "train_head.log")
    return head


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="the new network's checkpoint (any stage in it is ignored)")
    ap.add_argument("--write", type=Path, required=True, help="the finished checkpoint (may not be --model)")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "finish", help="gathered sets, stages, logs (kept: reruns resume)")
    ap.add_argument("--only", nargs="+", choices=[s.name for s in SETS], help="these sets only (default: all seven)")
    ap.add_argument("--scale", type=float, default=1.0, help="shrink the sets' target and sequence counts (a dry run)")
    ap.add_argument("--steps", type=int, default=2000, help="stage training steps")
    ap.add_argument("--head-steps", type=int, default=2000, help="uncertainty head training steps")
    ap.add_argument("--hololens", default="data/hololens_office|../shared/data/hololens_office", help="first existing wins")
    ap.add_argument("--calibrate-args", default="", help="extra calibrate_confidence.py flags (one string)")
    ap.add_argument("--threads", type=int, default=2)
    return ap


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    if a.write.resolve() == a.model.resolve():
        raise SystemExit("finish_model: --write must differ from --model (the gathered sets were made from --model's network)")
    sets = [s for s in SETS if a.only is None or s.name in a.only]
    if not any(s.weight is not None for s in sets) or not any(s.weight is None for s in sets):
        raise SystemExit("finish_model: --only needs at least one training set and the tuning set val_procedural")
    if not 0 < a.scale <= 1:
        raise SystemExit(f"finish_model: --scale must be in (0, 1], got {a.scale}")
    a.work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    head = train_steps(a, sets, gather_sets(a, sets))
    run([sys.executable, str(ROOT / "training" / "calibrate_confidence.py"), "--model", str(head), "--write", str(a.write),
         "--out", str(a.work / "calibration.json"), "--figure", str(a.work / "calibration.png"), "--threads", str(a.threads),
         *shlex.split(a.calibrate_args)], a.work / "calibrate.log")
    log(f"wrote {a.write} in {(time.time() - t0) / 60:.1f} min; the stage's reports: {a.work}/train_*.log, the calibration: "
        f"{a.work}/calibrate.log. Judge it by the card's rule (evaluate_model.py, evaluate_sequences.py, make demo).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
