"""Checkpoints: round trip, atomic write, clear errors for every way a file can be wrong."""
import os

import numpy as np
import pytest
import torch

from mvgd_core.checkpoint import FORMAT, CheckpointError, half_weights, load_checkpoint, make_state, model_from_checkpoint, save_checkpoint
from mvgd_core.diffusion import DiffusionConfig
from mvgd_core.model import MVGD, PRESETS, grow_latents


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = MVGD(PRESETS["tiny"])
    with torch.no_grad():
        m.out.weight.normal_()  # make weights distinguishable from a fresh init
    return m


def test_round_trip_rebuilds_exact_model(tmp_path, model):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, make_state(model, DiffusionConfig(prediction_type="v"), step=7, ema=model))
    ckpt = load_checkpoint(path)
    assert ckpt["format"] == FORMAT and ckpt["step"] == 7
    assert ckpt["config"]["diffusion"]["prediction_type"] == "v"
    m2 = model_from_checkpoint(ckpt)
    assert m2.cfg == model.cfg
    for (k, a), (_, b) in zip(model.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no tmp file left behind


def test_overwrite_is_atomic_replacement(tmp_path, model):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, make_state(model, DiffusionConfig(), step=1))
    save_checkpoint(path, make_state(model, DiffusionConfig(), step=2))
    assert load_checkpoint(path)["step"] == 2


def test_failed_save_keeps_previous_file(tmp_path, model):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, make_state(model, DiffusionConfig(), step=1))

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint(path, make_state(model, DiffusionConfig(), step=2, bad=Unpicklable()))
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated_file(tmp_path, model):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, make_state(model, DiffusionConfig()))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="ckpt.pt"):
        load_checkpoint(path)


def test_garbage_file(tmp_path):
    """Random bytes reach torch.load's parsers in many ways (seen: IndexError); every one is a CheckpointError."""
    path = tmp_path / "ckpt.pt"
    rng = np.random.default_rng(0)
    for n in [0, 1, 8, 64, 256, 4096] * 5:
        path.write_bytes(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
        with pytest.raises(CheckpointError, match="ckpt.pt"):
            load_checkpoint(path)
    path.write_bytes(b"PK\x03\x04" + os.urandom(512))  # looks like a zip (torch's format), is not
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_wrong_format_tag(tmp_path, model):
    path = tmp_path / "ckpt.pt"
    torch.save({**make_state(model, DiffusionConfig()), "format": "something-else"}, path)
    with pytest.raises(CheckpointError, match="format tag"):
        load_checkpoint(path)


def test_config_weights_mismatch(tmp_path, model):
    path = tmp_path / "ckpt.pt"
    state = make_state(model, DiffusionConfig())
    state["model"] = grow_latents(model, 32).state_dict()  # weights of a different model
    save_checkpoint(path, state)
    with pytest.raises(CheckpointError, match="do not match"):
        model_from_checkpoint(load_checkpoint(path))


def test_bad_config_key(tmp_path, model):
    path = tmp_path / "ckpt.pt"
    state = make_state(model, DiffusionConfig())
    state["config"]["model"]["num_latentz"] = 3
    save_checkpoint(path, state)
    with pytest.raises(CheckpointError, match="num_latentz"):
        model_from_checkpoint(load_checkpoint(path))


def test_old_config_without_new_fields_rebuilds_the_old_architecture(tmp_path, model):
    """Checkpoints written before issue 11 have no matching/decoder/scale keys: they load with the
    defaults, i.e. the paper's raymap design, strictly (no missing or unexpected weights)."""
    state = make_state(model, DiffusionConfig(), step=1)
    for k in ("scale_input", "decoder", "matching", "match_skip", "match_stride", "match_channels", "match_depths",
              "match_d_lo", "match_d_hi", "match_zncc", "match_width", "match_out", "decoder_width"):
        state["config"]["model"].pop(k)
    for k in ("match_weight", "depth_loss_when_clamped"):
        state["config"]["diffusion"].pop(k)
    path = tmp_path / "old.pt"
    save_checkpoint(path, state)
    m2 = model_from_checkpoint(load_checkpoint(path))
    assert not m2.cfg.matching and not m2.cfg.decoder and not m2.cfg.scale_input
    for (k, a), (_, b) in zip(model.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k


def test_half_weights_keeps_everything_else_and_refuses_overflow(model):
    state = make_state(model, DiffusionConfig(), step=7, ema=model, note="kept")
    half = half_weights(state)
    assert half["step"] == 7 and half["note"] == "kept" and half["config"] == state["config"]
    for key in ("model", "ema"):
        assert all(v.dtype == (torch.float16 if v.is_floating_point() else state[key][k].dtype) for k, v in half[key].items())
    assert all(v.dtype == torch.float32 for v in state["model"].values() if v.is_floating_point())  # input untouched
    name = next(k for k, v in state["model"].items() if v.is_floating_point())
    big = dict(state, model={**state["model"], name: state["model"][name] + 1e5})
    with pytest.raises(CheckpointError, match="float16"):
        half_weights(big)
