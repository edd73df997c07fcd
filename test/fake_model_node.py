"""`mvgd_node` with a deterministic stand-in model, run as its own process by test_ros_input_e2e.py.

    python test/fake_model_node.py --ros-args -p ...

PosePredictor makes depth from poses alone, so the input path is tested without a network's
speed or randomness: each test image carries its camera's TRUE position (3 float64 in its
first 24 bytes); depth is TRUE_DEPTH x (1 + the largest distance, in metres, between a
conditioning view's given pose and its true position). Consistent poses give exactly
TRUE_DEPTH; a view whose pose is off (a localisation glitch) inflates depth the way a wrong
camera does for the real model (it breaks SSN's scale and the multi-view geometry).
With FAKE_MODEL_DELAY_S in the environment, each prediction first computes that long (a slow
model: a weak CPU, a first CUDA call).
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np
import torch

TRUE_DEPTH = 2.0


def encode_position(rgb: np.ndarray, position) -> np.ndarray:
    """A copy of rgb (H, W, 3) uint8 with the true camera position in its first 24 bytes."""
    out = np.ascontiguousarray(rgb).copy()
    flat = out.reshape(-1)
    flat[:24] = np.frombuffer(np.asarray(position, dtype=np.float64).tobytes(), dtype=np.uint8)
    return out


def decode_position(rgb: np.ndarray) -> np.ndarray:
    return np.frombuffer(np.ascontiguousarray(rgb).reshape(-1)[:24].tobytes(), dtype=np.float64)


class PosePredictor:
    image_size = (16, 16)
    device = "cpu"

    def predict(self, cond, tgt_K, tgt_T_wc, tgt_hw, task="depth", steps=None, seed=0, refine=None, synthesize=None):
        from mvgd_core.inference import Prediction

        busy_until = time.monotonic() + float(os.environ.get("FAKE_MODEL_DELAY_S", "0"))
        while time.monotonic() < busy_until:  # torch work, as a slow model's (not a sleep)
            torch.ones(256, 256) @ torch.ones(256, 256)
        err = max(float(np.linalg.norm(f.T_wc[:3, 3] - decode_position(f.rgb))) for f in cond)
        rel = [np.linalg.norm(f.T_wc[:3, 3] - np.asarray(tgt_T_wc)[:3, 3], ord=np.inf) for f in cond]
        scale = max(0.1, max(rel))  # SSN's scale, so the node's range check sees realistic numbers
        h, w = int(tgt_hw[0]), int(tgt_hw[1])
        depth = np.full((h, w), TRUE_DEPTH * (1.0 + err), np.float32) if task == "depth" else None
        rgb = np.zeros((h, w, 3), np.uint8) if task == "rgb" else None
        return Prediction(depth=depth, rgb=rgb, K=np.asarray(tgt_K, dtype=np.float64), scale=scale)


def main(args=None) -> int:
    from mvgd_ros.node import main as node_main

    return node_main(args, predictor=PosePredictor())


if __name__ == "__main__":
    sys.exit(main())
