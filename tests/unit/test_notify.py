"""systemd notify against a real AF_UNIX datagram socket in a temp dir."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time

import pytest

from appliance.unit.notify import Notifier, Watchdog


@pytest.fixture
def notify_socket(tmp_path):
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    yield str(path), sock
    sock.close()


def drain(sock, wait=0.0):
    sock.settimeout(wait or 0.001)
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except (TimeoutError, BlockingIOError, socket.timeout):
            return out
        sock.settimeout(0.001)


def test_no_socket_is_a_quiet_noop():
    n = Notifier(env={})
    assert not n.enabled
    assert n.ready() is False and n.watchdog() is False
    assert n.watchdog_interval() is None


def test_ready_status_stopping(notify_socket):
    path, sock = notify_socket
    n = Notifier(env={"NOTIFY_SOCKET": path})
    assert n.ready("in room boardroom")
    assert sock.recv(4096).decode() == "READY=1\nSTATUS=in room boardroom"
    n.status("reconnecting\nto server")
    assert sock.recv(4096).decode() == "STATUS=reconnecting to server"
    n.extend_timeout(30)
    assert sock.recv(4096).decode() == "EXTEND_TIMEOUT_USEC=30000000"
    n.stopping()
    assert sock.recv(4096).decode() == "STOPPING=1"
    n.close()
    n.close()


def test_abstract_socket():
    name = f"wallmesh-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        assert Notifier("@" + name).ready()
        assert sock.recv(4096) == b"READY=1"
    finally:
        sock.close()


def test_watchdog_interval_from_env():
    env = {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier(env=env).watchdog_interval() == 20.0
    assert Notifier(env={**env, "WATCHDOG_PID": "1"}).watchdog_interval() is None, "meant for another process"
    wd = Watchdog.from_systemd(Notifier(env=env))
    assert wd is not None and wd.interval == 10.0
    assert Watchdog.from_systemd(Notifier(env={"NOTIFY_SOCKET": "/x"})) is None


def test_missing_socket_does_not_raise(tmp_path):
    assert Notifier(str(tmp_path / "gone")).ready() is False


async def test_pings_stop_while_the_loop_is_blocked(notify_socket):
    path, sock = notify_socket
    arrivals: list[float] = []
    stop = threading.Event()

    def receive():
        sock.settimeout(0.05)
        while not stop.is_set():
            try:
                if sock.recv(4096) == b"WATCHDOG=1":
                    arrivals.append(time.monotonic())
            except (TimeoutError, socket.timeout):
                pass

    receiver = threading.Thread(target=receive)
    receiver.start()
    wd = Watchdog(Notifier(path), interval=0.05, stall_after=0.3)
    wd.watch_loop(asyncio.get_running_loop(), "media loop")
    wd.start()
    try:
        deadline = time.monotonic() + 5  # a generous cap: the CI machine is shared
        while len(arrivals) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert len(arrivals) >= 3, "pings flow while the loop runs"

        blocked_at = time.monotonic()
        time.sleep(1.5)  # block this event loop on purpose: a hung media loop
        unblocked_at = time.monotonic()
        # The heartbeat was at most 0.3/4 s old when the block began; pings may go on
        # until it is stall_after old, plus one ping interval and scheduling slack (generous:
        # a starved receiver thread stamps a ping late; a broken watchdog pings ~13 times after it).
        quiet_from = blocked_at + 0.3 + 0.05 + 0.5
        during = [t for t in arrivals if quiet_from < t < unblocked_at]
        assert during == [], f"{len(during)} pings while the loop was blocked"
        assert "media loop" in wd.stalled()

        deadline = time.monotonic() + 5
        while not any(t > unblocked_at for t in arrivals) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert any(t > unblocked_at for t in arrivals), "pings resume when the loop runs again"
    finally:
        wd.stop()
        wd.stop()
        stop.set()
        receiver.join()


def test_pings_stop_when_a_thread_stops_beating(notify_socket):
    path, sock = notify_socket
    wd = Watchdog(Notifier(path), interval=0.02, stall_after=0.2)
    wd.beat("display")
    assert wd.check_and_ping()
    assert sock.recv(4096) == b"WATCHDOG=1"
    time.sleep(0.25)
    assert wd.stalled() == ["display"]
    assert not wd.check_and_ping()
    assert drain(sock) == []
    wd.beat("display")
    assert wd.check_and_ping()
    wd.forget("display")
    assert wd.stalled() == []
