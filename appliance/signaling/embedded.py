"""The embedded store: an ``nx-27017`` MongoDB-wire-protocol server (SQLite underneath).

A site with no MongoDB gets one of these in its state directory, on a free loopback port,
owned by exactly one process at a time. Ownership is an exclusive ``flock`` on
``store/owner.lock``; the owner writes ``store.uri`` so that ``wallmesh user``/``device``
run beside a live server talk to the server's store instead of opening the same SQLite
files from a second process (see :func:`running_uri`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from appliance.errors import StoreUnavailable

log = logging.getLogger(__name__)

_LAUNCH = "import sys; from nx_27017.nx_27017 import main; sys.argv[0] = 'nx-27017'; sys.exit(main())"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def uri_file(state_dir: Path) -> Path:
    return state_dir / "store.uri"


def running_uri(state_dir: Path) -> str | None:
    """The URI of the embedded store another process owns in ``state_dir``, if any."""
    path = uri_file(state_dir)
    if not path.exists():
        return None
    lock_path = state_dir / "store" / "owner.lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return path.read_text().strip() or None  # someone holds it: their URI is live
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None  # stale file left by a process that died
    finally:
        os.close(fd)


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGTERM it when its owner dies (even by SIGKILL),
    so a killed server never leaves a store process holding the SQLite files."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _reap_orphan(pid_file: Path, data_dir: Path) -> None:
    """Stop an nx-27017 left running on this data directory by an owner that died."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return
    if str(data_dir).encode() in cmdline:
        log.warning("embedded store: stopping nx-27017 pid %d left behind by a previous owner", pid)
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            return
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists():
                return
            time.sleep(0.05)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


class EmbeddedStore:
    """One ``nx-27017`` child process serving ``<state_dir>/store`` on loopback."""

    def __init__(self, state_dir: Path, *, port: int = 0, publish: bool = True) -> None:
        self.dir = state_dir / "store"
        self.state_dir = state_dir
        self.port = port
        self.publish = publish
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock_fd: int | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    async def _acquire(self, wait_s: float = 10.0) -> None:
        """Become the store's only owner; waits a little for a short-lived owner (a CLI command)."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.dir / "owner.lock", os.O_RDWR | os.O_CREAT, 0o600)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if loop.time() >= deadline:
                    os.close(fd)
                    raise StoreUnavailable(f"the embedded store in {self.dir} is owned by another process") from None
                await asyncio.sleep(0.1)
        self._lock_fd = fd

    async def start(self) -> None:
        """Start (or restart on the same port) the child and wait until it accepts connections."""
        if self.running:
            return
        if self._lock_fd is None:
            await self._acquire()
        if not self.port:
            self.port = free_port()
        args = [
            sys.executable, "-c", _LAUNCH,
            "--data-dir", str(self.dir / "data"),
            "--host", "127.0.0.1", "--port", str(self.port),
            "--log-file", str(self.dir / "nx-27017.log"),
            "--pid-file", str(self.dir / "nx-27017.pid"),
        ]
        (self.dir / "data").mkdir(exist_ok=True, mode=0o700)
        await asyncio.to_thread(_reap_orphan, self.dir / "nx-27017.pid", self.dir / "data")
        # On the loop's thread, not a worker's: PR_SET_PDEATHSIG fires when the thread that forked the child ends.
        self._proc = subprocess.Popen(  # noqa: ASYNC220 - see above; a fork and exec, no wait
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - PR_SET_PDEATHSIG has no Popen parameter
        )
        log.info("embedded store: starting nx-27017 pid %d on 127.0.0.1:%d", self._proc.pid, self.port)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while loop.time() < deadline:
            if self._proc.poll() is not None:
                raise StoreUnavailable(f"nx-27017 exited with status {self._proc.returncode}; see {self.dir / 'nx-27017.log'}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            if self.publish:
                tmp = uri_file(self.state_dir).with_suffix(".tmp")
                tmp.write_text(self.uri + "\n")
                tmp.replace(uri_file(self.state_dir))
            return
        await self.stop()
        raise StoreUnavailable("nx-27017 did not start listening within 30 s")

    async def stop(self, *, release: bool = True) -> None:
        """Stop the child. ``release=False`` keeps ownership (a restart will follow)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                await asyncio.to_thread(proc.wait, 10)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)
            log.info("embedded store: stopped")
        if release and self._lock_fd is not None:
            if self.publish:
                uri_file(self.state_dir).unlink(missing_ok=True)
            os.close(self._lock_fd)
            self._lock_fd = None
