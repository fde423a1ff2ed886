"""Frame size limits (before and after permessage-deflate), flooding and garbage closes."""

from __future__ import annotations

import aiohttp
import orjson

from appliance import protocol
from appliance.signaling.server import SignalServer

from .conftest import Client, make_config, user_token


async def _alive(connect) -> None:
    a = await connect()
    b = await connect()
    await a.join("alive")
    await b.join("alive")
    await b.send({"type": "signal", "to": a.peer_id, "data": {"candidate": {"candidate": "x"}}})
    assert (await a.recv("signal"))["from"] == b.peer_id


async def test_frame_just_over_the_limit_is_answered(connect) -> None:
    a = await connect()
    await a.join("big")
    frame = {"type": "signal", "to": "x", "data": {"sdp": {"type": "offer", "sdp": "a" * protocol.MAX_FRAME_BYTES}}}
    await a.send(frame)
    err = await a.recv()
    assert err["type"] == "error" and err["code"] == "too_large"
    await a.send({"type": "ping", "id": "still-open"})
    assert await a.recv() == {"type": "pong", "id": "still-open"}


async def test_a_relay_never_exceeds_the_frame_limit(connect) -> None:
    """A signal at the limit grows when relayed ("from" and an id for "to"): the sender hears
    too_large rather than the receiver getting a frame its parser must drop."""
    a = await connect()
    b = await connect()
    await a.join("edge")
    await b.join("edge")
    head = orjson.dumps({"type": "signal", "to": a.peer_id, "data": {"sdp": {"type": "offer", "sdp": ""}}})

    def signal(size: int) -> dict:
        return {"type": "signal", "to": a.peer_id, "data": {"sdp": {"type": "offer", "sdp": "a" * (size - len(head))}}}
    assert len(orjson.dumps(signal(protocol.MAX_FRAME_BYTES))) == protocol.MAX_FRAME_BYTES
    await b.send(signal(protocol.MAX_FRAME_BYTES))
    err = await b.recv()
    assert (err["type"], err["code"], err["ref"]) == ("error", "too_large", "signal")
    await b.send(signal(protocol.MAX_FRAME_BYTES - 64))
    await a.recv("peer-joined")
    relayed = await a.recv()  # the next frame a gets: the oversized one was never sent
    assert relayed["type"] == "signal" and relayed["from"] == b.peer_id
    assert len(orjson.dumps(relayed)) <= protocol.MAX_FRAME_BYTES


async def test_huge_frame_closes_with_1009(connect) -> None:
    a = await connect()
    await a.ws.send_str('{"type":"ping","id":"' + "a" * (2 * 1024 * 1024) + '"}')
    assert await a.expect_close() == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    await _alive(connect)


async def test_decompression_bomb(connect) -> None:
    # 10 MiB of spaces deflates to ~10 KiB on the wire; the limit must apply to the inflated size.
    bomb = '{"type":"ping","id":"x"' + " " * (10 * 1024 * 1024) + "}"
    a = await connect(compress=15)
    assert a.ws.compress == 15  # permessage-deflate was negotiated
    await a.ws.send_str(bomb)
    assert await a.expect_close() == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    # a smaller bomb, over 64 KiB once inflated but within what is read, gets too_large
    b = await connect(compress=15)
    await b.ws.send_str('{"type":"ping","id":"x"' + " " * (100 * 1024) + "}")
    assert (await b.recv())["code"] == "too_large"
    await b.send({"type": "ping", "id": 1})
    assert (await b.recv())["id"] == 1
    await _alive(connect)


async def test_binary_frames_refused(connect) -> None:
    a = await connect()
    await a.ws.send_bytes(b'{"type":"ping"}')
    assert (await a.recv())["code"] == "bad_message"


async def test_flooding_is_rate_limited_then_closed(tmp_path, http) -> None:
    cfg = make_config(rate={"frames_per_s": 10, "burst": 20, "strikes": 10})
    async with SignalServer(cfg, state_dir=tmp_path) as server:
        a = await Client.connect(http, server, user_token(server))
        for i in range(200):
            await a.send({"type": "ping", "id": i})
        codes = []
        while True:
            msg = await a.ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            obj = orjson.loads(msg.data)
            codes.append(obj.get("code", obj["type"]))
        assert codes[:19] == ["pong"] * 19  # the burst (less the hello) passes
        assert "rate_limited" in codes
        assert a.ws.close_code == protocol.CLOSE_RATE_LIMITED


async def test_sustained_garbage_is_closed(tmp_path, http) -> None:
    cfg = make_config(rate={"strikes": 10})
    async with SignalServer(cfg, state_dir=tmp_path) as server:
        a = await Client.connect(http, server, user_token(server))
        for _ in range(100):
            await a.ws.send_str("{")
        assert await a.expect_close() == protocol.CLOSE_BAD_MESSAGES
