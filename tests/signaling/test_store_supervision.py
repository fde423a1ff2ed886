"""The embedded store under the server: started again when it dies, reachable only by the
server's own user, its log size-capped."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import struct
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import unquote

import aiohttp
import pytest

from appliance.signaling.embedded import EmbeddedStore, uri_file
from appliance.signaling.server import SignalServer
from appliance.signaling.store import Store

from .conftest import PASSWORD, make_config

pytestmark = pytest.mark.skipif(bool(os.environ.get("MONGODB_URI")), reason="about the embedded store; an external MongoDB is not ours")


async def _status(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url + "/api/health") as resp:
        return resp.status


async def _login(http: aiohttp.ClientSession, url: str) -> int:
    async with http.post(url + "/api/auth/login", json={"username": "alice", "password": PASSWORD}) as resp:
        return resp.status


async def test_a_killed_store_is_started_again(server: SignalServer, http: aiohttp.ClientSession) -> None:
    embedded = server.embedded
    assert embedded is not None and embedded.pid is not None
    first = embedded.pid
    uri = uri_file(server.state_dir).read_text()
    os.kill(first, signal.SIGKILL)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not (embedded.pid != first and embedded.running and await _status(http, server.url) == 200):
        assert loop.time() < deadline, "the store was not started again"
        await asyncio.sleep(0.2)
    assert await _login(http, server.url) == 200  # the store client found it again by itself
    assert uri_file(server.state_dir).read_text() == uri  # the CLI still finds it where it was
    async with http.get(server.url + "/metrics") as resp:
        assert "wallmesh_signal_store_restarts_total 1.0" in await resp.text()
    # and again: supervision goes on after a restart
    second = embedded.pid
    assert second is not None
    os.kill(second, signal.SIGKILL)
    deadline = loop.time() + 30
    while not (embedded.pid != second and await _status(http, server.url) == 200):
        assert loop.time() < deadline, "the store was not started again the second time"
        await asyncio.sleep(0.2)
    assert await _login(http, server.url) == 200


async def test_a_store_stopped_on_purpose_stays_stopped(server: SignalServer, http: aiohttp.ClientSession) -> None:
    embedded = server.embedded
    assert embedded is not None
    await embedded.stop(release=False)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while await _status(http, server.url) != 503:
        assert loop.time() < deadline, "health did not see the store go"
        await asyncio.sleep(0.2)
    await asyncio.sleep(2)  # well past the first restart delay
    assert not embedded.running and embedded.pid is None
    assert await _status(http, server.url) == 503


@pytest.fixture
async def open_site() -> AsyncIterator[SignalServer]:
    """A server whose state directory sits in a directory every user may enter, as /var/lib is."""
    base = Path(tempfile.mkdtemp(prefix="wallmesh-site-"))
    base.chmod(0o755)
    try:
        async with SignalServer(make_config(), state_dir=base / "state") as srv:
            await srv.admin.add_user("alice", PASSWORD)
            yield srv
    finally:
        shutil.rmtree(base)


def _listening_inet_inodes() -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":  # LISTEN
                    inodes.add(fields[9])
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def _write_as_nobody(uri: str) -> int:
    """In a child with uid/gid 65534: insert an admin-ish user through ``uri``. 0: it wrote."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 3
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            from pymongo import MongoClient

            client = MongoClient(uri, serverSelectionTimeoutMS=1500, connectTimeoutMS=1500)
            client["wallmesh"]["users"].insert_one({"_id": "mallory", "hash": "x", "rooms": ["*"]})
            code = 0
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another local user (uid 65534)")
async def test_another_local_user_cannot_write_to_the_store(open_site: SignalServer) -> None:
    embedded = open_site.embedded
    assert embedded is not None and embedded.pid is not None
    uri = uri_file(open_site.state_dir).read_text().strip()
    # no TCP port to find: the store listens on nothing but its unix socket
    assert not _socket_inodes(embedded.pid) & _listening_inet_inodes()
    path = Path(unquote(uri.removeprefix("mongodb://").split("/?")[0]))
    assert path.is_socket() and path.stat().st_mode & 0o077 == 0 and path.parent.stat().st_mode & 0o077 == 0
    assert await asyncio.to_thread(_write_as_nobody, uri) != 0
    # the server's own user (here root) reaches it through the same URI, and nothing was written
    store = Store(uri)
    try:
        assert await store.get_user("alice") is not None
        assert await store.get_user("mallory") is None
    finally:
        await store.close()


async def test_the_store_log_is_size_capped(tmp_path: Path) -> None:
    """A client that only sends garbage makes the store log a line per connection; the log
    rotates instead of growing without bound."""
    store = EmbeddedStore(tmp_path, publish=False, log_bytes=4000)
    await store.start()
    try:
        bad = struct.pack("<iiii", 1 << 30, 1, 0, 2013)  # a message length past the limit: warned, dropped
        for _ in range(400):
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(str(store.socket_path))
                sock.sendall(bad)
                sock.recv(10)  # the store closes it
        logs = sorted(store.dir.glob("nx-27017.log*"))
        assert [p.name for p in logs] == ["nx-27017.log", "nx-27017.log.1", "nx-27017.log.2"]
        assert all(p.stat().st_size <= 4000 for p in logs)
        assert "Invalid message length" in logs[0].read_text()
    finally:
        await store.stop()


async def test_a_state_dir_too_deep_for_a_socket_path_uses_a_private_dir(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    store = EmbeddedStore(deep, publish=False)
    await store.start()
    try:
        private = store.socket_path.parent
        assert private != store.dir and private.name.startswith("wallmesh-store-")
        assert private.stat().st_mode & 0o777 == 0o700
        client = Store(store.uri)
        try:
            await client.add_user("erin", "hash", ["*"])
            assert (await client.get_user("erin"))["rooms"] == ["*"]
        finally:
            await client.close()
    finally:
        await store.stop()
    assert not private.exists()
