"""The two servers the signaling benchmark loads, each in a process of its own.

``wallmesh signal`` runs as a subprocess (its state directory and config in a temporary
directory, mDNS off, loopback only) so its memory and CPU can be read from ``/proc`` and
the load generators never share its event loop. The PeerJS server is the npm package
``peer`` at a pinned version, installed on first use into the user's cache directory and
run with node on a loopback port. Both are stopped at the end, by process group, even
when the benchmark fails half-way.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from appliance.bench.report import cpu_seconds
from appliance.errors import WallmeshError

PEERJS_VERSION = "1.0.2"


class BenchError(WallmeshError, RuntimeError):
    """The benchmark could not set up what it measures (a server did not start, npm failed)."""


def cache_dir() -> Path:
    """Where downloaded helpers live: ``$WALLMESH_CACHE`` or ``$XDG_CACHE_HOME/wallmesh``."""
    explicit = os.environ.get("WALLMESH_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "wallmesh"


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for servers that cannot be told to pick one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_queue_wait_s(pid: int | str = "self") -> float:
    """Run-queue wait of a process's main thread so far, from ``/proc/<pid>/schedstat``."""
    try:
        with open(f"/proc/{pid}/schedstat") as stat:
            return int(stat.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def die_with_parent() -> None:
    """``preexec_fn`` for every process the benchmark starts: the kernel sends it SIGTERM
    if the benchmark itself is killed, so no server or load process outlives a crashed run."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ServerProcess:
    """A server under test: its process group, its log file, and its figures from /proc."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None, stdin_text: str = "") -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - the child writes to it until stop() closes it
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE if stdin_text else subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            env=env, start_new_session=True, preexec_fn=die_with_parent,  # noqa: PLW1509 - PR_SET_PDEATHSIG has no Popen parameter
        )
        if stdin_text:
            assert self.proc.stdin is not None
            self.proc.stdin.write(stdin_text.encode())
            self.proc.stdin.close()
        self.pid = self.proc.pid
        self.url = ""

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """Wait until the server's output matches ``pattern``; fail with its log if it exits."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            found = regex.search(text)
            if found:
                return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise BenchError(f"{self.name} did not start (exit {self.proc.poll()}): {self.log_tail()}")

    def log_tail(self, lines: int = 8) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_mb(self) -> tuple[float, float]:
        """(current, peak) resident memory of the server process, MiB."""
        fields = {}
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        rss = int(fields["VmRSS"].split()[0]) / 1024
        peak = int(fields["VmHWM"].split()[0]) / 1024
        return rss, peak

    def cpu_s(self) -> float:
        """User + system CPU seconds the server process has used so far."""
        return cpu_seconds(self.pid)

    def cpu_wait_s(self) -> float:
        """Seconds the server's main thread (its event loop) has spent runnable but waiting
        for a CPU: how much other work on the host delayed it."""
        return run_queue_wait_s(self.pid)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL to the process group after a grace period. Idempotent."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self._log.close()


# --- wallmesh ---------------------------------------------------------------------------

BENCH_CONFIG = """\
# wallmesh signal, as the signaling benchmark runs it: loopback only, no LAN advert.
# Everything else (rate limits, heartbeat) is the shipped default, so the figures are
# those of the server a site runs.
[mdns]
enabled = false
"""


def wallmesh_cli() -> list[str]:
    return [sys.executable, "-m", "appliance.cli"]


def child_env() -> dict[str, str]:
    """The environment for child processes, with this checkout importable."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def wallmesh_paths(workdir: Path) -> tuple[Path, Path]:
    """The benchmark server's state directory and config file under ``workdir``."""
    state_dir = workdir / "state"
    state_dir.mkdir(parents=True, exist_ok=True)
    config = workdir / "signal.toml"
    if not config.exists():
        config.write_text(BENCH_CONFIG)
    return state_dir, config


def start_wallmesh(workdir: Path, username: str, password: str) -> ServerProcess:
    """Create the benchmark's account with ``wallmesh user add`` (password on stdin), then
    start ``wallmesh signal`` on an ephemeral loopback port with its own state directory."""
    state_dir, config = wallmesh_paths(workdir)
    argv = [*wallmesh_cli(), "user", "add", username, "--state-dir", str(state_dir), "--config", str(config)]
    done = subprocess.run(argv, input=password + "\n", capture_output=True, text=True, timeout=120, env=child_env(), check=False)
    if done.returncode != 0:
        raise BenchError(f"wallmesh user add failed: {done.stderr.strip()[-300:]}")
    argv = [*wallmesh_cli(), "signal", "--config", str(config), "--state-dir", str(state_dir), "--host", "127.0.0.1", "--port", "0"]
    server = ServerProcess("wallmesh signal", argv, workdir / "signal.log", env=child_env())
    try:
        found = server.wait_for(r"listening on (\S+)", timeout=90)
    except BenchError:
        server.stop()
        raise
    server.url = found.group(1).rstrip("/")
    return server


# --- PeerJS -----------------------------------------------------------------------------


def peerjs_entry() -> Path:
    """The PeerJS server's start script, installing ``peer@PEERJS_VERSION`` on first use."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        raise BenchError("node and npm are needed for the PeerJS comparison (scripts/setup installs them)")
    home = cache_dir() / "peerjs"
    home.mkdir(parents=True, exist_ok=True)
    entry = home / "node_modules" / "peer" / "dist" / "bin" / "peerjs.js"
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time (bench and tests may race)
        if _installed_version(home) != PEERJS_VERSION or not entry.exists():
            (home / "package.json").write_text(json.dumps({"private": True, "dependencies": {"peer": PEERJS_VERSION}}))
            print(f"# installing PeerJS server peer@{PEERJS_VERSION} into {home}", file=sys.stderr, flush=True)
            done = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--omit=dev", "--save-exact", f"peer@{PEERJS_VERSION}"],
                cwd=home, capture_output=True, text=True, timeout=600, check=False,
            )
            if done.returncode != 0 or _installed_version(home) != PEERJS_VERSION:
                raise BenchError(f"npm install peer@{PEERJS_VERSION} failed: {done.stderr.strip()[-300:]}")
    return entry


def _installed_version(home: Path) -> str | None:
    try:
        return json.loads((home / "node_modules" / "peer" / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def start_peerjs(workdir: Path) -> ServerProcess:
    """Start the stock PeerJS server (its own CLI, default options) on a loopback port."""
    entry = peerjs_entry()
    node = shutil.which("node") or "node"
    for _attempt in range(3):
        port = free_port()
        argv = [node, str(entry), "--host", "127.0.0.1", "--port", str(port), "--key", "peerjs"]
        server = ServerProcess("PeerJS server", argv, workdir / f"peerjs-{port}.log")
        try:
            server.wait_for(r"Started PeerServer on \S+ port: (\d+)", timeout=30)
        except BenchError:
            server.stop()
            if "EADDRINUSE" in server.log_tail():
                continue
            raise
        server.url = f"http://127.0.0.1:{port}"
        return server
    raise BenchError("PeerJS server could not get a free port")
