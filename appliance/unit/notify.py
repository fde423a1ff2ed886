"""systemd's notify protocol: readiness, status text, watchdog pings, stopping.

The unit runs as a ``Type=notify`` service with ``WatchdogSec=``. systemd passes
the address of a datagram socket in ``NOTIFY_SOCKET`` (a path, or an abstract
socket written with a leading ``@``) and, when the watchdog is on, the interval in
``WATCHDOG_USEC``. Each message is one datagram of ``KEY=value`` lines.

The daemon sends ``READY=1`` only once camera, audio, display and buttons are
open, ``STATUS=`` lines a person reads in ``systemctl status``, and ``STOPPING=1``
on shutdown. :class:`Watchdog` sends ``WATCHDOG=1`` from its own thread, but
only while every registered heartbeat is fresh: each event loop it watches
bumps a heartbeat from a timer callback, and the display thread calls
:meth:`Watchdog.beat` after each frame. A blocked loop or a hung display stops
the pings, and systemd restarts the unit. Without ``NOTIFY_SOCKET`` (not under
systemd: a laptop, the tests, ``wallmesh demo``) every call is a quiet no-op.

We speak the protocol directly (it is a few lines) instead of depending on
``python-systemd``, which needs libsystemd at build time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends notify messages to systemd's socket; a no-op when there is none."""

    def __init__(self, address: str | None = None, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address = address if address is not None else env.get("NOTIFY_SOCKET") or None
        self._env = env
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send one datagram made of ``lines``; returns False when not under systemd or it failed."""
        if self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        data = "\n".join(lines).encode()
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(data, target)
            except OSError as exc:
                log.warning("systemd notify to %s failed: %s", self.address, exc)
                return False
        return True

    def ready(self, status: str | None = None) -> bool:
        lines = ["READY=1"]
        if status:
            lines.append(f"STATUS={status}")
        return self.send(*lines)

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text.replace(chr(10), ' ')}")

    def stopping(self, status: str | None = None) -> bool:
        lines = ["STOPPING=1"]
        if status:
            lines.append(f"STATUS={status}")
        return self.send(*lines)

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for more start-up (or stop) time: a slow camera or a first boot is not a hang."""
        return self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1e6)}")

    def watchdog_interval(self) -> float | None:
        """systemd's watchdog interval in seconds, or None when the watchdog is off for us."""
        usec = self._env.get("WATCHDOG_USEC")
        pid = self._env.get("WATCHDOG_PID")
        if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
            return None
        try:
            value = int(usec)
        except ValueError:
            return None
        return value / 1e6 if value > 0 else None

    def close(self) -> None:
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


class Watchdog:
    """Pings ``WATCHDOG=1`` every ``interval`` seconds while no heartbeat is older than ``stall_after``."""

    def __init__(self, notifier: Notifier, interval: float, stall_after: float | None = None) -> None:
        self.notifier = notifier
        self.interval = interval
        self.stall_after = stall_after if stall_after is not None else 2 * interval
        self._beats: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handles: dict[str, asyncio.TimerHandle] = {}
        self.pings = 0
        self._was_stalled: list[str] = []

    @classmethod
    def from_systemd(cls, notifier: Notifier) -> Watchdog | None:
        """Half of systemd's interval between pings, as systemd recommends; None when off."""
        usec = notifier.watchdog_interval()
        if usec is None or not notifier.enabled:
            return None
        return cls(notifier, interval=usec / 2, stall_after=usec / 2)

    def beat(self, name: str) -> None:
        """Record that ``name`` (a loop, the display thread) is alive; any thread may call it."""
        with self._lock:
            self._beats[name] = time.monotonic()

    def forget(self, name: str) -> None:
        with self._lock:
            self._beats.pop(name, None)
        handle = self._handles.pop(name, None)
        if handle is not None:
            handle.cancel()

    def watch_loop(self, loop: asyncio.AbstractEventLoop, name: str = "event loop") -> None:
        """Keep a heartbeat for ``loop`` from a timer on that loop; it stops when the loop blocks."""
        period = max(0.01, min(self.interval, self.stall_after) / 4)

        def tick() -> None:
            self.beat(name)
            self._handles[name] = loop.call_later(period, tick)

        loop.call_soon_threadsafe(tick)
        self.beat(name)

    def stalled(self) -> list[str]:
        now = time.monotonic()
        with self._lock:
            return sorted(name for name, at in self._beats.items() if now - at > self.stall_after)

    def check_and_ping(self) -> bool:
        """One round: ping when everything is alive. Returns whether it pinged."""
        stalled = self.stalled()
        if stalled:
            if stalled != self._was_stalled:
                log.error("watchdog: %s stalled; not pinging systemd", ", ".join(stalled))
            self._was_stalled = stalled
            return False
        if self._was_stalled:
            log.warning("watchdog: %s alive again", ", ".join(self._was_stalled))
            self._was_stalled = []
        if self.notifier.watchdog():
            self.pings += 1
        return True

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="systemd-watchdog", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check_and_ping()

    def stop(self) -> None:
        """Stop pinging (idempotent); cancels the loop heartbeats it scheduled."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()
