"""The browser client's pure JavaScript (codec ordering, SDP direction parsing) under Node's test runner."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).parent
PEER_JS = HERE.parents[1] / "appliance/signaling/static/peer.js"

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node missing: scripts/setup installs nodejs")


def test_peer_module_pure_functions(tmp_path):
    # As an .mjs copy, so any Node version loads it as an ES module (peer.js imports nothing).
    module = tmp_path / "peer.mjs"
    shutil.copyfile(PEER_JS, module)
    proc = subprocess.run(
        ["node", "--test", str(HERE / "js/peer.test.mjs")],
        capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", "WALLMESH_PEER_JS": module.as_uri()},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "# fail 0" in proc.stdout and "# pass 3" in proc.stdout, proc.stdout
