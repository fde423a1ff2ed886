"""The ``wallmesh`` entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance import __version__
from appliance.cli import COMMANDS, build_parser


def test_every_command_is_registered():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS)


def test_version_runs_as_a_process():
    out = subprocess.run([sys.executable, "-m", "appliance.cli", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"wallmesh {__version__}"


def _wallmesh(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "WALLMESH_STATE_DIR"}
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], input=stdin, capture_output=True, text=True,
                          timeout=60, env=env)


@pytest.mark.skipif(Path("/etc/wallmesh/signal.toml").exists() or Path("/var/lib/wallmesh").exists(),
                    reason="this machine has a signaling server set up; the test needs one that has none")
def test_admin_with_no_config_and_no_state_dir_creates_nothing() -> None:
    """With no config and no --state-dir, the built-in default state directory is never made."""
    for args, stdin in ((("user", "list"), ""), (("user", "add", "erin"), "long enough pw\n"), (("device", "token"), "")):
        done = _wallmesh(*args, stdin=stdin)
        assert done.returncode == 1, done
        assert done.stdout == ""
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
        assert "/etc/wallmesh/signal.toml" in done.stderr and "/var/lib/wallmesh/signal" in done.stderr
        assert "--state-dir" in done.stderr
        assert not Path("/var/lib/wallmesh").exists()


def test_listing_a_state_dir_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    state = tmp_path / "nowhere"
    for args in (("user", "list"), ("user", "remove", "erin"), ("device", "list"), ("device", "token", "--list")):
        done = _wallmesh(*args, "--state-dir", str(state))
        assert done.returncode == 1, done
        assert done.stderr.count("\n") == 1 and str(state) in done.stderr and "does not exist" in done.stderr, done.stderr
        assert not state.exists()
