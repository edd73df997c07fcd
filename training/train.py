#!/usr/bin/env python3
"""Train or fine-tune MVGD from a YAML config (same as the `mvgd-train` console script).

    python training/train.py --config training/configs/default.yaml
    python training/train.py --config training/configs/finetune_tum.yaml --init-from models/mvgd_default.pt
    torchrun --nproc_per_node=2 training/train.py --config training/configs/default.yaml

See mvgd_core/train_config.py for the config keys and docs/TRAINING.md for recipes.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout without installing

from mvgd_core.train import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
