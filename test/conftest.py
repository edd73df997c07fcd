"""Shared test set-up: small thread pools (2-core CI machine) and an isolated DDS domain per run."""
import os

# Loopback-only discovery and a domain id per test run, so parallel runs never cross-talk.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 200 + 20))

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def rng():
    """A seeded NumPy generator: tests are deterministic."""
    import numpy as np

    return np.random.default_rng(0)
