"""mvgd_ros/input_gaps.py: frames lost before the node, estimated from the gaps between image stamps."""
from __future__ import annotations

import numpy as np
import pytest

from mvgd_ros import diagnostics
from mvgd_ros.input_gaps import LOSS_WARN, InputGaps, loss_message

NS = 1_000_000_000
BASE = 1_700_000_000 * NS
PERIOD = NS // 30
BIG, SMALL = 640 * 480 * 3, 320 * 240 * 3


class Clock:
    def __init__(self):
        self.ns = 0

    def __call__(self):
        return self.ns


def stream(keep, n=120, jitter_ns=0, frame_id="cam", nbytes=SMALL, seed=0):
    """InputGaps fed a 30 Hz camera's frames k for which keep(k) holds (arrival = stamp)."""
    rng = np.random.default_rng(seed)
    clock = Clock()
    g = InputGaps(clock=clock)
    for k in range(n):
        stamp = BASE + k * PERIOD + (int(rng.integers(-jitter_ns, jitter_ns + 1)) if jitter_ns else 0)
        clock.ns = k * PERIOD
        if keep(k):
            g.add(frame_id, stamp, nbytes)
    return g, clock


def test_a_whole_stream_has_no_missing_frames_even_with_stamp_jitter():
    est = stream(lambda k: True, jitter_ns=3_000_000)[0].estimate()
    assert est.missing_share == pytest.approx(0.0, abs=0.02)
    assert est.rate_hz == pytest.approx(30.0, rel=0.15)
    assert loss_message(est) is None


def test_random_loss_is_measured_and_large_images_name_the_shared_memory_segment():
    rng = np.random.default_rng(1)
    kept = rng.random(120) < 0.37  # what bench_endurance measured for 921 KB images over default Fast DDS
    est = stream(lambda k: kept[k], nbytes=BIG)[0].estimate()
    assert est.missing_share == pytest.approx(1 - kept.mean(), abs=0.06)
    msg = loss_message(est)
    assert "never reached the node" in msg and "512 KiB shared-memory segment" in msg and "900 KiB" in msg
    small = loss_message(stream(lambda k: kept[k], nbytes=SMALL)[0].estimate())
    assert "never reached the node" in small and "shared-memory" not in small  # small images: the cause is elsewhere


def test_every_fourth_frame_withheld_as_mvgd_eval_does_is_counted_but_not_a_warning():
    est = stream(lambda k: k % 4 != 3)[0].estimate()
    assert est.missing_share == pytest.approx(0.25, abs=0.02)
    assert est.missing_share < LOSS_WARN and loss_message(est) is None


def test_a_regular_pattern_is_a_slower_camera_and_only_recent_images_count():
    g, clock = stream(lambda k: k % 3 == 0, n=150)  # every third frame: indistinguishable from a 10 Hz camera
    assert g.estimate().missing_share == pytest.approx(0.0, abs=1e-9) and g.estimate().rate_hz == pytest.approx(10.0)
    kept = np.random.default_rng(2).random(300) < 0.5
    g, clock = stream(lambda k: k >= 150 or kept[k], n=300)  # lossy first 5 s, then 5 s whole: the window keeps the last 4 s
    assert g.estimate().missing_share == pytest.approx(0.0, abs=1e-9)
    clock.ns += 10 * NS  # nothing arrived for 10 s
    assert g.estimate() is None
    assert stream(lambda k: True, n=15)[0].estimate() is None


def test_gaps_are_per_camera_and_pauses_or_restarts_are_not_gaps():
    clock = Clock()
    g = InputGaps(clock=clock)
    for k in range(60):  # two cameras interleaved, both whole
        clock.ns = k * PERIOD
        g.add("left", BASE + k * PERIOD, SMALL)
        g.add("right", BASE + k * PERIOD + PERIOD // 2, SMALL)
    g.add("left", BASE + 61 * PERIOD + 3 * NS, SMALL)  # a 3 s pause
    g.add("left", BASE, SMALL)  # a bag restarted
    assert g.estimate().missing_share == pytest.approx(0.0, abs=1e-9)


def test_health_checks_warn_with_the_loss_message():
    facts = dict(depth_rate_hz=10.0, depth_wanted=True, since_image_s=0.1, uptime_s=100.0, worker_busy_s=None, failure_streak=0, dropped=0)
    cfg = diagnostics.HealthConfig()
    assert diagnostics.summarize(diagnostics.health_checks(cfg, **facts)) == ("ok", "running")
    level, msg = diagnostics.summarize(diagnostics.health_checks(cfg, **facts, input_loss="63% of the camera's frames never reached the node"))
    assert level == "warn" and "never reached the node" in msg


def test_the_shipped_fast_dds_profile_holds_a_1080p_image_keeps_udp_and_is_installed():
    import xml.etree.ElementTree as ET
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    ns = {"d": "http://www.eprosima.com"}
    tree = ET.parse(root / "config" / "fastdds_large_images.xml").getroot()
    kinds = {t.findtext("d:transport_id", namespaces=ns): t for t in tree.iterfind(".//d:transport_descriptor", ns)}
    shm = [t for t in kinds.values() if t.findtext("d:type", namespaces=ns) == "SHM"]
    assert shm and int(shm[0].findtext("d:segment_size", namespaces=ns)) >= 1920 * 1080 * 3 * 2
    assert any(t.findtext("d:type", namespaces=ns) == "UDPv4" for t in kinds.values())  # other hosts still reachable
    participant = tree.find(".//d:participant", ns)
    assert participant.get("is_default_profile") == "true"
    assert participant.findtext(".//d:useBuiltinTransports", namespaces=ns) == "false"  # else the 512 KB default segment stays in use
    assert {e.text for e in participant.iterfind(".//d:userTransports/d:transport_id", ns)} == set(kinds)
    assert 'glob("config/*.xml")' in (root / "setup.py").read_text()
