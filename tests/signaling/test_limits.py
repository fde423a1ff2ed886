"""Frame size limits (before and after permessage-deflate), flooding and garbage closes."""

from __future__ import annotations

import aiohttp
import orjson
import pytest

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


def _nested_lists(levels: int) -> str:
    return "[" * levels + "]" * levels


def _nested_objects(levels: int) -> str:
    return '{"a":' * levels + "{}" + "}" * levels


@pytest.mark.parametrize(("inner", "code"), [
    (_nested_lists(300), "bad_message"),  # parses, but deeper than the JSON encoder writes
    (_nested_lists(1023), "bad_message"),  # the decoder's own limit
    (_nested_lists(32_000), "bad_message"),  # deeper than the decoder reads, within 64 KiB
    (_nested_objects(10_000), "bad_message"),
    ("[" + ",".join(["[]"] * 20_000) + "]", "bad_message"),  # wide: 20 000 arrays in one
    ("[" + ",".join(['{"a":[{}]}'] * 5_000) + "]", "bad_message"),
    (_nested_lists(100_000), "too_large"),  # deflated below the read limit, too large inflated
], ids=["300-levels", "1023-levels", "32000-levels", "10000-objects", "20000-wide", "5000-objects-wide", "100000-levels"])
async def test_pathological_signal_data_is_refused_and_the_connection_kept(connect, inner, code) -> None:
    a = await connect(compress=15)
    b = await connect()
    await a.join("deep")
    await b.join("deep")
    await a.recv("peer-joined")
    frame = '{"type":"signal","to":"' + b.peer_id + '","data":{"candidate":{"candidate":"c","x":' + inner + "}}}"
    await a.ws.send_str(frame)
    err = await a.recv()
    assert (err["type"], err["code"]) == ("error", code)
    # the connection stays usable, and the refused frame never reached the other side
    await a.send({"type": "signal", "to": b.peer_id, "data": {"candidate": {"candidate": "ok"}}})
    got = await b.recv()
    assert got["type"] == "signal" and got["data"] == {"candidate": {"candidate": "ok"}}


async def test_data_at_the_nesting_limit_is_relayed(connect) -> None:
    a = await connect()
    b = await connect()
    await a.join("edge-deep")
    await b.join("edge-deep")
    await a.recv("peer-joined")
    # data, the candidate object, then lists: exactly MAX_DATA_DEPTH levels, then one more
    at_limit = {"candidate": {"x": orjson.loads(_nested_lists(protocol.MAX_DATA_DEPTH - 2))}}
    await a.send({"type": "signal", "to": b.peer_id, "data": at_limit})
    assert (await b.recv())["data"] == at_limit
    too_deep = {"candidate": {"x": orjson.loads(_nested_lists(protocol.MAX_DATA_DEPTH - 1))}}
    await a.send({"type": "signal", "to": b.peer_id, "data": too_deep})
    assert (await a.recv())["code"] == "bad_message"
