"""The store: outage under a live room, persistence across restarts, the call log."""

from __future__ import annotations

import asyncio
import os

import pytest

from appliance.signaling.admin import AdminError
from appliance.signaling.server import SignalServer

from .conftest import PASSWORD, Client, make_config, user_token


async def _status(http, url: str) -> int:
    async with http.get(url + "/api/health") as r:
        return r.status


async def _wait_status(http, url: str, want: int, within: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        if await _status(http, url) == want:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"/api/health did not become {want} within {within} s")


async def _login(http, server) -> int:
    async with http.post(server.url + "/api/auth/login", json={"username": "alice", "password": PASSWORD}) as r:
        return r.status


@pytest.mark.skipif(bool(os.environ.get("MONGODB_URI")), reason="stops the embedded store; an external MongoDB is not ours to stop")
async def test_store_outage_under_a_live_room(server: SignalServer, http, connect) -> None:
    a = await connect()
    b = await connect()
    await a.join("live")
    await b.join("live")
    assert server.embedded is not None
    await server.embedded.stop(release=False)
    await _wait_status(http, server.url, 503, within=10)
    # rooms keep relaying while the store is away
    for i in range(5):
        await b.send({"type": "signal", "to": a.peer_id, "data": {"candidate": {"n": i}}})
        assert (await a.recv("signal"))["data"] == {"candidate": {"n": i}}
    # logins fail closed
    assert await _login(http, server) == 503
    # joins still work (tokens are verified locally) and their call-log entries wait in memory
    c = await connect()
    await c.join("live")
    await b.close()
    await a.recv("peer-left")
    await server.embedded.start()  # same port, same files
    await _wait_status(http, server.url, 200, within=20)
    assert await _login(http, server) == 200
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while loop.time() < deadline:
        entries = await server.store.call_log("live")
        if len(entries) >= 4:
            break
        await asyncio.sleep(0.2)
    events = [(e["event"], e["peer_id"]) for e in entries]
    assert ("join", c.peer_id) in events and ("leave", b.peer_id) in events
    metrics = await (await http.get(server.url + "/metrics")).text()
    assert "wallmesh_signal_store_up 1.0" in metrics


async def test_data_survives_a_server_restart(tmp_path, http) -> None:
    cfg = make_config()
    state = tmp_path / "state"
    async with SignalServer(cfg, state_dir=state) as first:
        await first.admin.add_user("dana", PASSWORD, rooms=("ops",))
        token = await first.admin.enrollment_token(ttl_s=600)
        async with http.post(first.url + "/api/devices/enroll", json={"enrollment_token": token, "device_id": "pi-7", "name": "Ops"}) as r:
            assert r.status == 201
            secret = (await r.json())["device_secret"]
        old_user_token = user_token(first)
    async with SignalServer(cfg, state_dir=state) as second:
        assert [u["name"] for u in await second.admin.list_users()] == ["dana"]
        assert [(d["device_id"], d["name"]) for d in await second.admin.list_devices()] == [("pi-7", "Ops")]
        async with http.post(second.url + "/api/auth/login", json={"username": "dana", "password": PASSWORD}) as r:
            assert r.status == 200
        async with http.post(second.url + "/api/auth/device", json={"device_id": "pi-7", "device_secret": secret}) as r:
            assert r.status == 200
        # the signing key persisted too: a token from before the restart still works
        client = await Client.connect(http, second, old_user_token)
        assert client.peer_id


async def test_revoked_device_is_closed_and_refused(server: SignalServer, http) -> None:
    token = await server.admin.enrollment_token(ttl_s=600)
    async with http.post(server.url + "/api/devices/enroll", json={"enrollment_token": token, "device_id": "pi-r"}) as r:
        secret = (await r.json())["device_secret"]
    async with http.post(server.url + "/api/auth/device", json={"device_id": "pi-r", "device_secret": secret}) as r:
        device_token = (await r.json())["token"]
    dev = await Client.connect(http, server, device_token)
    await dev.join("lobby")
    # revoke through the store directly, as a CLI in another process would
    assert await server.store.revoke_device("pi-r")
    assert await dev.expect_close(timeout=5) == 4401  # within 5 s, or the timeout fails the test
    again = await Client.connect(http, server)
    await again.send({"type": "hello", "token": device_token})
    assert (await again.recv())["code"] == "unauthorized"
    async with http.post(server.url + "/api/auth/device", json={"device_id": "pi-r", "device_secret": secret}) as r:
        assert r.status == 401


async def test_removed_user_is_closed_and_refused(server: SignalServer, http) -> None:
    token = user_token(server, "alice")
    alice = await Client.connect(http, server, token)
    await alice.join("lobby")
    bob = await Client.connect(http, server, user_token(server, "bob"))
    await bob.join("lobby")
    # remove through the store directly, as a CLI in another process would
    assert await server.store.remove_user("alice")
    assert await alice.expect_close(timeout=5) == 4401  # within 5 s, or the timeout fails the test
    assert (await bob.recv("peer-left"))["peer_id"] == alice.peer_id
    again = await Client.connect(http, server)
    await again.send({"type": "hello", "token": token})  # verified (and cached) before: still refused
    assert (await again.recv())["code"] == "unauthorized"
    async with http.post(server.url + "/api/auth/login", json={"username": "alice", "password": PASSWORD}) as r:
        assert r.status == 401
    # other users are untouched, and a re-added alice gets in with a fresh token
    await bob.send({"type": "ping", "id": "still-here"})
    assert (await bob.recv("pong"))["id"] == "still-here"
    await asyncio.sleep(1.1)  # token times are whole seconds: the next one must be issued after the removal
    await server.admin.add_user("alice", PASSWORD)
    async with http.post(server.url + "/api/auth/login", json={"username": "alice", "password": PASSWORD}) as r:
        fresh = (await r.json())["token"]
    assert (await Client.connect(http, server, fresh)).peer_id


async def test_admin_remove_user_closes_live_connections(server: SignalServer, http) -> None:
    alice = await Client.connect(http, server, user_token(server, "alice"))
    await server.admin.remove_user("alice")
    assert await alice.expect_close(timeout=5) == 4401
    with pytest.raises(AdminError):
        await server.admin.remove_user("alice")


async def _raw_ws(server: SignalServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket spoken by hand, so the test sees exactly when the server hangs up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    return reader, writer


def _client_frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    size = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
    return bytes([0x80 | opcode]) + size + b"\0\0\0\0" + payload  # masked with a zero key


async def _server_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n >= 126:
        n = int.from_bytes(await reader.readexactly(2 if n == 126 else 8), "big")
    return b0 & 0x0F, await reader.readexactly(n)


async def test_closed_from_the_server_side_waits_for_the_clients_close_frame(server: SignalServer) -> None:
    """A connection closed by the server (here: its user removed) gets a real close handshake:
    the server waits for the client's answer instead of dropping TCP under it (seen as 1006)."""
    reader, writer = await _raw_ws(server)
    try:
        hello = b'{"type":"hello","token":"%s"}' % user_token(server, "alice").encode()
        writer.write(_client_frame(0x1, hello))
        assert b'"welcome"' in (await _server_frame(reader))[1]
        await server.admin.remove_user("alice")
        async with asyncio.timeout(10):
            while (frame := await _server_frame(reader))[0] != 0x8:
                pass
        assert int.from_bytes(frame[1][:2], "big") == 4401
        with pytest.raises(TimeoutError):  # still connected, waiting for our close frame
            async with asyncio.timeout(1.0):
                await reader.read(1)
        writer.write(_client_frame(0x8, frame[1][:2]))
        async with asyncio.timeout(10):
            assert await reader.read(1) == b""  # then the server hangs up
    finally:
        writer.close()
