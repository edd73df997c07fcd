#!/usr/bin/env python3
"""Check the readers' pose and depth conventions on the real sequences (run once; needs ../shared/data).

    python benchmarks/check_real_readers.py

For pairs of nearby frames of hololens_office (DeepVideoMVS reader) and tabletop_box
(7-Scenes reader): back-project frame a's depth with its pose, project into frame b, and
compare with b's depth (median relative disagreement over pixels valid in both). Done with the
poses as read (camera-to-world) and, as a control, inverted (read as world-to-camera): the
right convention must agree far better. Prints a table; JSON in benchmarks/results/.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "test")]

import torch  # noqa: E402

from mvgd_core.cameras import invert_pose  # noqa: E402
from mvgd_core.data.deepvideomvs import read_deepvideomvs  # noqa: E402
from mvgd_core.data.seven_scenes import read_seven_scenes  # noqa: E402
from mvgd_core.data.types import Frame  # noqa: E402
from test_data_real_readers import reprojection_agreement  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def _inverted(f: Frame) -> Frame:
    return Frame(rgb=f.rgb, K=f.K, T_wc=invert_pose(torch.from_numpy(f.T_wc)).numpy(), depth=f.depth)


def main() -> int:
    torch.set_num_threads(1)
    sets = [("hololens_office", lambda idx: read_deepvideomvs(SHARED / "hololens_office", indices=idx), [(0, 1), (0, 3), (100, 101), (100, 103), (279, 280), (279, 282), (370, 371)]),
            ("tabletop_box", lambda idx: read_seven_scenes(SHARED / "tabletop_box", indices=idx), [(0, 1), (0, 3), (20, 21), (20, 23), (47, 48)])]
    rows = []
    print("| sequence | frames | median rel. depth disagreement | pixels | poses inverted (control) |\n|---|---|---|---|---|")
    for name, read, pairs in sets:
        for i, j in pairs:
            a, b = read([i, j])
            e, n = reprojection_agreement(a, b)
            ew, _ = reprojection_agreement(_inverted(a), _inverted(b))
            rows.append({"sequence": name, "a": a.frame_id, "b": b.frame_id, "median_rel": e, "pixels": n, "median_rel_inverted": ew})
            print(f"| {name} | {a.frame_id} -> {b.frame_id} | {e:.2%} | {n} | {ew:.1%} |")
    out = ROOT / "benchmarks" / "results" / "real_readers_check.json"
    out.write_text(json.dumps({"command": "python benchmarks/check_real_readers.py", "pairs": rows}, indent=2) + "\n")
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
