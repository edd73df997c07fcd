"""`make demo`: the shipped model on the shipped bags, through the real node, into report/.

    python -m mvgd_ros.demo [--t0 EPOCH_S] [--budget 540] [--model models/mvgd_default.pt]

Runs `mvgd-eval` on the shipped bags in this order, as the time budget allows:
1. hololens_office (the headline): a real walk with strong translation, 47 frames of the
   HoloLens sequence's held-out last quarter (never trained on; ATTRIBUTION.md in the bag);
2. procedural_demo: a rendered indoor sequence with exact depth;
3. tum_fr1_rpy: real TUM RGB-D fr1/rpy, almost pure rotation. Kept as the contrast: most of
   its frames fall in the "none" observability regime, which shows what the regime split is
   for (without translation no method gets depth from geometry).
Writes report/README.md linking the reports and prints the headline numbers. `--t0` is when
`make demo` started (set-up included), so the budget covers the whole command; a later run is
skipped, with a note, when it would not fit.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mvgd_core.report import headline

ROOT = Path(__file__).resolve().parents[1]
BAGS = [  # (name, bag folder, extra mvgd-eval flags); first = headline
    ("hololens_office", "data/bags/hololens_office", []),  # real walk with translation, held-out frames (data/bags/hololens_office/ATTRIBUTION.md)
    ("procedural_demo", "data/bags/procedural_demo", []),
    ("tum_fr1_rpy", "data/bags/tum_fr1_rpy", []),
]


def _find_bag(rel: str) -> Path | None:
    p = ROOT / rel
    if p.exists():
        return p
    cands = sorted((ROOT / "data" / "bags").glob(Path(rel).name + "*")) if (ROOT / "data" / "bags").exists() else []
    return cands[0] if cands else None


def main(argv=None) -> int:
    from mvgd_ros import eval as E

    p = argparse.ArgumentParser(prog="mvgd-demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--t0", type=float, default=None, help="epoch seconds when `make demo` started")
    p.add_argument("--budget", type=float, default=540.0, help="seconds for the whole demo, set-up included")
    p.add_argument("--model", default=str(ROOT / "models" / "mvgd_default.pt"))
    p.add_argument("--out", default=str(ROOT / "report"))
    p.add_argument("--only", choices=[b[0] for b in BAGS], default=None)
    p.add_argument("--eval-args", default="", help="extra mvgd-eval flags (one string)")
    a = p.parse_args(argv)
    t0 = a.t0 or time.time()
    if not Path(a.model).is_file():
        print(f"mvgd-demo: error: no model at {a.model} (the shipped default is models/mvgd_default.pt)", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    done, skipped = [], []
    for i, (name, rel, extra) in enumerate(BAGS):
        if a.only and name != a.only:
            continue
        bag = _find_bag(rel)
        if bag is None:
            skipped.append(f"{name}: bag {rel} not found")
            continue
        elapsed = time.time() - t0
        if i > 0 and done:
            need = done[0][2] * 1.1  # the first run's duration as the estimate
            if elapsed + need > a.budget:
                skipped.append(f"{name}: skipped to stay within the {a.budget:.0f} s budget ({elapsed:.0f} s used, ~{need:.0f} s needed)")
                continue
        ts = time.time()
        print(f"\n[mvgd-demo] {name}: evaluating {bag.relative_to(ROOT) if bag.is_relative_to(ROOT) else bag}", flush=True)
        rc = E.main([str(bag), "--model", a.model, "--out", str(out / name), *extra, *a.eval_args.split()])
        if rc != 0:
            if i == 0:
                return rc
            skipped.append(f"{name}: mvgd-eval failed (exit {rc})")
            continue
        done.append((name, out / name, time.time() - ts))

    lines = ["# MVGD demo report", "", f"Model: `{Path(a.model).name}`. Total time {time.time() - t0:.0f} s (set-up included).", ""]
    print("\n" + "=" * 78)
    for name, folder, dt in done:
        s = json.loads((folder / "metrics.json").read_text())
        hl = headline(s)
        lines += [f"## {name} ({dt:.0f} s): [{name}/README.md]({name}/README.md)", "", "```", *hl, "```", "", f"![overview]({name}/overview.png)", ""]
        print(f"{name}: {folder}/README.md")
        for line in hl:
            print("  " + line)
    if skipped:
        lines += ["## Not run", ""] + [f"- {s}" for s in skipped]
        for s in skipped:
            print(f"not run: {s}")
    (out / "README.md").write_text("\n".join(lines) + "\n")
    print(f"\nReport: {out.resolve()}/README.md   (total {time.time() - t0:.0f} s including set-up)")
    return 0 if done else 2


if __name__ == "__main__":
    sys.exit(main())
