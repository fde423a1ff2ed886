"""A whole site on one machine: a signaling server and unit daemons, each unit its own process.

The demo, the integration tests and the media benchmarks all run real
``wallmesh run`` processes against a real server through this module. Units
get generated configs (test-pattern camera, synthetic audio, null speaker,
loopback ICE, headless unless asked otherwise) and report through their status
file and loopback status endpoint — the interfaces an operator would use.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from appliance.demo import server as demo_server


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def to_toml(data: dict[str, Any]) -> str:
    """Enough TOML for generated unit configs: scalars and lists, then one level of tables."""
    lines = [f"{k} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for key, table in data.items():
        if isinstance(table, dict):
            lines.append(f"\n[{key}]")
            lines.extend(f"{k} = {toml_value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


def merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@dataclass
class UnitProcess:
    """One running ``wallmesh run`` and where to read it."""

    index: int
    name: str
    config: Path
    status_file: Path
    log_file: Path
    proc: asyncio.subprocess.Process
    spawned_at: float = field(default_factory=time.time)  # wall clock, comparable with status times

    def status(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return None

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    def kill(self) -> None:
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)

    async def stop(self, timeout: float = 10.0) -> int | None:
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Site:
    """A signaling server (in this process or its own) and the unit processes of one room."""

    def __init__(
        self,
        root: Path,
        *,
        room: str = "demo",
        server_process: bool = False,
        verbose: int = 1,
        max_room_size: int = 6,
        netns: str | None = None,
        server_host: str = "127.0.0.1",
        server_extra: dict[str, Any] | None = None,
        workers: int | None = None,
    ) -> None:
        self.max_room_size = max_room_size
        self.workers = workers  # the units' [media] workers (None: the daemon's default)
        self.server_extra = dict(server_extra or {})  # more config for an in-process server (e.g. [sfu])
        self.server_host = server_host
        # processes run inside this network namespace (one the caller created), if any
        self.prefix = ["ip", "netns", "exec", netns] if netns else []
        self.root = Path(root)
        self.room = room
        self.server_process = server_process
        self.verbose = verbose
        self.server_dir = self.root / "server"
        self.url = ""
        self.port = 0
        self.units: list[UnitProcess] = []
        self._server: Any = None
        self._server_proc: asyncio.subprocess.Process | None = None

    # -- the server ----------------------------------------------------------------------

    async def start_server(self) -> str:
        """Start (or restart, on the same port) the signaling server; returns its URL."""
        self.server_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.server_process:
            self._server = await demo_server.start(self.server_dir, self.port, max_room_size=self.max_room_size, **self.server_extra)
            self.url, self.port = self._server.url, self._server.port
            return self.url
        cmd = [*self.prefix, sys.executable, "-m", "appliance.demo.server", "--state-dir", str(self.server_dir),
               "--port", str(self.port), "--host", self.server_host, "--max-room-size", str(self.max_room_size)]
        with await asyncio.to_thread(open, self.root / "server.log", "ab") as log:
            self._server_proc = await asyncio.create_subprocess_exec(
                *cmd, stdout=asyncio.subprocess.PIPE, stderr=log, env=self.env(), start_new_session=True
            )
        assert self._server_proc.stdout is not None
        line = await asyncio.wait_for(self._server_proc.stdout.readline(), 60)
        text = line.decode().strip()
        if not text.startswith("listening on "):
            raise RuntimeError(f"signaling server did not start: {text or (self.root / 'server.log').read_text()[-2000:]}")
        self.url = text.split(" ", 2)[2]
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])
        return self.url

    async def stop_server(self, kill: bool = False) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop()
        proc, self._server_proc = self._server_proc, None
        if proc is not None and proc.returncode is None:
            # the server and its embedded store form one process group, like a systemd service's cgroup
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
            await proc.wait()
            if kill:
                await asyncio.sleep(0.2)  # let the store's children go too

    @property
    def server_pid(self) -> int | None:
        """The server process's PID when it runs as one (its store is a child of it)."""
        proc = self._server_proc
        return proc.pid if proc is not None and proc.returncode is None else None

    @property
    def token_file(self) -> Path:
        return self.server_dir / demo_server.TOKEN_FILE

    # -- units ---------------------------------------------------------------------------

    def unit_config(self, index: int, extra: dict[str, Any] | None = None) -> tuple[str, Path, Path]:
        name = f"unit-{index}"
        unit_dir = self.root / name
        unit_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        status_file = unit_dir / "status.json"
        data: dict[str, Any] = {
            "room": self.room,
            "state_dir": str(unit_dir / "state"),
            "headless": True,
            "server": {
                "url": self.url,
                "name": name,
                "device_id": name,  # the same as its name: the tiles need no identity line
                "enrollment_token_file": str(self.token_file),
                "backoff_max_s": 2.0,
            },
            "video": {"type": "pattern", "width": 320, "height": 240, "fps": 30},
            "audio": {"source": "synthetic", "sink": "null"},
            "quality": {"adaptive": False},
            "ice": {"loopback": True},
            "status": {"host": "127.0.0.1", "port": 0, "file": str(status_file)},
        }
        if self.workers is not None:
            data["media"] = {"workers": self.workers}
        if extra:
            data = merge(data, extra)
        path = unit_dir / "unit.toml"
        path.write_text(to_toml(data))
        return name, path, status_file

    async def spawn(self, index: int, extra: dict[str, Any] | None = None) -> UnitProcess:
        name, path, status_file = self.unit_config(index, extra)
        status_file.unlink(missing_ok=True)
        log_file = self.root / name / "unit.log"
        verbosity = ["-" + "v" * self.verbose] if self.verbose else []
        cmd = [*self.prefix, sys.executable, "-m", "appliance.cli", *verbosity, "run", "--config", str(path)]
        spawned_at = time.time()
        with await asyncio.to_thread(open, log_file, "ab") as log:
            proc = await asyncio.create_subprocess_exec(*cmd, stdout=log, stderr=log, env=self.env())
        unit = UnitProcess(index, name, path, status_file, log_file, proc, spawned_at)
        self.units.append(unit)
        return unit

    def env(self) -> dict[str, str]:
        """The environment unit processes (and the benches' own helpers) run with."""
        env = dict(os.environ)
        env.setdefault("SDL_AUDIODRIVER", "dummy")
        env.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        env.setdefault("MALLOC_ARENA_MAX", "2")  # as the unit's systemd service sets it
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return env

    async def close(self) -> None:
        await asyncio.gather(*(u.stop() for u in self.units), return_exceptions=True)
        self.units.clear()
        await self.stop_server()

    async def __aenter__(self) -> Self:
        await self.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def receiving(status: dict[str, Any] | None, min_frames: int = 1) -> dict[str, int]:
    """Names of the peers a unit receives video from, with their frame counts."""
    if not status:
        return {}
    return {p["name"]: p["frames"] for p in status.get("peers", []) if p.get("frames", 0) >= min_frames}


async def wait_for(check: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``check()`` until it returns something truthy; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)
