"""What makes a resume exact: RNG states, progress counters, the full training checkpoint, and export.

A training checkpoint carries model, EMA, optimizer, LR step, every RNG (torch, numpy, python,
CUDA, and each rank's noise generator) and the data position; `export_model` strips it to the
shipped EMA weights.
"""
from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from mvgd_core.checkpoint import CheckpointError, configs_from_checkpoint, half_weights, load_checkpoint, model_from_checkpoint, save_checkpoint
from mvgd_core.config import to_dict
from mvgd_core.diffusion import DiffusionConfig
from mvgd_core.ema import EMA, unwrap
from mvgd_core.model import ModelConfig
from mvgd_core.train_config import TrainConfig


def rng_state(noise_gen: torch.Generator) -> dict:
    """All RNG states as tensors / plain types (checkpoints load with weights_only=True)."""
    np_state = np.random.get_state()
    py = random.getstate()
    st = {"torch": torch.get_rng_state(), "noise": noise_gen.get_state(),
          "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
          "python": [py[0], list(py[1]), py[2]]}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict, noise_gen: torch.Generator) -> None:
    """Restore what `rng_state` saved (the CUDA part only where CUDA is present)."""
    torch.set_rng_state(st["torch"])
    noise_gen.set_state(st["noise"])
    n = st["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))
    random.setstate((st["python"][0], tuple(st["python"][1]), st["python"][2]))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def gather_rngs(noise_gen: torch.Generator, world: int) -> list:
    """This rank's RNG states, or every rank's under DDP (so a resume restores each noise stream)."""
    rngs = [rng_state(noise_gen)]
    if world > 1:
        gathered = [None] * world
        dist.all_gather_object(gathered, rngs[0])
        rngs = gathered
    return rngs


@dataclass
class RunState:
    """What a checkpoint carries besides weights: progress counters and the training data's
    median depth (the const_train_median reference row of every evaluation)."""

    step: int = 0
    micro: int = 0  # micro-batches consumed (the data position)
    elapsed0: float = 0.0  # wall seconds of earlier processes of this run
    seen: int = 0  # samples seen
    depth_median: float | None = None


def check_resume(ckpt: dict, path, mcfg: ModelConfig, dcfg: DiffusionConfig, cfg: TrainConfig, world: int) -> list[str]:
    """CheckpointError when the checkpoint cannot continue this run; warnings for inexact resumes."""
    stored_m, stored_d = configs_from_checkpoint(ckpt)
    if stored_m != mcfg:
        new = to_dict(mcfg)
        diff = {k: (v, new[k]) for k, v in to_dict(stored_m).items() if new[k] != v}
        raise CheckpointError(f"{path}: model config does not match this run (checkpoint vs config: {diff}); "
                              f"use a new run_dir, or --init-from to fine-tune from it")
    if stored_d != dcfg:
        raise CheckpointError(f"{path}: diffusion config does not match this run: {to_dict(stored_d)} vs {to_dict(dcfg)}")
    for key in ("optimizer", "ema", "rng", "data"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: has no {key!r} state; it is an exported model, not a training checkpoint "
                                  f"(use --init-from to fine-tune from it)")
    warn = []
    old = ckpt["config"].get("train") or {}
    for k in ("batch_size", "grad_accum", "seed", "scene_reuse", "data"):
        if k in old and old[k] != to_dict(cfg)[k]:
            warn.append(f"{k} changed since the checkpoint: the resumed run is not an exact continuation")
    if ckpt["data"].get("world_size", 1) != world:
        warn.append(f"world size {ckpt['data'].get('world_size')} -> {world}: data order differs from a straight run")
    return warn


def load_resume(path: Path, model, ema, opt, noise_gen, mcfg, dcfg, cfg: TrainConfig, rank: int, world: int) -> RunState:
    """Restore model, EMA, optimizer and this rank's RNG streams from a training checkpoint."""
    ckpt = load_checkpoint(path)
    for w in check_resume(ckpt, path, mcfg, dcfg, cfg, world):
        if rank == 0:
            print(f"warning: {w}", file=sys.stderr)
    model.load_state_dict(ckpt["model"])
    ema.load_state_dict(ckpt["ema"])
    try:
        opt.load_state_dict(ckpt["optimizer"])
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: optimizer state does not match the model: {exc}") from exc
    rng = ckpt["rng"]
    set_rng_state(rng[rank] if isinstance(rng, list) and rank < len(rng) else (rng[0] if isinstance(rng, list) else rng), noise_gen)
    return RunState(int(ckpt["step"]), int(ckpt["data"]["micro_batches"]), float(ckpt.get("elapsed_s", 0.0)),
                    int(ckpt.get("samples_seen", 0)), ckpt.get("train_depth_median"))


def checkpoint_state(cfg: TrainConfig, mcfg: ModelConfig, dcfg: DiffusionConfig, model, ema: EMA, opt, st: RunState,
                     rngs: list, world: int, elapsed_s: float) -> dict:
    """The full training checkpoint (exact resume): weights, EMA, optimizer, RNGs, data position."""
    state = {"config": {"model": to_dict(mcfg), "diffusion": to_dict(dcfg), "train": to_dict(cfg)},
             "model": unwrap(model).state_dict(), "ema": ema.state_dict(), "step": st.step,
             "optimizer": opt.state_dict(), "scheduler": {"kind": "warmup_cosine", "step": st.step},
             "rng": rngs if world > 1 else rngs[0], "data": {"micro_batches": st.micro, "world_size": world},
             "elapsed_s": elapsed_s, "samples_seen": st.seen}
    if st.depth_median is not None:
        state["train_depth_median"] = float(st.depth_median)
    return state


def export_model(ckpt_path, out_path, use_ema: bool = True, half: bool = False) -> Path:
    """Ship a checkpoint: EMA weights as "model", no optimizer/RNG/EMA copy (about 1/4 the size);
    `half`: weights stored as float16 (checkpoint.half_weights; another half of the size)."""
    ckpt = load_checkpoint(ckpt_path)
    weights = ckpt["ema"] if use_ema and isinstance(ckpt.get("ema"), dict) else ckpt["model"]
    train = dict(ckpt["config"].get("train") or {})
    state = {"config": {"model": ckpt["config"]["model"], "diffusion": ckpt["config"].get("diffusion") or {}, "train": train},
             "model": {k: v.clone() for k, v in weights.items()}, "step": int(ckpt.get("step", 0)),
             "weights": "ema" if weights is ckpt.get("ema") else "model",
             "elapsed_s": float(ckpt.get("elapsed_s", 0.0)), "samples_seen": int(ckpt.get("samples_seen", 0))}
    if ckpt.get("train_depth_median") is not None:  # the const_train_median reference of every evaluation
        state["train_depth_median"] = float(ckpt["train_depth_median"])
    if half:
        state = half_weights(state)
    model_from_checkpoint(state)  # refuses to ship weights that do not match the config
    save_checkpoint(out_path, state)
    os.chmod(out_path, 0o644)  # a shipped file, readable by the node's user
    return Path(out_path)


def state_digest(state: dict) -> str:
    """sha256 over a state dict's tensors (bitwise identity of weights across ranks / runs)."""
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(state.items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
