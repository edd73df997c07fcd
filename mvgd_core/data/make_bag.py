"""Regenerate the shipped demo bags deterministically.

    python -m mvgd_core.data.make_bag                 # all bags into data/bags/
    python -m mvgd_core.data.make_bag --only hololens_office --out /tmp/bags

- hololens_office (mcap): every 2nd frame of the HoloLens office walk's HELD-OUT last quarter
  (mvgd_core.data.splits: sorted frames 279-372, never trained on), 47 frames, halved to
  270x180, depth 16UC1 millimetres, stamps 0.2 s apart (nominal: the source has none) from
  1.7e9 s. Needs the source sequence (--hololens, default ../shared/data/hololens_office);
  ATTRIBUTION.md (MIT licence of ardaduz/deep-video-mvs) is written next to the bag.

- procedural_demo (mcap): a rendered indoor sequence, 48 frames at 128x96, seed 7, forward
  motion, depth 32FC1; stamps start at 1.7e9 s (ROS time 0 means "latest" to tf2).
- tum_fr1_rpy (sqlite3): the 58 real TUM RGB-D fr1/rpy frames of data/tum_fr1_rpy_small,
  downscaled to 256x192, depth 16UC1 (the sensor's native millimetres), original stamps. The
  images stay raw (lens distortion in, as the Kinect driver publishes them) and camera_info
  carries fr1's published plumb_bob coefficients: the node rectifies them (`undistort`).

All use mvgd_core.data.rosbag_io.BagLayout: topics /camera/color/image_raw,
/camera/depth/image_raw, /camera/color/camera_info, /tf, /tf_static; frames
map -> odom -> base_link -> camera_link -> camera_color_optical_frame.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from mvgd_core.data.render import ProceduralConfig, render_sequence
from mvgd_core.data.rosbag_io import read_bag, write_bag
from mvgd_core.data.deepvideomvs import read_deepvideomvs
from mvgd_core.data.sampler import resize_frame
from mvgd_core.data.splits import hololens_split
from mvgd_core.data.tum import TUM_DISTORTION, read_tum
from mvgd_core.distortion import LensDistortion

ROOT = Path(__file__).resolve().parents[2]
PROCEDURAL = dict(seed=7, num_frames=48, height=96, width=128, trajectory="forward", stamp_offset=1.7e9)
TUM = dict(src="data/tum_fr1_rpy_small", hw=(192, 256), associations="associations_every12.txt")
HOLOLENS = dict(src=ROOT.parent / "shared" / "data" / "hololens_office", hw=(180, 270), stride=2, stamp_offset=1.7e9)
HOLOLENS_ATTRIBUTION = """# HoloLens office walk (demo bag) -- attribution and provenance

`hololens_office.mcap` is derived from the DeepVideoMVS sample sequence
`sample-data/hololens-dataset/000` of the public repository ardaduz/deep-video-mvs
(MIT License, Copyright (c) 2020 Arda Duzceker; licence text below).

Please cite: A. Duzceker, S. Galliani, C. Vogel, P. Speciale, M. Dusmanu, M. Pollefeys,
"DeepVideoMVS: Multi-View Stereo on Video with Recurrent Spatio-Temporal Fusion", CVPR 2021.

## What is in the bag (changes made)
- Only the held-out last quarter of the walk (sorted frames 279-372 of 373, the evaluation
  set of mvgd_core/data/splits.py, never trained on), every 2nd frame: 47 frames.
- Colour 540x360 halved to 270x180 (OpenCV INTER_AREA), intrinsics scaled with it; depth
  halved nearest-neighbour, stored as 16UC1 millimetres (0 = invalid) as in the source.
- Poses from `poses.txt` (camera-to-world, OpenCV optical) written as /tf
  map -> odom -> base_link plus the static camera mount, like the other demo bags.
- Stamps are synthetic (the source has none): 0.2 s apart from 1.7e9 s.
Regenerate: `python -m mvgd_core.data.make_bag --only hololens_office`.

## MIT License

Copyright (c) 2020 Arda Duzceker

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def make_procedural(out: Path) -> Path:
    """Render and write data/bags/procedural_demo (mcap)."""
    p = PROCEDURAL
    frames = render_sequence(p["seed"], p["num_frames"], p["height"], p["width"], ProceduralConfig(p_indoor=1.0), trajectory=p["trajectory"])
    return write_bag(frames, out / "procedural_demo", storage="mcap", depth_encoding="32FC1", stamp_offset=p["stamp_offset"], overwrite=True)


def make_tum(out: Path) -> Path:
    """Write data/bags/tum_fr1_rpy (sqlite3) from the shipped TUM copy."""
    frames = read_tum(ROOT / TUM["src"], camera="fr1", associations=TUM["associations"], undistort=False)
    frames = [resize_frame(f, TUM["hw"], crop_to_aspect=False) for f in tqdm(frames, desc="resize tum_fr1_rpy", unit="frame")]
    lens = LensDistortion("plumb_bob", TUM_DISTORTION["fr1"])  # raw images, as the Kinect driver publishes them
    return write_bag(frames, out / "tum_fr1_rpy", storage="sqlite3", depth_encoding="16UC1", overwrite=True, distortion=lens)


def make_hololens(out: Path, src: Path | None = None) -> Path:
    """Write data/bags/hololens_office (mcap) from the held-out quarter, plus ATTRIBUTION.md."""
    h = HOLOLENS
    _, held = hololens_split()
    frames = read_deepvideomvs(src or h["src"], indices=held, stride=h["stride"])
    frames = [resize_frame(f, h["hw"], crop_to_aspect=False) for f in tqdm(frames, desc="resize hololens_office", unit="frame")]
    bag = write_bag(frames, out / "hololens_office", storage="mcap", depth_encoding="16UC1", stamp_offset=h["stamp_offset"], overwrite=True)
    (bag / "ATTRIBUTION.md").write_text(HOLOLENS_ATTRIBUTION)
    return bag


MAKERS = {"hololens_office": make_hololens, "procedural_demo": make_procedural, "tum_fr1_rpy": make_tum}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mvgd_core.data.make_bag", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "data" / "bags"), help="folder that receives the bag folders")
    ap.add_argument("--only", choices=sorted(MAKERS), default=None)
    ap.add_argument("--hololens", default=str(HOLOLENS["src"]), help="source DeepVideoMVS folder of the hololens_office bag")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, make in MAKERS.items():
        if a.only and name != a.only:
            continue
        bag = make(out, Path(a.hololens)) if name == "hololens_office" else make(out)
        n = len(read_bag(bag))  # read back: the bag is usable as written
        size = sum(f.stat().st_size for f in bag.iterdir()) / 1e6  # ATTRIBUTION.md included
        print(f"{bag}: {n} posed frames, {size:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
