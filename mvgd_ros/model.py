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


# refine_hypotheses 0 (auto) on CUDA, where the band's warps are cheap; the CPU keeps RefineConfig's 7: there 11
# cost 9-13 ms per depth map and 10 Hz at 8 views would not hold (MODEL_CARD "More depths in the refinement's band").
CUDA_HYPOTHESES = 11


def load_predictor(checkpoint: str, device: str, steps: int, refine_hypotheses: int = 0, splat_radius: int = 0):
    """MVGDPredictor from the resolved checkpoint, its live-camera refinement trying `refine_hypotheses`
    depths per pixel (0: CUDA_HYPOTHESES on CUDA, RefineConfig's default elsewhere) and its virtual
    views' fusion filling `splat_radius` px around each keyframe point (FusionConfig); StartupError
    with the reason on failure."""
    import dataclasses

    from mvgd_core.checkpoint import CheckpointError
    from mvgd_core.inference import MVGDPredictor

    path = resolve_checkpoint(checkpoint)
    try:
        pred = MVGDPredictor.from_checkpoint(path, device=device, steps=steps)
    except CheckpointError as exc:
        raise StartupError(f"cannot load checkpoint {path}: {exc}; {TRAIN_HINT}") from exc
    except (RuntimeError, ValueError) as exc:  # e.g. device='cuda' without a GPU
        raise StartupError(f"cannot load model from {path} on device {device!r}: {exc}") from exc
    if refine_hypotheses or pred.device.type == "cuda":
        pred.refine = dataclasses.replace(pred.refine, hypotheses=refine_hypotheses or CUDA_HYPOTHESES)
    pred.fusion = dataclasses.replace(pred.fusion, splat_radius=splat_radius)
    return pred


def warm_up(predictor, out_hw: tuple[int, int], steps: int) -> float:
    """One depth prediction on two synthetic posed frames; returns its wall time (s).

    The first call pays for lazy set-up (CUDA context and kernels, allocator pools, torch's
    dispatcher caches), which made the first real frame many times slower than the next.
    StartupError if it fails: a model that cannot run should stop the node at start, not later.
    """
    import time

    import numpy as np

    from mvgd_core.data.types import Frame

    h, w = (int(v) for v in predictor.image_size)
    K = np.array([[w, 0.0, (w - 1) / 2], [0.0, w, (h - 1) / 2], [0.0, 0.0, 1.0]])
    rgb = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    T1 = np.eye(4)
    T1[0, 3] = 0.1  # a 10 cm baseline: the scene scale is defined
    cond = [Frame(rgb=rgb, K=K, T_wc=np.eye(4), stamp=0.0, frame_id="warm_up"), Frame(rgb=rgb, K=K, T_wc=T1, stamp=0.1, frame_id="warm_up")]
    from mvgd_ros.frames import scale_intrinsics

    t0 = time.monotonic()
    try:
        predictor.predict(cond, scale_intrinsics(K, (h, w), out_hw), np.eye(4), tuple(out_hw), task="depth", steps=steps, seed=0)
    except (RuntimeError, ValueError) as exc:
        raise StartupError(f"warm-up inference failed: {type(exc).__name__}: {exc}") from exc
    return time.monotonic() - t0


def hardware_id(predictor) -> str:
    """What diagnostics' hardware_id names: the inference device, e.g. 'cuda:0 NVIDIA H200' or 'cpu x86_64 (4 threads)'."""
    import platform

    import torch

    dev = torch.device(getattr(predictor, "device", "cpu"))
    if dev.type == "cuda":
        idx = dev.index if dev.index is not None else torch.cuda.current_device()
        return f"cuda:{idx} {torch.cuda.get_device_name(idx)}"
    return f"{dev.type} {platform.machine()} ({torch.get_num_threads()} threads)"
