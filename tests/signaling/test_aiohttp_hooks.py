"""aiohttp's WebSocket writer with wallmesh's one hook in: a burst of frames leaves in one socket write."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from appliance import compat
from appliance.errors import LibraryMismatch, WallmeshError
from appliance.signaling import aiohttp_hooks
from appliance.signaling.outbox import Outbox


class CountingTransport:
    """Wraps the connection's real transport and counts the writes that reach it."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.real.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


async def serve(handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/ws"


@pytest.mark.parametrize("gathered", [True, False])
async def test_a_burst_of_frames_is_one_socket_write_and_arrives_whole(gathered):
    frames = [f'{{"type":"signal","n":{i}}}'.encode() for i in range(40)]
    counted: list[CountingTransport] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        counting = CountingTransport(ws._writer.transport)  # the test watches aiohttp's own transport
        ws._writer.transport = counting
        counted.append(counting)
        if gathered:
            outbox = Outbox(ws)
            for frame in frames:  # all in one loop turn, as in a join storm
                outbox.put(frame)
            await outbox.close()
        else:
            for frame in frames:
                await ws.send_frame(frame, aiohttp.WSMsgType.TEXT)
        await ws.receive()  # until the client closes
        return ws

    runner, url = await serve(handler)
    try:
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as client:
            got = [await asyncio.wait_for(client.receive_str(), 5) for _ in frames]
            writes = counted[0].writes  # before the close handshake adds its own
        assert got == [f.decode() for f in frames]
        assert writes == (1 if gathered else len(frames))  # aiohttp's own path: a write a frame
    finally:
        await runner.cleanup()


def test_the_installed_aiohttp_is_in_range_and_has_the_hook():
    assert aiohttp_hooks.check() == []


def test_an_aiohttp_outside_the_range_refuses_with_one_line(monkeypatch):
    monkeypatch.setattr(aiohttp, "__version__", "4.0.0")
    with pytest.raises(LibraryMismatch) as caught:
        aiohttp_hooks.check()
    message = str(caught.value)
    assert isinstance(caught.value, WallmeshError) and "\n" not in message
    assert message.startswith("aiohttp 4.0.0 is installed, but wallmesh needs aiohttp")
    assert f"tested with aiohttp {aiohttp_hooks.TESTED}" in message
    spec = compat.requirement("aiohttp")
    assert spec is None or str(spec) in message  # the range from wallmesh's own metadata
