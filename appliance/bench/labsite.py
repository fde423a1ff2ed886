"""A wallmesh site on a :class:`~appliance.bench.netlab.Lab`: server and TURN on the switch,
one real ``wallmesh run`` per host.

The server binds the switch's address, so it serves HTTPS with its generated certificate
(the units pin its fingerprint, as enrolled units do) and hands out TURN REST credentials
when coturn runs. Units gather ICE host candidates from their ``eth0`` only
(``[ice] interfaces``), never from the machine's own interfaces, and are read through their
loopback ``GET /status`` inside their own namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.bench.netlab import Host, Lab, LabError
from appliance.demo.site import Site

STATUS_PORT = 8787  # each unit is alone in its namespace, so every one can use the same port
TURN_PORT = 3478


@dataclass
class LabUnit:
    """One ``wallmesh run`` on a lab host."""

    name: str
    host: Host
    proc: asyncio.subprocess.Process
    log_file: Path

    async def status(self) -> dict[str, Any] | None:
        """The unit's ``GET /status`` (None while it does not answer)."""
        if self.proc.returncode is not None:
            raise LabError(f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}")
        try:
            code, body = await self.host.http_get(STATUS_PORT, "/status", timeout=3.0)
        except (OSError, TimeoutError):
            return None
        return json.loads(body) if code == 200 else None

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    async def stop(self, timeout: float = 10.0) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


class LabSite:
    """Server (and optionally coturn) on the lab's switch; units on its hosts."""

    def __init__(self, lab: Lab, root: Path, room: str = "netlab") -> None:
        self.lab = lab
        self.root = Path(root)
        self.site = Site(self.root, room=room)  # writes unit configs the way the daemon reads them
        self.units: list[LabUnit] = []
        self.url = ""
        self.fingerprint = ""
        self.turn_secret = ""
        self._server: asyncio.subprocess.Process | None = None
        self._turn: asyncio.subprocess.Process | None = None

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("SDL_AUDIODRIVER", "dummy")
        env.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        repo = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = repo + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return env

    async def start_turn(self) -> None:
        """Debian's coturn on the switch in ``use-auth-secret`` mode (REST credentials)."""
        self.turn_secret = secrets.token_hex(32)
        log = self.root / "turn.log"
        self.root.mkdir(parents=True, exist_ok=True)
        cmd = [*self.lab.exec_prefix(), "turnserver", "-n", "--no-cli", "--no-tls", "--no-dtls",
               f"--listening-ip={self.lab.address}", f"--listening-port={TURN_PORT}", f"--relay-ip={self.lab.address}",
               "--min-port=49160", "--max-port=49260", "--use-auth-secret", f"--static-auth-secret={self.turn_secret}",
               "--realm=wallmesh.lab", "--no-stdout-log", f"--log-file={log}", f"--pidfile={self.root / 'turn.pid'}"]
        try:
            self._turn = await asyncio.create_subprocess_exec(
                *cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
        except FileNotFoundError as exc:
            raise LabError("coturn (turnserver) is missing: scripts/setup installs it") from exc
        text = ""
        for _ in range(150):
            text = "".join(p.read_text(errors="replace") for p in self.root.glob("turn*.log"))
            if self._turn.returncode is not None or "listener opened on" in text or "Total General servers" in text:
                break
            await asyncio.sleep(0.1)
        if self._turn.returncode is not None:
            raise LabError(f"coturn did not start: {text[-1000:]}")

    def turn_log(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.root.glob("turn*.log")))

    async def start_server(self) -> str:
        """The signaling server on the switch's address; returns its URL."""
        state = self.site.server_dir
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        cmd = [*self.lab.exec_prefix(), sys.executable, "-m", "appliance.demo.server", "--state-dir", str(state),
               "--host", self.lab.address, "--port", "8443"]
        if self.turn_secret:
            cmd += ["--turn-url", f"turn:{self.lab.address}:{TURN_PORT}?transport=udp", "--turn-secret", self.turn_secret]
        with await asyncio.to_thread(open, self.root / "server.log", "ab") as log:
            self._server = await asyncio.create_subprocess_exec(
                *cmd, stdout=asyncio.subprocess.PIPE, stderr=log, env=self._env(), start_new_session=True)
        assert self._server.stdout is not None
        try:
            line = await asyncio.wait_for(self._server.stdout.readline(), 60)
        except TimeoutError:
            line = b""
        text = line.decode().strip()
        if not text.startswith("listening on "):
            raise LabError(f"signaling server did not start: {(self.root / 'server.log').read_text()[-1500:]}")
        self.url = text.split(" ", 2)[2].rstrip("/")
        self.site.url = self.url
        self.fingerprint = json.loads((state / "server.json").read_text())["fingerprint"]
        return self.url

    async def spawn(self, host: Host, index: int, extra: dict[str, Any] | None = None) -> LabUnit:
        """Start unit ``index`` on ``host`` (again after a stop: it keeps its enrolled identity)."""
        from appliance.demo.site import merge

        config: dict[str, Any] = {
            "server": {"url": self.url, "fingerprint": self.fingerprint, "backoff_max_s": 10.0},
            "ice": {"loopback": False, "interfaces": [host.interface], "resolve_mdns": False},
            "status": {"host": "127.0.0.1", "port": STATUS_PORT, "file": ""},
            "video": {"width": 320, "height": 240, "fps": 15},
        }
        name, path, _status = self.site.unit_config(index, merge(config, extra or {}))
        log_file = self.root / name / "unit.log"
        with await asyncio.to_thread(open, log_file, "ab") as log:
            proc = await asyncio.create_subprocess_exec(
                *host.exec_prefix(), sys.executable, "-m", "appliance.cli", "-v", "run", "--config", str(path),
                stdout=log, stderr=log, env=self._env(), start_new_session=True)
        unit = LabUnit(name, host, proc, log_file)
        self.units = [u for u in self.units if u.name != name] + [unit]
        return unit

    async def close(self) -> None:
        await asyncio.gather(*(u.stop() for u in self.units), return_exceptions=True)
        for proc in (self._server, self._turn):
            if proc is not None and proc.returncode is None:
                # the server and its embedded store are one process group
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    await proc.wait()


def frames_from(status: dict[str, Any] | None, name: str) -> int:
    """Video frames a unit has received from the peer called ``name`` (0 when it has none)."""
    for peer in (status or {}).get("peers", []):
        if peer.get("name") == name:
            return int(peer.get("frames") or 0)
    return 0


def peer_named(status: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    for peer in (status or {}).get("peers", []):
        if peer.get("name") == name:
            return peer
    return None


async def until(check: Callable[[], Awaitable[Any]], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``check()`` until it returns something truthy; LabError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)
