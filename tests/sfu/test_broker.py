"""The server's side of the conference server: who may grow a room, and what the relay lets through.

Against the real signaling server; the Janus tests use a real Janus in a namespace of its own
(``conftest.py``) and real aiortc publishers (audio only: cheap, and enough for Janus to
count a feed as live).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
import pytest

from appliance import protocol
from appliance.mesh import ice
from appliance.signaling.server import SignalServer
from tests.sfu.conftest import sfu_config
from tests.signaling.conftest import Client, make_config, user_token


async def _room_of(n: int, server: SignalServer, http: aiohttp.ClientSession, room: str, **kw: Any) -> list[Client]:
    clients = []
    for _ in range(n):
        c = await Client.connect(http, server, user_token(server), **kw)
        assert (await c.join(room))["type"] == "joined"
        clients.append(c)
    return clients


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_a_site_without_a_conference_server_refuses_the_seventh_plainly(tmp_path, http) -> None:
    async with SignalServer(make_config(), state_dir=tmp_path / "state") as server:
        six = await _room_of(6, server, http, "full")
        seventh = await Client.connect(http, server, user_token(server))
        err = await seventh.join("full")
        assert err["code"] == "room_full"
        assert err["message"] == "this room is full; the site has no conference server"
        # the joined of a mesh-only site carries no mode: byte for byte what older clients got
        other = await Client.connect(http, server, user_token(server))
        assert "mode" not in await other.join("other")
        for c in [*six, seventh, other]:
            await c.close()


async def test_an_unreachable_conference_server_refuses_the_seventh_at_once(tmp_path, http) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/janus"
    config = make_config(sfu={"type": "janus", "url": url, "probe_s": 0.2, "timeout_s": 1.0})
    async with SignalServer(config, state_dir=tmp_path / "state") as server:
        six = await _room_of(6, server, http, "full")
        seventh = await Client.connect(http, server, user_token(server))
        loop = asyncio.get_running_loop()
        started = loop.time()
        err = await seventh.join("full")
        assert loop.time() - started < 2.0, "a join must never wait for the conference server"
        assert err["code"] == "room_full"
        assert "conference server is not reachable" in err["message"]
        assert (await Client.connect(http, server, user_token(server))) is not None
        # the secrets the server would hand Janus live in its state dir, owner-only
        assert (tmp_path / "state" / "janus-api-secret").stat().st_mode & 0o077 == 0
        for c in [*six, seventh]:
            await c.close()


async def _publish_audio(client: Client, lab) -> Any:
    """A real aiortc publisher (silence) through the client's signaling, answered by Janus."""
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import AudioStreamTrack

    pc = RTCPeerConnection()
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    with ice.gathering(ice.IcePolicy(addresses=(lab.host_ip,))):
        await pc.setLocalDescription(await pc.createOffer())
    await client.send({"type": "signal", "to": protocol.SFU_PEER_ID,
                       "data": {"sdp": {"type": "offer", "sdp": pc.localDescription.sdp}, "stream": "publish"}})
    while True:
        msg = await client.recv("signal", timeout=15)
        if msg["data"].get("stream") == "publish":
            break
    assert msg["from"] == protocol.SFU_PEER_ID
    await pc.setRemoteDescription(RTCSessionDescription(**msg["data"]["sdp"]))
    return pc


async def _subscriptions(client: Client, want: set[str], timeout: float = 20) -> list[set[str]]:
    """The peers named by each subscription offer the client gets, until one names ``want``."""
    seen: list[set[str]] = []
    async with asyncio.timeout(timeout):
        while not seen or seen[-1] != want:
            msg = await client.recv("signal", timeout=timeout)
            data = msg["data"]
            if data.get("stream") == "subscribe":
                assert msg["from"] == protocol.SFU_PEER_ID
                seen.append({s["peer_id"] for s in data["streams"]})
    return seen


@pytest.mark.slow
async def test_the_sfu_relay_stays_in_the_room_and_needs_it(tmp_path, http, janus) -> None:
    config = make_config(max_room_size=2, **sfu_config(janus))
    async with SignalServer(config, state_dir=tmp_path / "server") as server:
        await asyncio.sleep(1.0)  # the server's first probe opens its Janus session
        assert server.services.hub.sfu.available
        x = await _room_of(2, server, http, "x")
        third = await Client.connect(http, server, user_token(server))
        joined = await third.join("x")
        assert (joined["mode"], joined["epoch"]) == ("sfu", 1)
        for c in x:
            assert (await c.recv("room-mode")) == protocol.room_mode("x", "sfu", 1)
        x.append(third)
        z = await _room_of(3, server, http, "z")
        alone = await Client.connect(http, server, user_token(server))
        assert (await alone.join("mesh-room"))["mode"] == "mesh"
        pcs = [await _publish_audio(c, janus) for c in [*x, *z]]

        # every subscription names exactly the other publishers of the same room, never another room's
        for room in (x, z):
            ids = {c.peer_id for c in room}
            for c in room:
                for named in await _subscriptions(c, ids - {c.peer_id}):
                    assert named <= ids - {c.peer_id}

        # a room that is a mesh has no SFU to signal; a client in no room has none either
        await alone.send({"type": "signal", "to": protocol.SFU_PEER_ID, "data": {"sdp": {"type": "offer", "sdp": "v=0"}, "stream": "publish"}})
        assert (await alone.recv("error"))["code"] == "unknown_peer"
        outsider = await Client.connect(http, server, user_token(server, rooms=("elsewhere",)))
        await outsider.send({"type": "signal", "to": protocol.SFU_PEER_ID, "data": {"sdp": {"type": "offer", "sdp": "v=0"}, "stream": "publish"}})
        assert (await outsider.recv("error"))["code"] == "not_in_room"
        # a token without the room never gets in, so it never gets a subscription there
        assert (await outsider.join("x"))["code"] == "forbidden"
        await outsider.send({"type": "signal", "to": protocol.SFU_PEER_ID, "data": {"sdp": {"type": "answer", "sdp": "v=0"}, "stream": "subscribe"}})
        assert (await outsider.recv("error"))["code"] == "not_in_room"
        # a description that is neither a publish offer nor a subscription answer is refused
        await x[0].send({"type": "signal", "to": protocol.SFU_PEER_ID, "data": {"sdp": {"type": "answer", "sdp": "v=0"}, "stream": "publish"}})
        assert (await x[0].recv("error"))["code"] == "bad_message"

        for pc in pcs:
            await pc.close()
        for c in [*x, *z, alone, outsider]:
            await c.close()


@pytest.mark.slow
async def test_rooms_go_to_the_least_loaded_janus_and_move_when_theirs_dies(tmp_path, http) -> None:
    from appliance.signaling.sfu.lab import JanusLab, LabUnavailable

    first = JanusLab(tmp_path / "server", subnet=200)
    second = JanusLab(tmp_path / "server", subnet=204)  # the same secrets: one site
    try:
        try:
            await first.start()
            await second.start()
        except LabUnavailable as exc:
            pytest.skip(f"no Janus lab here: {exc}")
        config = make_config(max_room_size=2, sfu={"type": "janus", "url": first.url, "more_urls": [second.url], "probe_s": 0.3})
        async with SignalServer(config, state_dir=tmp_path / "server") as server:
            broker = server.services.hub.sfu
            await asyncio.sleep(1.0)
            assert all(i.alive for i in broker.instances)
            a = await _room_of(3, server, http, "a")
            b = await _room_of(3, server, http, "b")
            assert broker.rooms["a"].instance.url == first.url
            assert broker.rooms["b"].instance.url == second.url  # the first already carries a room
            for c in a[:2]:
                assert (await c.recv("room-mode"))["epoch"] == 1
            await first.kill_janus()
            # room a is larger than a mesh: it moves to the Janus that is left and publishes afresh
            for c in a:
                msg = await c.recv("room-mode", timeout=10)
                assert (msg["mode"], msg["epoch"]) == ("sfu", 2)
            assert broker.rooms["a"].instance.url == second.url
            assert broker.rooms["b"].mode == "sfu" and broker.rooms["b"].epoch == 1  # untouched
            async with http.get(server.url + "/metrics") as response:
                text = await response.text()
            assert "wallmesh_signal_sfu_rooms 2.0" in text and "wallmesh_signal_sfu_up 1.0" in text
            for c in [*a, *b]:
                await c.close()
    finally:
        await first.close()
        await second.close()


@pytest.mark.slow
async def test_videorooms_a_killed_server_left_behind_are_removed(tmp_path, janus) -> None:
    from appliance.signaling.sfu.janus import JanusSession

    secret = janus.secret_file.read_text().strip()
    key = janus.admin_key_file.read_text().strip()
    other = JanusSession(janus.url, secret)
    await other.start()
    try:
        handle = await other.attach()
        await other.request(handle, {"request": "create", "room": 4242, "admin_key": key, "description": "wallmesh old-room",
                                     "is_private": True, "permanent": False})
        await other.request(handle, {"request": "create", "room": 4343, "admin_key": key, "description": "not ours",
                                     "is_private": True, "permanent": False})

        async def rooms() -> set[int]:
            listing = await other.request(handle, {"request": "list", "admin_key": key})
            return {r["room"] for r in listing["list"]}

        assert {4242, 4343} <= await rooms()
        config = make_config(sfu=sfu_config(janus)["sfu"])
        async with SignalServer(config, state_dir=tmp_path / "server") as server:
            for _ in range(50):
                if server.services.hub.sfu.available and 4242 not in await rooms():
                    break
                await asyncio.sleep(0.1)
            found = await rooms()
            assert 4242 not in found, "the room an earlier server left is still there"
            assert 4343 in found, "a room that is not wallmesh's was removed"
    finally:
        await other.close()
