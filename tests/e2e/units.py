"""Real wall units for the browser tests: ``wallmesh run`` processes inside the test's namespace.

Each unit runs with a test-pattern camera and synthetic audio, enrolls with a fleet token from
the real server, and is read through its ``GET /status`` endpoint (reached inside the namespace).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

STATUS_PORT_BASE = 18780   # fixed ports are safe: the namespace is new and ours alone


def unit_daemon_missing() -> str | None:
    try:
        import appliance.demo.site  # noqa: F401
        import appliance.unit.main  # noqa: F401
    except ImportError as exc:
        return f"the unit daemon is not importable yet ({exc})"
    return None


class Units:
    """Starts ``wallmesh run`` processes inside the namespace and reads their status endpoint."""

    def __init__(self, netns, server, root: Path, room: str, workers: int | None = None) -> None:
        from appliance.demo.site import Site

        self.netns = netns
        self.server = server
        # The demo's site harness writes unit configs the way the unit daemon expects them.
        self.site = Site(root, room=room, workers=workers)
        self.site.url = server.url.rstrip("/")
        self.procs: list[tuple[str, int, asyncio.subprocess.Process, Path]] = []

    async def start(self, count: int) -> None:
        token = await self.server.admin.enrollment_token(ttl_s=3600, rooms=("*",))
        self.site.server_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.site.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
        for index in range(1, count + 1):
            await self.spawn(index)

    async def spawn(self, index: int) -> None:
        """Starts unit ``index`` (again, after a kill: it keeps its enrolled identity)."""
        env = dict(os.environ)
        repo = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = repo + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        port = STATUS_PORT_BASE + index
        name, config, _status = self.site.unit_config(index, {
            "status": {"host": "127.0.0.1", "port": port},
            "video": {"width": 320, "height": 240, "fps": 15},
        })
        log_path = config.parent / "unit.log"
        with open(log_path, "ab") as log:
            proc = await asyncio.create_subprocess_exec(
                *self.netns.exec_prefix(), sys.executable, "-m", "appliance.cli", "-v",
                "run", "--config", str(config), stdout=log, stderr=log, env=env, start_new_session=True)
        self.procs = [p for p in self.procs if p[0] != name]
        self.procs.append((name, port, proc, log_path))

    async def status(self, name: str) -> dict | None:
        for unit, port, proc, _log in self.procs:
            if unit == name:
                if proc.returncode is not None:
                    raise AssertionError(f"{name} exited with {proc.returncode}: {self.log_tail(name)}")
                try:
                    code, body = await self.netns.http_get_inside(port, "/status")
                except OSError:
                    return None
                return json.loads(body) if code == 200 else None
        raise KeyError(name)

    async def kill(self, name: str) -> None:
        for unit, _port, proc, _log in self.procs:
            if unit == name and proc.returncode is None:
                proc.kill()
                await proc.wait()

    def log_tail(self, name: str, lines: int = 25) -> str:
        for unit, _port, _proc, log_path in self.procs:
            if unit == name:
                return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    async def close(self) -> None:
        for _name, _port, proc, _log in self.procs:
            if proc.returncode is None:
                proc.terminate()
        for _name, _port, proc, _log in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def frames_from(status: dict | None, name: str) -> int:
    for peer in (status or {}).get("peers", []):
        if peer.get("name") == name:
            return int(peer.get("frames") or 0)
    return 0


async def until(check, timeout: float, what: str):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.5)
