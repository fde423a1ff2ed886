"""The embedded store: an ``nx-27017`` MongoDB-wire-protocol server (SQLite underneath).

A site with no MongoDB gets one of these in its state directory, owned by exactly one
process at a time. Ownership is an exclusive ``flock`` on ``store/owner.lock``; the owner
writes ``store.uri`` so that ``wallmesh user``/``device`` run beside a live server talk to
the server's store instead of opening the same SQLite files from a second process (see
:func:`running_uri`).

nx-27017 has no authentication at all: whoever can connect can read and write every
record, an admin's account included. So it never listens on TCP, where any local user
could reach it. It serves a unix socket, ``store/nx-27017.sock`` (owner-only, in the store
directory, mode 0700, in the state directory, mode 0700): only the server's own user
(and root) can connect, which is exactly who may administer the site. A password in the
state directory would protect nothing more, since nx-27017 would not check it.

The child runs :func:`serve` (nx-27017's own connection handler on that socket, its log
rotated at :data:`LOG_BYTES`). A server owner supervises it: when it dies it is started
again on the same socket, with backoff, and pymongo reconnects by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from appliance.errors import StoreUnavailable

log = logging.getLogger(__name__)

# -I: the child imports this very checkout (its root is the first argument), nothing from the environment
_LAUNCH = "import sys; sys.path.insert(0, sys.argv.pop(1)); from appliance.signaling.embedded import serve; serve(sys.argv[1:])"
_ROOT = str(Path(__file__).resolve().parents[2])
SOCKET_NAME = "nx-27017.sock"
#: a unix socket's path must fit in sun_path (108 bytes); a longer one goes to a private temp dir
MAX_SOCKET_PATH = 100
#: the store's log is rotated at this size, two old files kept
LOG_BYTES = 1 << 20
RESTART_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
#: a child that ran this long is healthy again: the next death restarts after the first delay
STEADY_S = 60.0


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
    """One ``nx-27017`` child process serving ``<state_dir>/store`` on a private unix socket.

    ``supervise=True`` (the server) restarts the child whenever it dies until :meth:`stop`;
    ``on_restart`` is called after each restart.
    """

    def __init__(self, state_dir: Path, *, publish: bool = True, supervise: bool = False, log_bytes: int = LOG_BYTES) -> None:
        self.dir = state_dir / "store"
        self.log_bytes = log_bytes
        self.state_dir = state_dir
        self.publish = publish
        self.supervise = supervise
        self.socket_path = self.dir / SOCKET_NAME
        self.restarts = 0
        self.on_restart: Callable[[], None] = lambda: None
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock_fd: int | None = None
        self._private_dir: Path | None = None
        self._watch: asyncio.Task[None] | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://{quote(str(self.socket_path), safe='')}/?directConnection=true"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    async def _acquire(self, wait_s: float = 10.0) -> None:
        """Become the store's only owner; waits a little for a short-lived owner (a CLI command)."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.dir.chmod(0o700)  # the socket's directory: whoever can enter it can use the store
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
        if len(str(self.socket_path).encode()) > MAX_SOCKET_PATH:
            self._private_dir = Path(tempfile.mkdtemp(prefix="wallmesh-store-"))  # mode 0700
            self.socket_path = self._private_dir / SOCKET_NAME

    async def start(self) -> None:
        """Start (or restart on the same socket) the child and wait until it accepts connections."""
        if self.running:
            return
        if self._lock_fd is None:
            await self._acquire()
        await self._spawn()
        if self.publish:
            tmp = uri_file(self.state_dir).with_suffix(".tmp")
            tmp.write_text(self.uri + "\n")
            tmp.replace(uri_file(self.state_dir))
        if self.supervise and self._watch is None:
            self._watch = asyncio.create_task(self._supervise(), name="store-supervisor")

    async def _spawn(self) -> None:
        args = [
            sys.executable, "-I", "-c", _LAUNCH, _ROOT,
            "--data-dir", str(self.dir / "data"), "--socket", str(self.socket_path),
            "--log-file", str(self.dir / "nx-27017.log"), "--pid-file", str(self.dir / "nx-27017.pid"),
            "--log-bytes", str(self.log_bytes),
        ]
        (self.dir / "data").mkdir(exist_ok=True, mode=0o700)
        await asyncio.to_thread(_reap_orphan, self.dir / "nx-27017.pid", self.dir / "data")
        # On the loop's thread, not a worker's: PR_SET_PDEATHSIG fires when the thread that forked the child ends.
        proc = self._proc = subprocess.Popen(  # noqa: ASYNC220 - see above; a fork and exec, no wait
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - PR_SET_PDEATHSIG has no Popen parameter
        )
        log.info("embedded store: starting nx-27017 pid %d on %s", proc.pid, self.socket_path)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while loop.time() < deadline:
            if proc.poll() is not None:
                raise StoreUnavailable(f"nx-27017 exited with status {proc.returncode}; see {self.dir / 'nx-27017.log'}")
            try:
                _, writer = await asyncio.open_unix_connection(str(self.socket_path))
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return
        await _terminate(proc)
        raise StoreUnavailable("nx-27017 did not start listening within 30 s")

    async def _supervise(self) -> None:
        """Start the child again whenever it dies, sooner after a long healthy run."""
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            proc = self._proc
            assert proc is not None
            started = loop.time()
            await _exited(proc)
            if loop.time() - started >= STEADY_S:
                failures = 0
            delay = RESTART_DELAYS[min(failures, len(RESTART_DELAYS) - 1)]
            failures += 1
            log.warning("embedded store: nx-27017 pid %d exited with status %s; starting it again in %.1f s (see %s)",
                        proc.pid, proc.returncode, delay, self.dir / "nx-27017.log")
            await asyncio.sleep(delay)
            try:
                await self._spawn()
            except StoreUnavailable as exc:
                log.warning("embedded store: restart failed: %s", exc)
                continue
            self.restarts += 1
            self.on_restart()

    async def stop(self, *, release: bool = True) -> None:
        """Stop the child (and its supervision). ``release=False`` keeps ownership (a restart will follow)."""
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            await _terminate(proc)
            log.info("embedded store: stopped")
        if release and self._lock_fd is not None:
            if self.publish:
                uri_file(self.state_dir).unlink(missing_ok=True)
            os.close(self._lock_fd)
            self._lock_fd = None
            if self._private_dir is not None:
                with contextlib.suppress(OSError):
                    self.socket_path.unlink(missing_ok=True)
                    self._private_dir.rmdir()


async def _terminate(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        await asyncio.to_thread(proc.wait, 10)
    except subprocess.TimeoutExpired:
        proc.kill()
        await asyncio.to_thread(proc.wait)


async def _exited(proc: subprocess.Popen[bytes]) -> None:
    """Return when ``proc`` has exited (reaped): a pidfd wakes the loop, no thread waits."""
    if proc.poll() is not None:
        return
    try:
        fd = os.pidfd_open(proc.pid)
    except OSError:  # a kernel without pidfds: a worker thread waits instead
        await asyncio.to_thread(proc.wait)
        return
    loop = asyncio.get_running_loop()
    gone: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not gone.done():
            gone.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await gone
    finally:
        loop.remove_reader(fd)
        os.close(fd)
    proc.wait()  # it has exited: this only reaps it


# --- the child ------------------------------------------------------------------------


def serve(argv: list[str]) -> None:
    """The child's main: nx-27017's handler on a unix socket only this user can open, its log rotated."""
    import argparse
    import logging.handlers

    parser = argparse.ArgumentParser(prog="wallmesh-store")
    for flag in ("--data-dir", "--socket", "--log-file", "--pid-file"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--log-bytes", type=int, default=LOG_BYTES)
    args = parser.parse_args(argv)
    os.umask(0o077)  # the socket and the SQLite files: this user's only
    handler = logging.handlers.RotatingFileHandler(args.log_file, maxBytes=args.log_bytes, backupCount=2)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    pid_file, path = Path(args.pid_file), Path(args.socket)
    pid_file.write_text(f"{os.getpid()}\n")
    path.unlink(missing_ok=True)  # left by a child that was killed
    try:
        asyncio.run(_serve(args.data_dir, str(path)))
    except Exception:
        logging.getLogger(__name__).exception("embedded store failed")
        raise SystemExit(1) from None
    finally:
        path.unlink(missing_ok=True)
        pid_file.unlink(missing_ok=True)


async def _serve(data_dir: str, path: str) -> None:
    from nx_27017.handler import NeoSQLiteHandler  # type: ignore[import-untyped]
    from nx_27017.server import handle_client  # type: ignore[import-untyped]

    store = NeoSQLiteHandler(data_dir=data_dir)

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await handle_client(reader, writer, store)

    server = await asyncio.start_unix_server(client, path=path)  # mode 0700 under the umask above
    logging.getLogger(__name__).info("nx-27017 serving %s on %s", data_dir, path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    store.close_all()
