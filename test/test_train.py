"""Trainer: exact resume, atomic checkpoints under kill -9, clear errors, DDP, fine-tuning, CLI.

All runs use training/configs/tiny_test.yaml (16x16 images, ~30k parameters) on CPU.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from mvgd_core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mvgd_core.config import load_config
from mvgd_core.data.types import MultiViewBatch
from mvgd_core.diffusion import TASK_DEPTH, TASK_RGB
from mvgd_core.train import main, train
from mvgd_core.train_config import OptimConfig, TrainConfig, lr_at
from mvgd_core.train_data import batch_stream, build_train_dataset, choose_tasks
from mvgd_core.train_state import export_model, state_digest

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "training" / "configs" / "tiny_test.yaml"
PY = sys.executable


def tiny(tmp_path, name="run", **kw) -> TrainConfig:
    over = {"run_dir": str(tmp_path / name), **kw}
    return load_config(TrainConfig, TINY, over)


def test_lr_schedule_warmup_then_cosine():
    o = OptimConfig(lr=1e-3, min_lr=1e-4, warmup_steps=10)
    assert lr_at(0, o, 100) == pytest.approx(1e-4)
    assert lr_at(9, o, 100) == pytest.approx(1e-3)
    assert lr_at(10, o, 100) == pytest.approx(1e-3)
    assert lr_at(55, o, 100) == pytest.approx(0.5 * (1e-3 + 1e-4))
    assert lr_at(100, o, 100) == pytest.approx(1e-4)
    assert all(lr_at(s, o, 100) >= lr_at(s + 1, o, 100) for s in range(10, 100))


def test_resume_is_bit_identical_and_validation_does_not_perturb(tmp_path):
    # Straight: 6 steps with validation at 2 and 4. Split: 3 steps, stop, resume to 6 without validation.
    a = train(tiny(tmp_path, "straight", steps=6, val={"every": 2}), progress=False)
    cfg_b = tiny(tmp_path, "split", steps=6)
    b1 = train(cfg_b, progress=False, stop_after=3)
    assert b1["step"] == 3
    b = train(cfg_b, progress=False)
    assert b["step"] == 6
    assert a["weights_sha256"] == b["weights_sha256"]
    assert a["ema_sha256"] == b["ema_sha256"]
    ca, cb = load_checkpoint(tmp_path / "straight" / "checkpoint.pt"), load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    for k in ca["model"]:
        assert torch.equal(ca["model"][k], cb["model"][k]), k
    sa, sb = ca["optimizer"]["state"], cb["optimizer"]["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)
    assert ca["data"]["micro_batches"] == cb["data"]["micro_batches"] == 6
    assert (tmp_path / "straight" / "val" / "step0000004.png").is_file()
    rows = (tmp_path / "split" / "metrics.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["2", "4", "6"]  # resumed CSV: no duplicate / lost rows
    assert b1["weights_sha256"] != b["weights_sha256"]  # the second half really trained


def test_batch_stream_resumes_at_data_position_across_epochs(tmp_path):
    cfg = tiny(tmp_path, data={"length": 12, "image_hw": [16, 16]}, batch_size=4)  # 3 batches per epoch
    ds = build_train_dataset(cfg.data)
    full = batch_stream(ds, cfg, 0, 0, 1)
    ref = [next(full) for _ in range(7)]
    late = batch_stream(ds, cfg, 4, 0, 1)  # epoch 1, batch 1
    for want in ref[4:]:
        got = next(late)
        assert torch.equal(got.tgt_rgb, want.tgt_rgb) and torch.equal(got.cond_T_wc, want.cond_T_wc)
    assert not torch.equal(ref[0].tgt_rgb, ref[3].tgt_rgb)  # epochs are reshuffled


_CRASHER = """
import sys
from mvgd_core.config import load_config
from mvgd_core.train import train
from mvgd_core.train_config import TrainConfig
cfg = load_config(TrainConfig, sys.argv[1], {"run_dir": sys.argv[2], "steps": 100000, "ckpt_every": 1, "log_every": 1})
train(cfg, progress=False)
"""


def test_kill_during_training_never_leaves_a_corrupt_checkpoint(tmp_path):
    """kill -9 the trainer (checkpointing every step) at arbitrary moments: the checkpoint always
    loads, and training resumes from it."""
    run = tmp_path / "crash"
    script = tmp_path / "crash.py"
    script.write_text(_CRASHER)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    steps_seen = []
    for delay in (0.0, 0.37):
        p = subprocess.Popen([PY, str(script), str(TINY), str(run)], env=env, cwd=ROOT, stderr=subprocess.PIPE)
        try:
            t0 = time.time()
            ck = run / "checkpoint.pt"
            start = ck.stat().st_mtime_ns if ck.exists() else 0
            while time.time() - t0 < 60 and not (ck.exists() and ck.stat().st_mtime_ns != start):
                time.sleep(0.02)  # wait for at least one new checkpoint
            time.sleep(delay)
            p.kill()
        finally:
            p.wait(timeout=30)
        assert p.returncode == -9, p.stderr.read().decode()[-2000:]
        state = load_checkpoint(run / "checkpoint.pt")  # never corrupt, whatever the kill interrupted
        steps_seen.append(state["step"])
    assert steps_seen[1] >= steps_seen[0] >= 1  # the second run resumed instead of restarting
    out = train(tiny(tmp_path, "crash", steps=steps_seen[1] + 2), progress=False)
    assert out["step"] == steps_seen[1] + 2
    assert not [f.name for f in run.iterdir() if f.name.endswith(".tmp")]  # the trainer sweeps a killed save's tmp file


_GRACEFUL = """
import sys
from mvgd_core.config import load_config
from mvgd_core.train import train
from mvgd_core.train_config import TrainConfig
cfg = load_config(TrainConfig, sys.argv[1], {"run_dir": sys.argv[2], "steps": 100000, "num_workers": 1, "log_every": 1,
                                             "ckpt_every": 0, "ckpt_minutes": 0})
print("stopped at", train(cfg, progress=False)["step"], flush=True)
"""


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_signal_to_process_group_stops_with_a_checkpoint(tmp_path, sig):
    """`kill -TERM -PGID` / Ctrl-C reach the DataLoader worker too: it must not die first and crash
    the trainer; the trainer saves at the next step boundary and exits 0."""
    import signal

    run = tmp_path / "graceful"
    script = tmp_path / "graceful.py"
    script.write_text(_GRACEFUL)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([PY, str(script), str(TINY), str(run)], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        t0 = time.time()
        while time.time() - t0 < 90 and not ((run / "metrics.csv").exists() and len((run / "metrics.csv").read_text().splitlines()) > 3):
            time.sleep(0.05)  # a few steps done: the worker is running
        os.killpg(p.pid, getattr(signal, sig))
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 0, err[-2000:]
    stopped = int(out.split("stopped at")[1])
    assert load_checkpoint(run / "checkpoint.pt")["step"] == stopped >= 3
    assert f"({sig})" in err


def test_interrupted_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"config": {"model": {}}, "model": {"w": torch.ones(3)}, "step": 1})

    def boom(obj, f, *a, **k):
        f.write(b"partial garbage")
        raise KeyboardInterrupt  # like a signal mid-write

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"config": {"model": {}}, "model": {"w": torch.zeros(3)}, "step": 2})
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_corrupt_or_mismatched_checkpoint_errors(tmp_path, capsys):
    cfg = tiny(tmp_path, steps=2)
    train(cfg, progress=False)
    ck = Path(cfg.run_dir) / "checkpoint.pt"
    # mismatched model config
    with pytest.raises(CheckpointError, match="model config does not match"):
        train(dataclasses.replace(cfg, model={"num_latents": 8}, steps=4), progress=False)
    # exported model (no optimizer state) given as resume point
    exported = export_model(ck, tmp_path / "shipped.pt")
    with pytest.raises(CheckpointError, match="exported model"):
        train(dataclasses.replace(cfg, resume=str(exported), steps=4, run_dir=str(tmp_path / "x")), progress=False)
    # truncated file -> clear error, and the CLI exits non-zero naming it
    data = ck.read_bytes()
    ck.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="checkpoint"):
        train(dataclasses.replace(cfg, steps=4), progress=False)
    assert main(["--config", str(TINY), "--run-dir", cfg.run_dir, "--steps", "4", "--no-progress"]) == 3
    assert "checkpoint error" in capsys.readouterr().err


def test_export_strips_optimizer_and_loads_in_predictor(tmp_path):
    from mvgd_core.inference import MVGDPredictor

    cfg = tiny(tmp_path, steps=2)
    train(cfg, progress=False)
    ck = load_checkpoint(Path(cfg.run_dir) / "checkpoint.pt")
    out = export_model(Path(cfg.run_dir) / "checkpoint.pt", tmp_path / "m.pt")
    shipped = load_checkpoint(out)
    assert "optimizer" not in shipped and "ema" not in shipped and "rng" not in shipped
    assert all(torch.equal(shipped["model"][k], ck["ema"][k]) for k in ck["ema"])  # EMA weights shipped
    pred = MVGDPredictor.from_checkpoint(out, device="cpu", steps=2)
    assert pred.image_size == (16, 16)


def test_init_from_and_grow_latents(tmp_path):
    cfg = tiny(tmp_path, "small", steps=2)
    train(cfg, progress=False)
    src = export_model(Path(cfg.run_dir) / "checkpoint.pt", tmp_path / "small.pt")
    g = train(tiny(tmp_path, "grown", steps=2, init_from=str(src), grow_latents=32), progress=False)
    ck = load_checkpoint(tmp_path / "grown" / "checkpoint.pt")
    assert ck["config"]["model"]["num_latents"] == 32 and ck["model"]["latents"].shape[0] == 32
    assert ck["step"] == 2 and g["step"] == 2  # fresh schedule / optimizer
    # the originals survive the growth (they moved by at most 2 optimizer steps)
    old = load_checkpoint(src)["model"]["latents"]
    assert (ck["model"]["latents"][:16] - old).abs().max() < 0.05
    # plain fine-tuning keeps the architecture of the source
    f = train(tiny(tmp_path, "ft", steps=1, init_from=str(src), model={"num_latents": 8}), progress=False)
    assert load_checkpoint(tmp_path / "ft" / "checkpoint.pt")["config"]["model"]["num_latents"] == 16
    assert f["step"] == 1


def test_cli_overrides_and_bad_keys(tmp_path, capsys):
    run = tmp_path / "cli"
    rc = main(["--config", str(TINY), "--run-dir", str(run), "--steps", "1", "--no-progress",
               "--set", "optim.lr=0.002", "--set", "data.sampling.max_views=2"])
    assert rc == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["optim"]["lr"] == 0.002 and saved["data"]["sampling"]["max_views"] == 2 and saved["steps"] == 1
    assert main(["--config", str(TINY), "--run-dir", str(run), "--set", "optim.lrr=1"]) == 2
    err = capsys.readouterr().err
    assert "config error" in err and "lrr" in err


def test_choose_tasks_rules():
    B, N, H, W = 4, 2, 4, 4
    eye = torch.eye(4).expand(B, 4, 4).clone()
    cond_T = torch.eye(4).expand(B, N, 4, 4).clone()
    cond_T[:, :, 0, 3] = torch.tensor([1.0, 2.0])
    tgt_T = eye.clone()
    tgt_T[0, 0, 3] = 1.0  # sample 0: target is conditioning view 0
    depth = torch.ones(B, H, W)
    depth[3] = 0  # sample 3 has no valid depth
    batch = MultiViewBatch(torch.rand(B, N, 3, H, W), torch.eye(3).expand(B, N, 3, 3), cond_T, torch.rand(B, 3, H, W), depth,
                           torch.eye(3).expand(B, 3, 3), tgt_T)
    g = torch.Generator().manual_seed(0)
    t = choose_tasks(batch, 0.0, False, g)
    assert t.tolist() == [TASK_DEPTH, TASK_RGB, TASK_RGB, TASK_RGB]
    t = choose_tasks(batch, 1.0, False, g)
    assert t.tolist() == [TASK_DEPTH, TASK_DEPTH, TASK_DEPTH, TASK_RGB]
    assert choose_tasks(batch, 0.0, True, g)[0] == TASK_RGB


_DDP = """
import json, sys
from mvgd_core.config import load_config
from mvgd_core.train import train
from mvgd_core.train_config import TrainConfig
import torch.distributed as dist
cfg = load_config(TrainConfig, sys.argv[1], {"run_dir": sys.argv[2], "steps": 3, "num_workers": 0})
out = train(cfg, progress=False)
rank = out["rank"]
with open(f"{sys.argv[2]}/rank{rank}.json", "w") as f:
    json.dump({k: out[k] for k in ("weights_sha256", "ema_sha256", "world_size", "loss")}, f)
dist.destroy_process_group()
"""


def test_ddp_two_ranks_hold_identical_weights(tmp_path):
    import json

    script = tmp_path / "ddp.py"
    script.write_text(_DDP)
    run = tmp_path / "ddp"
    run.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    torchrun = Path(PY).parent / "torchrun"
    cmd = [str(torchrun), "--standalone", "--nproc_per_node=2", str(script), str(TINY), str(run)]
    r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    r0, r1 = (json.loads((run / f"rank{i}.json").read_text()) for i in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2
    assert r0["weights_sha256"] == r1["weights_sha256"] and r0["ema_sha256"] == r1["ema_sha256"]
    ck = load_checkpoint(run / "checkpoint.pt")
    assert ck["step"] == 3 and isinstance(ck["rng"], list) and len(ck["rng"]) == 2
    assert state_digest(ck["model"]) == r0["weights_sha256"]
    # the two ranks drew different noise (per-rank streams), so the comparison above is not vacuous
    assert not torch.equal(ck["rng"][0]["noise"], ck["rng"][1]["noise"])
