"""Finding and loading the model checkpoint for the node."""
from __future__ import annotations

from pathlib import Path

DEFAULT_NAME = "mvgd_default.pt"
TRAIN_HINT = "train one with `python training/train.py --config training/configs/default.yaml` (writes models/mvgd_default.pt)"


class StartupError(RuntimeError):
    """The node cannot start (no checkpoint, unreadable checkpoint, bad device)."""


def default_candidates() -> list[Path]:
    """Where the shipped checkpoint lives: the source tree (also an editable install), then the ament share dir."""
    out = [Path(__file__).resolve().parents[1] / "models" / DEFAULT_NAME]
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            out.append(Path(get_package_share_directory("mvgd_ros")) / "models" / DEFAULT_NAME)
        except (PackageNotFoundError, OSError):  # not installed with ament, or AMENT_PREFIX_PATH unset
            pass
    except ImportError:
        pass
    return out


def resolve_checkpoint(value: str) -> Path:
    """The checkpoint file for parameter value `value` ('' = the package default); StartupError if absent."""
    candidates = [Path(value).expanduser()] if value else default_candidates()
    for c in candidates:
        if c.is_file():
            return c
    looked = ", ".join(str(c) for c in candidates)
    raise StartupError(f"no checkpoint found (looked at: {looked}); {TRAIN_HINT}, or pass -p checkpoint:=/path/to/model.pt")


def set_torch_threads(threads: int) -> None:
    """Intra-op CPU threads for inference (process-wide); 0 keeps torch's default."""
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


def load_predictor(checkpoint: str, device: str, steps: int):
    """MVGDPredictor from the resolved checkpoint; StartupError with the reason on failure."""
    from mvgd_core.checkpoint import CheckpointError
    from mvgd_core.inference import MVGDPredictor

    path = resolve_checkpoint(checkpoint)
    try:
        return MVGDPredictor.from_checkpoint(path, device=device, steps=steps)
    except CheckpointError as exc:
        raise StartupError(f"cannot load checkpoint {path}: {exc}; {TRAIN_HINT}") from exc
    except (RuntimeError, ValueError) as exc:  # e.g. device='cuda' without a GPU
        raise StartupError(f"cannot load model from {path} on device {device!r}: {exc}") from exc
