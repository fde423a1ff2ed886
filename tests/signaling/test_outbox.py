"""Slow consumers: a client that stops reading is evicted by queued bytes, and freed at once.

The client here is a real socket that completes the WebSocket handshake, joins a room and
then never reads again, with a small receive buffer so the server's writes back up fast.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import weakref

import orjson
import pytest

from appliance import protocol
from appliance.signaling import outbox
from appliance.signaling.server import SignalServer

from .conftest import Client, user_token


def _client_frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        size = bytes([0x80 | n])
    elif n < 65536:
        size = bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        size = bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return bytes([0x80 | opcode]) + size + b"\0\0\0\0" + payload  # masked with a zero key


async def _server_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n >= 126:
        n = int.from_bytes(await reader.readexactly(2 if n == 126 else 8), "big")
    return b0 & 0x0F, await reader.readexactly(n)


async def _text(reader: asyncio.StreamReader, kind: str) -> dict:
    async with asyncio.timeout(5):
        while True:
            opcode, payload = await _server_frame(reader)
            if opcode == 0x1 and (obj := orjson.loads(payload))["type"] == kind:
                return obj


async def _stalled_member(server: SignalServer, room: str) -> tuple[str, asyncio.StreamWriter]:
    """A participant in ``room`` that, once joined, never reads from its socket again."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    writer.write(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    writer.write(_client_frame(0x1, orjson.dumps({"type": "hello", "token": user_token(server)})))
    peer_id = (await _text(reader, "welcome"))["peer_id"]
    writer.write(_client_frame(0x1, orjson.dumps({"type": "join", "room": room})))
    await _text(reader, "joined")
    writer.transport.pause_reading()  # from here on, nothing is read
    return peer_id, writer


def _connection_of(server: SignalServer, peer_id: str):
    conn = next(c for c in server.services.connections if c.participant and c.participant.peer_id == peer_id)
    # a small kernel send buffer on the server's side too, so the backlog lands in the outbox
    conn.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return conn


def _offer(to: str, size: int) -> dict:
    return {"type": "signal", "to": to, "data": {"sdp": {"type": "offer", "sdp": "v=0 " + "a" * size}}}


@pytest.fixture
def no_gc():
    """The cyclic collector off: what is freed here is freed by reference counting."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


async def test_a_client_that_stops_reading_is_evicted_and_freed(server: SignalServer, http, no_gc) -> None:
    stalled_id, writer = await _stalled_member(server, "slow")
    conn = _connection_of(server, stalled_id)
    box = conn.outbox
    box_ref, conn_ref = weakref.ref(box), weakref.ref(conn)
    del conn
    sender = await Client.connect(http, server, user_token(server))
    await sender.join("slow")
    big = _offer(stalled_id, protocol.MAX_FRAME_BYTES - 200)
    try:
        async with asyncio.timeout(20):
            # 200 frames: 12 MiB, far below 4096 frames of this size
            for sent in range(1, 201):  # noqa: B007 (read after the loop)
                await sender.send(big)
                await asyncio.sleep(0)
                if conn_ref().closing is not None:
                    break
            else:
                raise AssertionError("a client that reads nothing was not evicted after 12 MiB")
            # evicted by bytes, long before the frame count, and its queue dropped at once
            assert sent * len(orjson.dumps(big)) < 2 * outbox.MAX_BYTES
            assert box.queued_bytes == 0 and box.queued_frames == 0
            del box
            left = await sender.recv("peer-left")
            assert left["peer_id"] == stalled_id
            while conn_ref() is not None or box_ref() is not None:  # noqa: ASYNC110 (a weakref has no event)
                await asyncio.sleep(0.1)
    except TimeoutError:
        alive = box_ref()
        holders = [type(r).__name__ for r in gc.get_referrers(alive)] if alive is not None else []
        raise AssertionError(f"connection not freed without the cyclic GC (outbox held by {holders})") from None
    finally:
        writer.transport.abort()
    # the sender's own connection is unaffected
    await sender.send({"type": "ping", "id": "still"})
    assert (await sender.recv("pong"))["id"] == "still"


async def test_the_byte_bound_comes_before_the_frame_count(server: SignalServer) -> None:
    """An outbox whose writer is stuck: the bound that trips first is bytes, not frames."""
    stalled_id, writer = await _stalled_member(server, "bytes")
    try:
        conn = _connection_of(server, stalled_id)
        frame = orjson.dumps(protocol.relayed("x" * 16, _offer(stalled_id, 32 * 1024)["data"]))
        n = 0
        while conn.closing is None:
            conn.outbox.put(frame)
            n += 1
            assert n < 4096, "the frame count tripped first"
        assert n * len(frame) <= outbox.MAX_BYTES + len(frame)
        assert conn.outbox.queued_bytes == 0
        assert conn.closing is not None
        await asyncio.wait_for(conn.closing, 15)
        assert conn not in server.services.connections
    finally:
        writer.transport.abort()
