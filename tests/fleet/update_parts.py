"""Shared parts of the update tests: real wheels of wallmesh, a site server, an enrolled unit.

The wheels are built with pip from a copy of this checkout with its version
changed; the "crash" and "hang" builds also change ``wallmesh run`` so that it
exits with a traceback at start, or never serves its status.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import appliance
from appliance.demo.site import to_toml

REPO = Path(appliance.__file__).resolve().parents[1]
FACTORY = appliance.__version__
RUN_SOURCE = "appliance/commands/run.py"
BROKEN_RUN = {
    "crash": "    raise RuntimeError('this build crashes at start')\n",
    "hang": "    import time\n    time.sleep(3600)\n    return 1\n",
}


def build_wheel(out: Path, version: str, variant: str = "good") -> Path:
    """``pip wheel`` of this checkout as wallmesh ``version`` (offline: no build isolation)."""
    src = out / f"src-{version}"
    shutil.copytree(REPO / "appliance", src / "appliance", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    init = src / "appliance/__init__.py"
    init.write_text(re.sub(r'__version__ = "[^"]+"', f'__version__ = "{version}"', init.read_text()))
    if variant != "good":
        run = src / RUN_SOURCE
        text = run.read_text()
        head = "def run(args: argparse.Namespace) -> int:\n"
        assert head in text
        run.write_text(text.replace(head, head + BROKEN_RUN[variant]))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--quiet", "-w", str(out), str(src)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = out.glob(f"wallmesh-{version}-*.whl")
    return wheel


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Unit:
    """An enrolled unit's files: its config, its state directory, its status endpoint."""

    config: Path
    state_dir: Path
    status_url: str

    def slots_json(self) -> dict[str, Any]:
        path = self.state_dir / "versions/slots.json"
        return json.loads(path.read_text()) if path.exists() else {}


async def enrolled_unit(server: Any, root: Path, room: str = "boardroom") -> Unit:
    import aiohttp

    from appliance.unit import credentials

    token = await server.admin.enrollment_token(ttl_s=600)
    async with aiohttp.ClientSession() as session:
        ident = await credentials.enroll(session, server.url, aiohttp.Fingerprint(bytes.fromhex(server.fingerprint.replace(":", ""))),
                                         token, "unit-1", "Boardroom")
    state = root / "state"
    credentials.save_identity(state, ident)
    port = free_port()
    conf = {
        "room": room, "state_dir": str(state), "headless": True,
        "server": {"url": server.url, "fingerprint": server.fingerprint, "device_id": ident.device_id, "name": "Boardroom"},
        "ice": {"loopback": True}, "status": {"port": port},
    }
    path = root / "unit.toml"
    path.write_text(to_toml(conf))
    return Unit(path, state, f"http://127.0.0.1:{port}/status")


async def cli(*args: str, timeout: float = 120) -> tuple[int, str, str]:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "appliance.cli", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(child.communicate(), timeout)
    assert child.returncode is not None
    return child.returncode, out.decode(), err.decode()


async def launch(unit: Unit, deadline_s: float = 60) -> asyncio.subprocess.Process:
    """What wallmesh-unit.service starts."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "appliance.cli", "update", "launch", "--config", str(unit.config), "--health-deadline", str(deadline_s),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )


def status(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return None


async def in_room(unit: Unit, child: asyncio.subprocess.Process, room: str = "boardroom", timeout: float = 90) -> dict[str, Any]:
    """Wait until the daemon ``child`` has joined ``room``; its status document."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert child.returncode is None, (await child.stderr.read()).decode()[-3000:] if child.stderr else ""
        doc = await asyncio.to_thread(status, unit.status_url)
        if doc and doc.get("process", {}).get("pid") == child.pid and doc.get("joined_at") and doc.get("room") == room:
            return doc
        await asyncio.sleep(0.3)
    raise AssertionError(f"the unit did not join {room} within {timeout} s")


async def stop(child: asyncio.subprocess.Process) -> None:
    if child.returncode is None:
        child.terminate()
    await asyncio.wait_for(child.wait(), 30)


async def wait_for(predicate: Any, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        await asyncio.sleep(0.2)


def version_of(program: list[str]) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} if program[0] != sys.executable else None
    return subprocess.run([*program, "--version"], capture_output=True, text=True, timeout=60, env=env, check=True).stdout.strip()


async def starts_in_room(unit: Unit) -> None:
    """Start the unit as its service does, wait until it has joined its room, stop it."""
    daemon = await launch(unit)
    try:
        await in_room(unit, daemon)
    finally:
        await stop(daemon)
