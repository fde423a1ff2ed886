"""The ``wallmesh`` entry point."""

from __future__ import annotations

import subprocess
import sys

from appliance import __version__
from appliance.cli import COMMANDS, build_parser


def test_every_command_is_registered():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS)


def test_version_runs_as_a_process():
    out = subprocess.run([sys.executable, "-m", "appliance.cli", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"wallmesh {__version__}"
