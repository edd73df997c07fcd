"""Checkpoints: atomic save, validated load, and model rebuild from the stored config (nanoGPT style).

Checkpoint dict:
    {"format": FORMAT, "config": {"model": {...}, "diffusion": {...}, "train": {...}?},
     "model": state_dict, "ema": state_dict?, "step": int, "optimizer"?, "scheduler"?, "rng"?,
     "confidence_calibration"?: ConfidenceCalibration.to_dict() (training/calibrate_confidence.py),
     "refine_net"?: the learned second stage, refine_net_to_dict (training/train_refine_net.py)}
Configs are stored as plain dicts (config.to_dict) so a checkpoint rebuilds its model exactly.
Checkpoints without "confidence_calibration" (all before it existed) load as before: raw confidence.
Shipped models may store their weights as float16 (`half_weights`): half the file, and the
weights are cast back to the model's float32 on load (load_state_dict copies with a cast).

Loading uses torch.load(weights_only=True): a checkpoint cannot run code. Keep extra entries
to tensors and plain Python types (store RNG states as tensors / lists, e.g.
torch.get_rng_state(), np_rng.bit_generator.state dicts of ints). `trusted=True` lifts this for
files you wrote yourself.
"""
from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path

import torch

from mvgd_core.calibration import ConfidenceCalibration
from mvgd_core.config import ConfigError, from_dict, to_dict
from mvgd_core.diffusion import DiffusionConfig
from mvgd_core.model import MVGD, ModelConfig
from mvgd_core.refine_net import CHECKPOINT_KEY as REFINE_NET_KEY, RefineNet, refine_net_from_dict

FORMAT = "mvgd-checkpoint-v1"
CALIBRATION_KEY = "confidence_calibration"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, of the wrong format, or does not match its config."""


def save_checkpoint(path, state: dict) -> None:
    """Write `state` to `path` atomically: tmp file in the same directory, flush, fsync, os.replace.

    A crash mid-write leaves the previous checkpoint intact. Sets state["format"] if absent.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, **state}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass  # some filesystems do not support fsync on directories


def load_checkpoint(path, map_location="cpu", trusted: bool = False) -> dict:
    """Read and validate a checkpoint; CheckpointError (naming the file) on any problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=not trusted)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path}: not a valid checkpoint (corrupt, or holds objects other than tensors and "
                              f"plain types; use trusted=True only for your own files): {exc}") from exc
    except Exception as exc:  # garbage bytes surface as any of RuntimeError, EOFError, IndexError, KeyError, ...
        raise CheckpointError(f"{path}: unreadable or truncated checkpoint: {type(exc).__name__}: {exc}") from exc
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a dict, got {type(ckpt).__name__}")
    if ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format tag {ckpt.get('format')!r}, expected {FORMAT!r}")
    cfg = ckpt.get("config")
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), dict):
        raise CheckpointError(f"{path}: missing config.model")
    if not isinstance(ckpt.get("model"), dict):
        raise CheckpointError(f"{path}: missing model state_dict")
    return ckpt


def half_weights(state: dict) -> dict:
    """`state` with the floating-point tensors of "model" / "ema" stored as float16.

    Why: the shipped files travel with the repository (the device tool sends at most 64 MiB), and
    float16 keeps ~3 significant digits per weight (relative rounding <= 4.9e-4), far inside the
    model's own error; the card re-measures every shipped file. Refuses weights beyond float16's
    range instead of writing inf."""
    out = dict(state)
    for key in ("model", "ema"):
        if not isinstance(state.get(key), dict):
            continue
        halves = {}
        for name, t in state[key].items():
            if t.is_floating_point() and t.dtype != torch.float16:
                if t.numel() and t.abs().max() > torch.finfo(torch.float16).max:
                    raise CheckpointError(f"{key}.{name}: values beyond float16's range; store this model as float32")
                t = t.to(torch.float16)
            halves[name] = t
        out[key] = halves
    return out


def make_state(model: MVGD, diffusion_cfg: DiffusionConfig, step: int = 0, ema: MVGD | None = None, **extra) -> dict:
    """A checkpoint dict for `model` (and optional EMA copy); extra keys (optimizer, ...) pass through."""
    state = {
        "format": FORMAT,
        "config": {"model": to_dict(model.cfg), "diffusion": to_dict(diffusion_cfg)},
        "model": model.state_dict(),
        "step": int(step),
    }
    if ema is not None:
        state["ema"] = ema.state_dict()
    state.update(extra)
    return state


def configs_from_checkpoint(ckpt: dict) -> tuple[ModelConfig, DiffusionConfig]:
    try:
        mcfg = from_dict(ModelConfig, ckpt["config"]["model"], where="checkpoint.config.model")
        dcfg = from_dict(DiffusionConfig, ckpt["config"].get("diffusion") or {}, where="checkpoint.config.diffusion")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from exc
    return mcfg, dcfg


def model_from_checkpoint(ckpt: dict, use_ema: bool = True) -> MVGD:
    """Rebuild MVGD from the stored config and load weights (EMA weights when present and asked for)."""
    mcfg, _ = configs_from_checkpoint(ckpt)
    model = MVGD(mcfg)
    key = "ema" if use_ema and isinstance(ckpt.get("ema"), dict) else "model"
    try:
        model.load_state_dict(ckpt[key], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint weights ({key}) do not match its config: {exc}") from exc
    return model


def calibration_from_checkpoint(ckpt: dict) -> ConfidenceCalibration | None:
    """The stored confidence calibration (CALIBRATION_KEY), None when absent; CheckpointError when malformed."""
    d = ckpt.get(CALIBRATION_KEY)
    if d is None:
        return None
    try:
        return ConfidenceCalibration.from_dict(d)
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {CALIBRATION_KEY!r}: {exc}") from exc


def refine_net_from_checkpoint(ckpt: dict) -> RefineNet | None:
    """The stored learned second stage (REFINE_NET_KEY), None when absent; CheckpointError when malformed."""
    d = ckpt.get(REFINE_NET_KEY)
    if d is None:
        return None
    try:
        return refine_net_from_dict(d)
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {exc}") from exc
