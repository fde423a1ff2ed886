"""The hardened unit for the site's Janus loads cleanly and stays hardened."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.systemd.test_units import HOST_UNITS, MAX_EXPOSURE, UNITS_DIR, exposure, verify

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing: run scripts/setup")
UNIT = "wallmesh-janus.service"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    if not Path("/usr/bin/janus").exists():
        pytest.skip("janus is not installed: run scripts/setup")
    unit_dir = tmp_path / "etc/systemd/system"
    unit_dir.mkdir(parents=True)
    shutil.copy(UNITS_DIR / UNIT, unit_dir / UNIT)
    shutil.copy(UNITS_DIR / "wallmesh-signal.service", unit_dir / "wallmesh-signal.service")
    shutil.copytree(HOST_UNITS, tmp_path / "usr/lib/systemd/system", symlinks=True)
    (tmp_path / "usr/bin").mkdir(parents=True, exist_ok=True)
    shutil.copy("/usr/bin/janus", tmp_path / "usr/bin/janus")
    bindir = tmp_path / "opt/wallmesh/bin"
    bindir.mkdir(parents=True)
    (bindir / "wallmesh").write_text("#!/bin/sh\n")
    (bindir / "wallmesh").chmod(0o755)
    return tmp_path


def test_the_janus_unit_verifies_and_stays_hardened(root: Path) -> None:
    done = verify(root, UNIT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Unknown" not in done.stderr, done.stderr
    assert exposure(root, UNIT) <= MAX_EXPOSURE
