"""The node's process ends cleanly on Ctrl-C, even while a prediction runs (its own module: the
input tests' module-wide node would answer on the same topics)."""
import signal
import sys

import pytest

from ros_harness import wait_for
from ros_stream import BASE, Io, play_stream
from test_ros_input_e2e import HERE, _connect, _spawn

pytestmark = pytest.mark.ros


def test_ctrl_c_while_a_slow_prediction_runs_exits_cleanly(monkeypatch):
    """A prediction slower than the inference thread's join timeout (a weak CPU, a first CUDA
    call): Ctrl-C while it runs still ends the node with exit 0, no traceback and no abort."""
    monkeypatch.setenv("FAKE_MODEL_DELAY_S", "8")
    proc = _spawn([sys.executable, str(HERE / "fake_model_node.py")], "warm_up:=false", "fixed_frame:=odom", "tf_wait_s:=0.5",
                  "diagnostics_period_s:=0.2", "worker_stuck_s:=1.0", "torch_threads:=1")
    io = Io(name="shutdown_e2e")
    try:
        _connect(io, proc)
        play_stream(io, BASE, 0.5)
        wait_for(lambda: "inference running for" in io.message, "a prediction in progress (diagnostics)", deadline=30)
    finally:
        io.close()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    print(out[-3000:])
    assert proc.returncode == 0 and "Traceback" not in out
