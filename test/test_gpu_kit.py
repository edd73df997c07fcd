"""training/gpu_kit.py: what travels to a lent GPU is the HoloLens training part only, resized
with matching intrinsics, readable by the training reader, with its provenance."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mvgd_core.data.deepvideomvs import read_deepvideomvs, write_deepvideomvs
from mvgd_core.data.splits import HOLOLENS_NAME, HOLOLENS_NUM_FRAMES
from mvgd_core.data.types import Frame
from script_loader import load_script


def _fake_walk(path: Path) -> None:
    rng = np.random.default_rng(0)
    K = np.array([[50.0, 0, 26.5], [0, 50.0, 17.5], [0, 0, 1]])
    frames = []
    for k in range(HOLOLENS_NUM_FRAMES):
        T = np.eye(4)
        T[0, 3] = 0.01 * k  # the frame index is readable from the pose
        frames.append(Frame(rgb=rng.integers(0, 255, (35, 55, 3), dtype=np.uint8), K=K, T_wc=T,
                            depth=np.full((35, 55), 1.0 + 0.001 * k, np.float32)))
    write_deepvideomvs(frames, path)
    (path / "PROVENANCE.md").write_text("# licence and attribution\n")


def test_kit_holds_only_the_training_part_resized_with_its_intrinsics(tmp_path):
    kit = load_script("training/gpu_kit.py")
    _fake_walk(tmp_path / "shared" / HOLOLENS_NAME)
    dst = kit.build(tmp_path / "shared", tmp_path / "kit", scale=0.4, jpeg_quality=90)
    frames = read_deepvideomvs(dst)
    assert len(frames) == 279  # frames 0-278: the held-out quarter stays behind
    assert np.allclose([f.T_wc[0, 3] for f in frames], 0.01 * np.arange(279))
    assert frames[0].rgb.shape == (14, 22, 3) and frames[0].depth.shape == (14, 22)
    assert np.allclose(frames[0].K[0, 0], 50.0 * 22 / 55) and np.allclose(frames[0].K[0, 2], (26.5 + 0.5) * 22 / 55 - 0.5)
    assert abs(float(frames[-1].depth[3, 3]) - 1.278) < 1e-3  # depth in metres survives (mm PNG)
    assert all(p.suffix == ".jpg" for p in (dst / "images").iterdir())
    assert "attribution" in (dst / "PROVENANCE.md").read_text() and "frames 0-278" in (dst / "PROVENANCE.md").read_text().lower()
    assert dst.name != HOLOLENS_NAME  # read with split "all": the protected name would refuse it
