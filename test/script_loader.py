"""Import a script that is not in a package (training/*.py, launch/*.py) as a module, for tests."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script(relpath: str, name: str | None = None):
    """The module of ROOT / relpath, executed once per call (each test gets a fresh module)."""
    path = ROOT / relpath
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
