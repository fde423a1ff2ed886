"""Raw sockets against the real server: idle and slowloris sockets are closed, one address
cannot take every socket, a port in use is one line, and the fd limit is survived quietly.

Client addresses other than 127.0.0.1 are the rest of 127/8, still loopback: a client socket
bound to 127.0.0.2 or 127.0.0.3 is another host as far as the server can tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from appliance.signaling.server import SignalServer

from .conftest import PASSWORD, make_config

WALLMESH = [sys.executable, "-m", "appliance.cli"]


async def _connect(server: SignalServer, source: str = "127.0.0.1") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port, local_addr=(source, 0))


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """True when the server closes the socket (EOF or reset) within ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(4096):
                pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


async def _health(server: SignalServer, source: str = "127.0.0.1") -> int:
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=5)) as http:
        async with http.get(server.url + "/api/health") as resp:
            return resp.status


@pytest.fixture
async def strict(tmp_path: Path) -> AsyncIterator[SignalServer]:
    """A server with short deadlines and a small per-address cap (127.0.0.1 is exempt by default)."""
    config = make_config(http={"header_timeout_s": 2, "body_timeout_s": 2, "max_connections_per_address": 4})
    async with SignalServer(config, state_dir=tmp_path / "state") as srv:
        await srv.admin.add_user("alice", PASSWORD)
        yield srv


async def test_a_socket_that_never_sends_is_closed(strict: SignalServer) -> None:
    reader, writer = await _connect(strict)
    started = time.monotonic()
    assert await _closed_within(reader, 15), "an idle socket was kept open"
    assert time.monotonic() - started >= 1.5  # not at once: the deadline is 2 s
    writer.close()


async def test_slowloris_is_closed_at_the_header_deadline(strict: SignalServer) -> None:
    """One header byte a second keeps a socket busy forever unless the whole head has a deadline."""
    reader, writer = await _connect(strict)
    writer.write(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()

    async def trickle() -> None:
        with contextlib.suppress(OSError):  # the server closed it: that is the point
            for byte in b"X-Slow: " + b"a" * 60:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(1)

    task = asyncio.create_task(trickle())
    try:
        assert await _closed_within(reader, 15), "a slowloris socket was kept open"
        assert time.monotonic() - started < 15
    finally:
        task.cancel()
        writer.close()


async def test_a_keep_alive_connection_gets_the_deadline_again_after_a_reply(strict: SignalServer) -> None:
    reader, writer = await _connect(strict)
    writer.write(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200")
    writer.write(b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # the next request never finishes
    assert await _closed_within(reader, 15)
    writer.close()


async def test_a_body_that_never_arrives_is_408(strict: SignalServer) -> None:
    reader, writer = await _connect(strict)
    writer.write(b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 200\r\n\r\n{\"username\": ")
    async with asyncio.timeout(15):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), head
    assert await _closed_within(reader, 15)
    writer.close()


async def test_one_address_cannot_take_every_socket(strict: SignalServer) -> None:
    """The 5th socket from 127.0.0.3 is closed at once; 127.0.0.2 and 127.0.0.1 still get in."""
    held = [await _connect(strict, "127.0.0.3") for _ in range(4)]
    reader, writer = await _connect(strict, "127.0.0.3")
    assert await _closed_within(reader, 2), "the socket over the cap was not closed"
    writer.close()
    assert await _health(strict, "127.0.0.2") == 200
    assert await _health(strict, "127.0.0.1") == 200
    metrics = await _metrics(strict)
    assert 'wallmesh_signal_connections_refused_total{reason="per_address"} 1.0' in metrics
    # a freed slot is usable again
    held.pop()[1].close()
    deadline = time.monotonic() + 5
    while True:
        try:
            assert await _health(strict, "127.0.0.3") == 200
            break
        except aiohttp.ClientError:
            assert time.monotonic() < deadline, "a freed slot did not come back"
            await asyncio.sleep(0.1)
    for _, w in held:
        w.close()


async def _metrics(server: SignalServer) -> str:
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/metrics") as resp:
            return await resp.text()


async def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = await asyncio.to_thread(
            subprocess.run, [*WALLMESH, "signal", "--state-dir", str(tmp_path / "state"), "--host", "127.0.0.1", "--port", str(port)],
            capture_output=True, text=True, timeout=60,
        )
    assert done.returncode == 1
    assert done.stderr == f"wallmesh signal: port {port} on 127.0.0.1 is in use (another wallmesh signal, or another program); " \
                          "stop it or choose another --port\n"
    assert not (tmp_path / "state").exists()  # said before anything was set up


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))


def test_at_the_fd_limit_the_log_stays_small_and_health_comes_back(tmp_path: Path) -> None:
    """A server out of descriptors: accept errors are one line per interval, not a traceback
    per attempt, and once the sockets are gone /api/health answers again."""
    config = tmp_path / "signal.toml"
    config.write_text("[mdns]\nenabled = false\n[http]\nheader_timeout_s = 60\n")
    log_path = tmp_path / "signal.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [*WALLMESH, "signal", "--config", str(config), "--state-dir", str(tmp_path / "state"), "--host", "127.0.0.1", "--port", "0"],
            stdout=subprocess.PIPE, stderr=log, text=True, preexec_fn=_low_fd_limit,
        )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip().removeprefix("listening on ")
        port = int(url.rsplit(":", 1)[1])
        flood = [socket.create_connection(("127.0.0.1", port)) for _ in range(250)]  # twice the server's limit
        time.sleep(4)
        size = os.path.getsize(log_path)
        text = log_path.read_text()
        assert size < 4000, text[:3000]
        assert "cannot accept connections: Too many open files" in text
        assert "Traceback" not in text
        for sock in flood:
            sock.close()
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
                    sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if sock.recv(100).startswith(b"HTTP/1.1 200"):
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "health did not come back after the sockets were freed"
            time.sleep(0.5)
        assert os.path.getsize(log_path) < 8000
    finally:
        proc.terminate()
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()


async def test_a_tls_handshake_that_never_starts_is_closed(tmp_path: Path) -> None:
    """Over HTTPS the request-head deadline starts before TLS: a socket that never says hello is closed."""
    config = make_config(tls_on_loopback=True, http={"header_timeout_s": 2})
    async with SignalServer(config, state_dir=tmp_path / "state") as srv:
        assert srv.url.startswith("https://")
        reader, writer = await _connect(srv)
        assert await _closed_within(reader, 15), "a socket that never started TLS was kept open"
        writer.close()
        # and one that does speak TLS is served as before
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        async with aiohttp.ClientSession() as http, http.get(srv.url + "/api/health", ssl=ctx) as resp:
            assert resp.status == 200
