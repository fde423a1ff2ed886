"""The mesh in a room that goes through the SFU: who is a tile, who offers on the way back, where signals go.

The per-participant links are the recording stand-ins of ``test_mesh_roster.py``; the SFU path is
the real one (its publisher is a real aiortc connection that offers to the reserved peer id), but
nothing answers it here: what is checked is the mesh's own bookkeeping. The real thing, with Janus,
is in ``tests/sfu/``.
"""

from __future__ import annotations

import asyncio

from appliance import protocol
from appliance.mesh.sfu import SfuRemote
from tests.mesh.test_mesh_roster import Room, settle


async def _publish_offer(room: Room, timeout: float = 10.0) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            for to, data in room.sent:
                if to == protocol.SFU_PEER_ID and data.get("stream") == "publish":
                    return data
            await asyncio.sleep(0.05)


async def test_in_an_sfu_room_everyone_is_a_tile_and_nobody_gets_a_mesh_link() -> None:
    room = Room()
    room.session("m")
    roster = [{"peer_id": "m", "name": "me", "kind": "device"}, {"peer_id": "a", "name": "A", "kind": "device"},
              {"peer_id": "z", "name": "Z", "kind": "device", "state": {"muted": True, "camera": False}}]
    await room.mesh.on_joined({"type": "joined", "room": "big", "peer_id": "m", "peers": roster, "mode": "sfu", "epoch": 1})
    await settle()
    try:
        assert room.made == [], "a mesh link in an SFU room"
        assert all(isinstance(p, SfuRemote) for p in room.mesh.peers.values())
        assert set(room.mesh.peers) == {"a", "z"}
        assert (room.mesh.peers["z"].muted, room.mesh.peers["z"].camera) == (True, False)
        offer = await _publish_offer(room)
        assert offer["sdp"]["type"] == "offer"
        await room.mesh.on_message({"type": "peer-joined", "peer_id": "q", "name": "Q", "kind": "user"})
        assert isinstance(room.mesh.peers["q"], SfuRemote) and room.made == []
        await room.mesh.on_message({"type": "peer-left", "peer_id": "q", "reason": "disconnected"})
        assert "q" not in room.mesh.peers  # its feed is gone with it: nothing to keep
        assert room.mesh.status()[0]["connection"] == "new"  # status has a row per participant
    finally:
        await room.mesh.close()


async def test_back_to_a_mesh_the_higher_id_offers_and_tiles_move_once_links_deliver() -> None:
    room = Room()
    room.session("m")
    roster = [{"peer_id": "m", "name": "me", "kind": "device"}, {"peer_id": "a", "name": "A", "kind": "device"},
              {"peer_id": "z", "name": "Z", "kind": "device"}]
    await room.mesh.on_joined({"type": "joined", "room": "big", "peer_id": "m", "peers": roster, "mode": "sfu", "epoch": 1})
    await settle()
    try:
        await _publish_offer(room)
        await room.mesh.on_message({"type": "room-mode", "room": "big", "mode": "mesh", "epoch": 1})
        await settle()
        made = {p.remote_id: p for p in room.made}
        assert set(made) == {"a", "z"}
        assert made["a"].did("offer") == 1  # "m" > "a": we offer
        assert made["z"].did("offer") == 0  # "z" > "m": it offers to us
        await room.mesh.on_message({"type": "signal", "from": "z", "data": {"sdp": {"type": "offer", "sdp": "v=0"}}})
        await settle()
        assert made["z"].did("signal") == 1, "the offer did not reach the link being built"
        made["a"].media_age = made["z"].media_age = None
        await asyncio.sleep(0.3)
        assert all(isinstance(p, SfuRemote) for p in room.mesh.peers.values()), "a tile moved before its link delivered"
        made["a"].media_age = made["z"].media_age = 0.05
        async with asyncio.timeout(5):
            while room.mesh.sfu is not None:
                await asyncio.sleep(0.05)
        assert room.mesh.peers == made and room.mesh.mode == "mesh"
    finally:
        await room.mesh.close()


async def test_a_room_mode_for_another_room_is_ignored() -> None:
    room = Room()
    room.session("m")
    await room.joined("m", ("a", "A"))
    await room.mesh.on_message({"type": "room-mode", "room": "elsewhere", "mode": "sfu", "epoch": 3})
    try:
        assert room.mesh.mode == "mesh" and room.mesh.sfu is None
    finally:
        await room.mesh.close()
