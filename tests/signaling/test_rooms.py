"""Rooms: membership, roster, relay within a room only, cap, state, leave, heartbeat."""

from __future__ import annotations

import asyncio

import aiohttp

from appliance import protocol
from appliance.signaling.server import SignalServer

from .conftest import Client, make_config, user_token

OFFER = {"sdp": {"type": "offer", "sdp": "v=0\r\n" + "a=x\r\n" * 100}}


async def test_join_roster_and_relay(connect) -> None:
    a = await connect(name="unit-a")
    b = await connect(name="unit-b")
    joined_a = await a.join("lobby")
    assert joined_a == {"type": "joined", "room": "lobby", "peer_id": a.peer_id, "peers": []}
    await a.send({"type": "state", "muted": True, "camera": False})
    joined_b = await b.join("lobby")
    assert joined_b["peers"] == [
        {"peer_id": a.peer_id, "name": "unit-a", "kind": "user", "state": {"muted": True, "camera": False}, "account": "alice"}
    ]
    assert await a.recv() == {"type": "peer-joined", "peer_id": b.peer_id, "name": "unit-b", "kind": "user", "account": "alice"}
    await b.send({"type": "signal", "to": a.peer_id, "data": OFFER})
    assert await a.recv() == {"type": "signal", "from": b.peer_id, "data": OFFER}
    await a.send({"type": "state", "muted": False, "camera": True})
    assert await b.recv() == {"type": "peer-state", "peer_id": a.peer_id, "muted": False, "camera": True}
    await a.send({"type": "ping", "id": 7})
    assert await a.recv() == {"type": "pong", "id": 7}
    await a.send({"type": "leave"})
    assert await a.recv() == {"type": "left", "room": "lobby"}
    assert await b.recv() == {"type": "peer-left", "peer_id": a.peer_id, "reason": "left"}
    await b.close()


async def test_rooms_are_isolated(connect) -> None:
    a = await connect()
    b = await connect()
    c = await connect()
    await a.join("room-one")
    await b.join("room-one")
    await a.recv("peer-joined")
    joined_c = await c.join("room-two")
    assert joined_c["peers"] == []  # no roster from another room
    # forged `to`: a peer that exists, but in another room, looks exactly like one that does not
    await c.send({"type": "signal", "to": a.peer_id, "data": OFFER})
    err = await c.recv()
    await c.send({"type": "signal", "to": "0000000000000000", "data": OFFER})
    err2 = await c.recv()
    assert err["code"] == err2["code"] == "unknown_peer"
    assert err["message"] == err2["message"]
    # state and leave in room-two are not heard in room-one
    await c.send({"type": "state", "muted": True, "camera": True})
    await c.send({"type": "leave"})
    await c.recv("left")
    await a.send({"type": "ping", "id": "sync"})
    assert await a.recv() == {"type": "pong", "id": "sync"}  # nothing from room-two came first
    await b.send({"type": "ping", "id": "sync"})
    assert await b.recv() == {"type": "pong", "id": "sync"}


async def test_signal_needs_a_room_and_a_peer(connect) -> None:
    a = await connect()
    await a.send({"type": "signal", "to": "abc", "data": OFFER})
    assert (await a.recv())["code"] == "not_in_room"
    await a.send({"type": "leave"})
    assert (await a.recv())["code"] == "not_in_room"
    await a.join("solo")
    await a.send({"type": "signal", "to": a.peer_id, "data": OFFER})
    assert (await a.recv())["code"] == "unknown_peer"


async def test_room_cap_and_rooms_claim(connect) -> None:
    members = [await connect() for _ in range(6)]
    for m in members:
        assert (await m.join("full"))["type"] == "joined"
    seventh = await connect()
    err = await seventh.join("full")
    assert err["type"] == "error" and err["code"] == "room_full"
    limited = await connect(rooms=("allowed",))
    err = await limited.join("full")
    assert err["code"] == "forbidden"
    assert (await limited.join("allowed"))["type"] == "joined"


async def test_disconnect_announced_and_called_logged(server: SignalServer, connect) -> None:
    a = await connect()
    b = await connect()
    await a.join("log")
    await b.join("log")
    await b.close()
    left = await a.recv("peer-left")
    assert left == {"type": "peer-left", "peer_id": b.peer_id, "reason": "disconnected"}
    assert server.store is not None
    # the call log is written in the background: poll (generously capped) until it is
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    entries: list = []
    while loop.time() < deadline:
        entries = await server.store.call_log("log")
        if len(entries) >= 3:
            break
        await asyncio.sleep(0.1)
    events = [(e["event"], e["peer_id"]) for e in entries]
    assert events == [("join", a.peer_id), ("join", b.peer_id), ("leave", b.peer_id)]
    assert all("sdp" not in str(e) for e in entries)


async def test_hello_first_and_within_timeout(tmp_path, http) -> None:
    cfg = make_config(heartbeat={"hello_timeout_s": 1.0})
    async with SignalServer(cfg, state_dir=tmp_path) as server:
        c = await Client.connect(http, server)
        await c.send({"type": "join", "room": "x"})
        err = await c.recv()
        assert err["code"] == "unauthorized"
        assert await c.expect_close(5) == protocol.CLOSE_UNAUTHORIZED
        bad = await Client.connect(http, server)
        await bad.send({"type": "hello", "token": "not-a-jwt"})
        assert (await bad.recv())["code"] == "unauthorized"
        assert await bad.expect_close(5) == protocol.CLOSE_UNAUTHORIZED


async def test_silent_client_evicted_within_10s(tmp_path, http) -> None:
    async with SignalServer(make_config(), state_dir=tmp_path) as server:
        token = user_token(server)
        watcher = await Client.connect(http, server, token)
        await watcher.join("hb")
        # The silent one never reads, so it never answers pings: a vanished unit.
        silent = await Client.connect(http, server, token, autoping=False)
        await silent.join("hb")
        await watcher.recv("peer-joined")
        loop = asyncio.get_running_loop()
        start = loop.time()
        # the watcher keeps talking (any frame proves it alive) while the other stays silent
        async def chatter() -> None:
            while True:
                await watcher.send({"type": "ping"})
                await asyncio.sleep(1)
        task = asyncio.create_task(chatter())
        try:
            left = await watcher.recv("peer-left", timeout=12)
        finally:
            task.cancel()
        assert left["peer_id"] == silent.peer_id and left["reason"] == "timeout"
        assert loop.time() - start <= 10.0
        await watcher.send({"type": "ping", "id": 1})
        assert (await watcher.recv("pong"))["id"] == 1  # the live client was not dropped


async def test_stop_says_goodbye_to_every_client(tmp_path, http) -> None:
    server = SignalServer(make_config(), state_dir=tmp_path)
    await server.start()
    clients = [await Client.connect(http, server, user_token(server)) for _ in range(3)]
    closes = [asyncio.create_task(c.expect_close()) for c in clients]
    loop = asyncio.get_running_loop()
    start = loop.time()
    await server.stop()
    assert loop.time() - start < 3
    assert await asyncio.gather(*closes) == [aiohttp.WSCloseCode.GOING_AWAY] * 3
    await server.stop()  # idempotent
    assert server.state == "stopped"
