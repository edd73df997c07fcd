"""Numeric safety through the real `mvgd_node` console script (tiny random checkpoint) over DDS (issue 12):
a map frame 5e6 m from the origin gives the same depth; overflowing or singular intrinsics are
counted drops and do not poison later frames."""
import sys
from pathlib import Path

import numpy as np
import pytest

from ros_harness import send_until, sequence, tiny_checkpoint, wait_for  # noqa: F401
from test_ros_input_e2e import BASE, NS, node_process

from mvgd_ros import image_codec

pytestmark = pytest.mark.ros

EXE = Path(sys.executable).with_name("mvgd_node")


@pytest.fixture(scope="module")
def real(tiny_checkpoint):
    with node_process([str(EXE)], f"checkpoint:={tiny_checkpoint}", "device:=cpu", "steps:=1", "fixed_frame:=odom", "tf_wait_s:=0.3",
                      "diagnostics_period_s:=0.2", "torch_threads:=1", "max_views:=4", "warm_up:=false") as io:
        yield io


def _play_sequence(io, frames, base, shift):
    depths = []
    for i, f in enumerate(frames):
        ns = base + i * NS // 10
        T = f.T_wc.copy()
        T[:3, 3] += shift
        io.send_tf(ns, T)
        send_until(lambda: io.send_image(ns, T[:3, 3], K=f.K, rgb=f.rgb), lambda: io.depth_at(ns) is not None, f"depth {i}")
        depths.append(image_codec.image_to_depth(io.depth_at(ns)[1]))
    return depths


def test_a_map_frame_5e6_m_from_the_origin_gives_the_same_depth(real, sequence):
    frames = sequence[:4]
    real.reset_node()
    near = _play_sequence(real, frames, BASE + 500 * NS, np.zeros(3))
    real.reset_node()
    far = _play_sequence(real, frames, BASE + 600 * NS, np.array([5e6, 5e6, 0.0]))  # UTM-sized map coordinates
    for a, b in zip(near, far):
        valid = np.isfinite(a) & (a > 0)
        assert np.array_equal(valid, np.isfinite(b) & (b > 0)) and valid.any()
        rel = np.abs(b[valid] - a[valid]) / a[valid]
        assert rel.max() <= 1e-3, f"depth changed by up to {rel.max():.2%} (mean {rel.mean():.2%})"


def test_overflowing_or_singular_intrinsics_are_counted_drops_and_later_frames_still_work(real, sequence):
    f = sequence[0]
    base = BASE + 700 * NS
    huge_cx = f.K.copy()
    huge_cx[0, 2] = 1e39  # finite in float64, infinite in float32
    zero_row = f.K.copy()
    zero_row[2] = 0.0
    drops0 = int(real.diag.get("drop_bad_camera_info", "0"))
    for i, K in enumerate([huge_cx, zero_row]):
        ns = base + i * NS // 10
        real.send_tf(ns, f.T_wc)
        real.send_image(ns, f.T_wc[:3, 3], K=K, rgb=f.rgb)
    wait_for(lambda: int(real.diag.get("drop_bad_camera_info", "0")) >= drops0 + 2, "two bad camera_info drops counted")
    ok = base + 5 * NS // 10
    real.send_tf(ok, f.T_wc)
    send_until(lambda: real.send_image(ok, f.T_wc[:3, 3], K=f.K, rgb=f.rgb), lambda: real.depth_at(ok) is not None, "depth after them")
    d = image_codec.image_to_depth(real.depth_at(ok)[1])
    assert np.isfinite(d).any() and (d[np.isfinite(d)] > 0).all()
    assert real.depth_at(base) is None and real.depth_at(base + NS // 10) is None
    assert int(real.diag.get("total_inference_failed", "0")) == 0
