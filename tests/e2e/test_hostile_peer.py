"""A participant that sends nonsense to the browser client must not break its calls.

"mallory" is a plain WebSocket client (no WebRTC at all) signed in like anyone else: it joins the
room and sends the page malformed descriptions and candidates. The page must shrug them off and
still connect to a real participant who joins afterwards.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest


pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

GARBAGE = [
    {"sdp": {"type": "offer", "sdp": "v=0\r\nthis is not a session description\r\n"}},
    {"sdp": {"type": "answer", "sdp": "v=0\r\n"}},
    {"sdp": {"type": "rollback"}},
    {"sdp": {"type": "pranswer", "sdp": 42}},
    {"sdp": "offer"},
    {"candidate": {"candidate": "candidate:garbage", "sdpMid": "0", "sdpMLineIndex": 0}},
    {"candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "no-such-mid"}},
    {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"},
    {"candidate": None},
    {"nonsense": True},
    {"sdp": {"type": "offer", "sdp": "v=0\r\n" + "a=x\r\n" * 5000}},
]


async def _mallory(url: str, password: str, room: str):
    http = aiohttp.ClientSession()
    async with http.post(f"{url}/api/auth/login", json={"username": "mallory", "password": password}) as res:
        assert res.status == 200
        token = (await res.json())["token"]
    ws = await http.ws_connect(f"{url}/ws")
    await ws.send_json({"type": "hello", "token": token, "name": "mallory"})
    welcome = await ws.receive_json(timeout=5)
    assert welcome["type"] == "welcome"
    await ws.send_json({"type": "join", "room": room})
    while True:
        msg = await ws.receive_json(timeout=5)
        if msg["type"] == "joined":
            return http, ws, msg


async def test_malformed_signals_do_not_break_the_page(open_client, site):
    alice = await open_client("alice", "e2e-hostile")
    http, ws, joined = await _mallory(site.url, "not so secret", "e2e-hostile")
    try:
        (alice_entry,) = joined["peers"]
        alice_id = alice_entry["peer_id"]
        await alice.wait_for("wallmesh.state().peers.length === 1")
        for data in GARBAGE:
            await ws.send_json({"type": "signal", "to": alice_id, "data": data})
        # Still alive and still signed in; mallory is shown but has no working link.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15  # generous: the page handles signals one after another
        while not (refused := [m for m in alice.console_messages() if m.startswith("wallmesh:")]) and loop.time() < deadline:
            await asyncio.sleep(0.2)
        assert refused, "the page never saw mallory's signals"
        state = await alice.eval("wallmesh.state()")
        assert state["signaling"] == "ready" and state["room"] == "e2e-hostile"

        bob = await open_client("bob", "e2e-hostile")
        bob_id = (await bob.eval("wallmesh.state()"))["peer_id"]
        await alice.wait_for(f"(async () => ((await wallmesh.stats()).peers['{bob_id}']?.video?.framesDecoded || 0) > 10)()",
                             timeout=30)
        await bob.wait_for(f"(async () => ((await wallmesh.stats()).peers['{alice_id}']?.video?.framesDecoded || 0) > 10)()",
                           timeout=30)
    finally:
        await ws.close()
        await http.close()
    # Mallory leaving removes its tile.
    await alice.wait_for("wallmesh.state().peers.length === 1", timeout=15)
