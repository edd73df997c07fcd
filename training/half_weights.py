"""Store a shipped model's weights as float16 (half the file; everything else in it is kept).

    python training/half_weights.py models/mvgd_default.pt            # in place
    python training/half_weights.py IN.pt --out OUT.pt

Why: the shipped files travel with the repository, and the device tool sends at most 64 MiB of
it. The weights are cast back to float32 on load; re-measure the file afterwards
(training/evaluate_model.py), as the model card does for every shipped file.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mvgd_core.checkpoint import CheckpointError, half_weights, load_checkpoint, model_from_checkpoint, save_checkpoint  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", type=Path, help="an exported model (.pt)")
    p.add_argument("--out", type=Path, help="where to write (default: in place)")
    args = p.parse_args(argv)
    out = args.out or args.model
    try:
        state = half_weights(load_checkpoint(args.model))
        model_from_checkpoint(state)  # the halved weights still build the model
        save_checkpoint(out, state)
    except CheckpointError as exc:
        print(f"half_weights: {exc}", file=sys.stderr)
        return 2
    out.chmod(0o644)
    print(f"{args.model} ({args.model.stat().st_size / 1e6:.1f} MB) -> {out} ({out.stat().st_size / 1e6:.1f} MB)"
          if out != args.model else f"{out}: {out.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
