"""Display test fixtures."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def snapshot_dir(tmp_path):
    """Where snapshots go: $WALLMESH_SNAPSHOTS keeps them for looking at, else a temp dir."""
    keep = os.environ.get("WALLMESH_SNAPSHOTS")
    if keep:
        os.makedirs(keep, exist_ok=True)
        return keep
    return str(tmp_path)
