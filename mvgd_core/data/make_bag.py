"""Regenerate the shipped demo bags deterministically.

    python -m mvgd_core.data.make_bag                 # both bags into data/bags/
    python -m mvgd_core.data.make_bag --only procedural_demo --out /tmp/bags

- procedural_demo (mcap): a rendered indoor sequence, 48 frames at 128x96, seed 7, forward
  motion, depth 32FC1; stamps start at 1.7e9 s (ROS time 0 means "latest" to tf2).
- tum_fr1_rpy (sqlite3): the 58 real TUM RGB-D fr1/rpy frames of data/tum_fr1_rpy_small,
  downscaled to 256x192, depth 16UC1 (the sensor's native millimetres), original stamps.

Both use mvgd_core.data.rosbag_io.BagLayout: topics /camera/color/image_raw,
/camera/depth/image_raw, /camera/color/camera_info, /tf, /tf_static; frames
map -> odom -> base_link -> camera_link -> camera_color_optical_frame.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from mvgd_core.data.render import ProceduralConfig, render_sequence
from mvgd_core.data.rosbag_io import read_bag, write_bag
from mvgd_core.data.sampler import resize_frame
from mvgd_core.data.tum import read_tum

ROOT = Path(__file__).resolve().parents[2]
PROCEDURAL = dict(seed=7, num_frames=48, height=96, width=128, trajectory="forward", stamp_offset=1.7e9)
TUM = dict(src="data/tum_fr1_rpy_small", hw=(192, 256), associations="associations_every12.txt")


def make_procedural(out: Path) -> Path:
    """Render and write data/bags/procedural_demo (mcap)."""
    p = PROCEDURAL
    frames = render_sequence(p["seed"], p["num_frames"], p["height"], p["width"], ProceduralConfig(p_indoor=1.0), trajectory=p["trajectory"])
    return write_bag(frames, out / "procedural_demo", storage="mcap", depth_encoding="32FC1", stamp_offset=p["stamp_offset"], overwrite=True)


def make_tum(out: Path) -> Path:
    """Write data/bags/tum_fr1_rpy (sqlite3) from the shipped TUM copy."""
    frames = read_tum(ROOT / TUM["src"], camera="fr1", associations=TUM["associations"])
    frames = [resize_frame(f, TUM["hw"], crop_to_aspect=False) for f in tqdm(frames, desc="resize tum_fr1_rpy", unit="frame")]
    return write_bag(frames, out / "tum_fr1_rpy", storage="sqlite3", depth_encoding="16UC1", overwrite=True)


MAKERS = {"procedural_demo": make_procedural, "tum_fr1_rpy": make_tum}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mvgd_core.data.make_bag", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "data" / "bags"), help="folder that receives the bag folders")
    ap.add_argument("--only", choices=sorted(MAKERS), default=None)
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, make in MAKERS.items():
        if a.only and name != a.only:
            continue
        bag = make(out)
        n = len(read_bag(bag))  # read back: the bag is usable as written
        size = sum(f.stat().st_size for f in bag.iterdir()) / 1e6
        print(f"{bag}: {n} posed frames, {size:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
