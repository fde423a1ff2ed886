"""Display test fixtures, and the pixel helpers as module ``wallmesh_pixels``."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest


def load_pixels() -> None:
    """Make ``pixels.py`` beside this file importable as ``wallmesh_pixels``.

    Tests run with ``--import-mode=importlib``, so a helper module beside them is
    loaded by path (as ``tests/e2e`` does); the controls tests load it too.
    """
    if "wallmesh_pixels" in sys.modules:
        return
    spec = importlib.util.spec_from_file_location("wallmesh_pixels", Path(__file__).with_name("pixels.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)


load_pixels()


@pytest.fixture
def snapshot_dir(tmp_path):
    """Where snapshots go: $WALLMESH_SNAPSHOTS keeps them for looking at, else a temp dir."""
    keep = os.environ.get("WALLMESH_SNAPSHOTS")
    if keep:
        os.makedirs(keep, exist_ok=True)
        return keep
    return str(tmp_path)
