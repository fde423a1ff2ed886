"""Fixtures for the signaling server tests: a real server on an ephemeral loopback port.

The store is the embedded nx-27017 in the test's temp dir, or the MongoDB named by
``MONGODB_URI`` (a fresh database per test) when that variable is set.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from appliance import protocol
from appliance.config import merge
from appliance.signaling.config import SignalConfig
from appliance.config import build
from appliance.signaling.server import SignalServer

PASSWORD = "correct horse battery"


def make_config(**overrides: Any) -> SignalConfig:
    base: dict[str, Any] = {"host": "127.0.0.1", "port": 0}
    uri = os.environ.get("MONGODB_URI")
    if uri:
        base["mongodb_uri"] = uri
        base["database"] = "wallmesh_test_" + uuid.uuid4().hex[:12]
    return build(SignalConfig, merge(base, overrides), "<test>")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[SignalServer]:
    async with SignalServer(make_config(), state_dir=tmp_path / "state") as srv:
        await srv.admin.add_user("alice", PASSWORD)
        yield srv


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def user_token(server: SignalServer, name: str = "alice", rooms: tuple[str, ...] = ("*",)) -> str:
    assert server.tokens is not None
    return server.tokens.issue("user", name, name, rooms, 600)


class Client:
    """A test participant speaking protocol v1 over a real WebSocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.peer_id = ""

    @classmethod
    async def connect(cls, session: aiohttp.ClientSession, server: SignalServer, token: str | None = None,
                      name: str | None = None, **kw: Any) -> Client:
        client = cls(await session.ws_connect(server.ws_url, **kw))
        if token is not None:
            hello: dict[str, Any] = {"type": "hello", "token": token}
            if name:
                hello["name"] = name
            await client.send(hello)
            welcome = await client.recv("welcome")
            client.peer_id = welcome["peer_id"]
        return client

    async def send(self, obj: dict[str, Any]) -> None:
        await self.ws.send_str(orjson.dumps(obj).decode())

    async def recv(self, *types: str, timeout: float = 5.0) -> dict[str, Any]:
        """The next frame (of one of ``types`` when given, skipping others)."""
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise AssertionError(f"expected a text frame, got {msg.type} {msg.data!r} {msg.extra!r}")
                obj = orjson.loads(msg.data)
                # every frame the server sends must pass the unit's own parser, which checks
                # it against the protocol's types (ProtocolError here fails the test)
                assert protocol.parse_server(msg.data) == obj
                if not types or obj["type"] in types:
                    return obj

    async def expect_close(self, timeout: float = 10.0) -> int:
        """Read until the server closes; return the close code."""
        async with asyncio.timeout(timeout):
            while True:
                try:
                    msg = await self.ws.receive()
                except ConnectionResetError:
                    continue  # answering a ping raced the server's close; the close frame is still queued
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                    return self.ws.close_code if self.ws.close_code is not None else msg.data
                if msg.type == aiohttp.WSMsgType.ERROR:
                    return self.ws.close_code

    async def join(self, room: str) -> dict[str, Any]:
        await self.send({"type": "join", "room": room})
        return await self.recv("joined", "error")

    async def close(self) -> None:
        await self.ws.close()


@pytest.fixture
def connect(http: aiohttp.ClientSession, server: SignalServer):
    async def _connect(rooms: tuple[str, ...] = ("*",), name: str | None = None, **kw: Any) -> Client:
        return await Client.connect(http, server, user_token(server, rooms=rooms), name=name, **kw)

    return _connect
