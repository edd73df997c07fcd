"""Build `gpu_kit/`: the training data a device-tool GPU run needs that the repository lacks.

    python training/gpu_kit.py                 # reads ../shared/data, writes gpu_kit/ (ignored by git)

Why: the device machine gets the working tree plus at most 64 MiB of carried paths in all, and
never ../shared. The training mixture (training/configs/gpu.yaml) needs the HoloLens walk's
training part; this writes frames 0-278 only (mvgd_core.data.splits: the held-out quarter never
leaves this machine) at 0.4 of the resolution (216x144; training samples are 171x128 before the crop),
colour as JPEG, depth as 16-bit PNG, in the DeepVideoMVS layout, with the sequence's
PROVENANCE.md (licence and attribution travel with the copy). The run itself:
training/gpu_session.sh.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mvgd_core.data.deepvideomvs import read_deepvideomvs, write_deepvideomvs  # noqa: E402
from mvgd_core.data.sampler import resize_frame  # noqa: E402
from mvgd_core.data.splits import HOLOLENS_NAME, hololens_split  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KIT_NAME = "hololens_office_train"  # not HOLOLENS_NAME: the copy holds the training part only, read with split "all"
MAX_BYTES = 12 * 2**20  # with the working tree (~51 MiB) under the device tool's 64 MiB


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build(shared: Path, out: Path, scale: float = 0.4, jpeg_quality: int = 92) -> Path:
    src = shared / HOLOLENS_NAME
    train, _ = hololens_split()
    frames = read_deepvideomvs(src, indices=train)
    h, w = frames[0].rgb.shape[:2]
    hw = (int(round(h * scale)), int(round(w * scale)))
    small = [resize_frame(f, hw, crop_to_aspect=False) for f in frames]
    dst = out / KIT_NAME
    if dst.exists():
        shutil.rmtree(dst)
    write_deepvideomvs(small, dst, jpeg_quality=jpeg_quality)
    note = (f"\n\n## This copy (training/gpu_kit.py)\nFrames {train[0]}-{train[-1]} of the walk only (its training part; "
            f"the held-out quarter is not here), resized {w}x{h} -> {hw[1]}x{hw[0]} (colour INTER_AREA as JPEG "
            f"quality {jpeg_quality}, depth nearest as 16-bit PNG mm), intrinsics scaled to match.\n")
    (dst / "PROVENANCE.md").write_text((src / "PROVENANCE.md").read_text() + note)
    return dst


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data", help="folder holding hololens_office/")
    p.add_argument("--out", type=Path, default=ROOT / "gpu_kit")
    args = p.parse_args(argv)
    try:
        dst = build(args.shared, args.out)
    except (FileNotFoundError, ValueError) as exc:
        print(f"gpu_kit: {exc}", file=sys.stderr)
        return 2
    size = folder_bytes(args.out)
    print(f"{dst}: {len(list((dst / 'images').iterdir()))} frames, kit {size / 2**20:.1f} MiB")
    if size > MAX_BYTES:
        print(f"gpu_kit: {size / 2**20:.1f} MiB is over the {MAX_BYTES / 2**20:.0f} MiB the device tool leaves", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
