"""torch.distributed set-up for the trainer: torchrun's environment, or a single process.

    torchrun --standalone --nproc_per_node=2 training/train.py --config ...   # gloo on CPU, nccl on CUDA
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def setup_distributed(device: str) -> tuple[int, int, torch.device]:
    """(rank, world_size, device). torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    want_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if want_cuda and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} requested but CUDA is not available")
    if world > 1:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if want_cuda:
            torch.cuda.set_device(local)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if want_cuda else "gloo")
        rank = dist.get_rank()
        dev = torch.device("cuda", local) if want_cuda else torch.device("cpu")
        return rank, dist.get_world_size(), dev
    dev = torch.device(device if device != "auto" else ("cuda" if want_cuda else "cpu"))
    return 0, 1, dev


def any_rank(flag: bool, world: int, device) -> bool:
    """Any rank's flag, agreed by all ranks (so they stop at the same step)."""
    if world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t)
    return bool(t.item() > 0)
