"""The mesh's roster decisions, with a recording stand-in for the per-participant link.

Who offers, the room cap, re-attaching live links after the signaling server came back
with new ids, and retiring dead ones are decisions of :class:`~appliance.mesh.mesh.Mesh`
alone; the links here only record what the mesh asked of them and report the state a
test gives them. The real links (two real meshes over loopback) are in test_mesh.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

from appliance.mesh import ice
from appliance.mesh.mesh import Mesh, PeerFactory

LOOPBACK = ice.IcePolicy(addresses=("127.0.0.1",), resolve_mdns=False)


class RecordingPeer:
    """A link that records the mesh's calls; its connection state and media age are set by the test."""

    def __init__(self, *, local_id: str, remote_id: str, name: str, kind: str, **_: Any) -> None:
        self.local_id, self.remote_id, self.name, self.kind = local_id, remote_id, name, kind
        self.muted = False
        self.camera = True
        self.stale = False
        self.state = "connected"
        self.media_age: float | None = 0.1
        self.rebuild_due = False
        self.calls: list[tuple[Any, ...]] = []

    @property
    def connection_state(self) -> str:
        return self.state

    def last_media_age(self) -> float | None:
        return self.media_age

    def rekey(self, local_id: str, remote_id: str) -> None:
        self.calls.append(("rekey", local_id, remote_id))
        self.local_id, self.remote_id, self.stale = local_id, remote_id, False

    async def offer(self) -> None:
        self.calls.append(("offer",))

    async def handle_signal(self, data: dict[str, Any]) -> None:
        self.calls.append(("signal", data))

    def needs_rebuild(self, now: float) -> bool:
        return self.rebuild_due

    async def rebuild(self) -> None:
        self.rebuild_due = False
        self.calls.append(("rebuild",))

    async def sample_stats(self) -> None:
        pass

    def status(self, samples: bool = False) -> dict[str, Any]:
        return {"id": self.remote_id, "name": self.name, "stale": self.stale}

    async def close(self) -> None:
        self.calls.append(("close",))
        self.state = "closed"

    def did(self, what: str) -> int:
        return sum(1 for call in self.calls if call[0] == what)


class NoMedia:
    """No camera, microphone or speaker: the recording links never ask for them."""

    def video_track(self) -> None:
        return None

    def audio_track(self) -> None:
        return None

    def bind_video_sender(self, sender: Any) -> None:
        pass

    def add_remote_audio(self, key: str, track: Any) -> bool:
        return False

    def remove_remote_audio(self, key: str) -> None:
        pass


class Room:
    """A mesh of recording peers, every peer it ever made, and what it sent."""

    def __init__(self, **options: Any) -> None:
        self.made: list[RecordingPeer] = []
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.changes = 0

        def make(**kw: Any) -> RecordingPeer:
            peer = RecordingPeer(**kw)
            self.made.append(peer)
            return peer

        async def send(to: str, data: dict[str, Any]) -> bool:
            self.sent.append((to, data))
            return True

        factory: PeerFactory[RecordingPeer] = make
        self.mesh = Mesh(policy=LOOPBACK, media=NoMedia(), send_signal=send, on_change=self._changed,
                         peer_factory=factory, **options)

    def _changed(self) -> None:
        self.changes += 1

    def session(self, me: str, cap: int = 6) -> None:
        self.mesh.set_session({"peer_id": me, "ice_servers": [], "limits": {"max_room_size": cap}})

    async def joined(self, me: str, *others: tuple[str, str]) -> None:
        roster = [{"peer_id": me, "name": "me", "kind": "device"}]
        roster += [{"peer_id": pid, "name": name, "kind": "device"} for pid, name in others]
        await self.mesh.on_joined({"type": "joined", "room": "lobby", "peer_id": me, "peers": roster})
        await settle()

    def peer(self, remote: str) -> RecordingPeer:
        return self.mesh.peers[remote]


async def settle() -> None:
    """Let the mesh's spawned offer/signal jobs run."""
    for _ in range(5):
        await asyncio.sleep(0)


async def until(check: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_the_joiner_offers_to_everyone_already_in_the_room():
    room = Room()
    room.session("u9")
    await room.joined("u9", ("u1", "alpha"), ("u2", "beta"))
    assert sorted(room.mesh.peers) == ["u1", "u2"]
    assert all(p.calls == [("offer",)] for p in room.made)
    assert {(p.local_id, p.name, p.kind) for p in room.made} == {("u9", "alpha", "device"), ("u9", "beta", "device")}
    await room.mesh.close()


async def test_a_newcomer_is_not_offered_to_its_offer_is_answered():
    room = Room()
    room.session("u1")
    await room.joined("u1")
    await room.mesh.on_message({"type": "peer-joined", "peer_id": "u5", "name": "gamma", "kind": "device"})
    await settle()
    assert room.peer("u5").calls == []  # the newcomer offers to us
    offer = {"sdp": {"type": "offer", "sdp": "v=0"}}
    await room.mesh.on_message({"type": "signal", "from": "u5", "data": offer})
    await settle()
    assert room.peer("u5").calls == [("signal", offer)] and len(room.made) == 1
    await room.mesh.close()


async def test_an_offer_that_raced_ahead_of_the_roster_makes_the_link_and_the_roster_names_it():
    room = Room()
    room.session("u1")
    await room.joined("u1")
    await room.mesh.on_message({"type": "signal", "from": "u7", "data": {"candidate": {"candidate": ""}}})
    assert room.mesh.peers == {}  # a stray candidate from a stranger opens nothing
    offer = {"sdp": {"type": "offer", "sdp": "v=0"}}
    await room.mesh.on_message({"type": "signal", "from": "u7", "data": offer})
    await settle()
    early = room.peer("u7")
    assert (early.name, early.kind, early.calls) == ("", "", [("signal", offer)])
    await room.mesh.on_message({"type": "peer-joined", "peer_id": "u7", "name": "delta", "kind": "device"})
    assert room.peer("u7") is early and (early.name, early.kind) == ("delta", "device") and len(room.made) == 1
    await room.mesh.close()


async def test_the_room_cap_counts_this_unit_and_only_live_links():
    room = Room()
    room.session("u0", cap=3)  # the server's limit: this unit and two others
    await room.joined("u0", ("u1", "a"), ("u2", "b"), ("u3", "c"))
    assert sorted(room.mesh.peers) == ["u1", "u2"] and len(room.made) == 2
    await room.mesh.on_message({"type": "peer-joined", "peer_id": "u4", "name": "d", "kind": "device"})
    await room.mesh.on_message({"type": "signal", "from": "u4", "data": {"sdp": {"type": "offer", "sdp": "v=0"}}})
    assert "u4" not in room.mesh.peers
    room.peer("u2").stale = True  # its participant left signaling; its media still flows
    await room.mesh.on_message({"type": "peer-joined", "peer_id": "u4", "name": "d", "kind": "device"})
    assert "u4" in room.mesh.peers  # a stale link does not hold a seat
    await room.mesh.close()


async def test_after_the_server_came_back_live_links_are_rekeyed_not_duplicated():
    room = Room(stale_grace=3.0)
    room.session("old-me")
    await room.joined("old-me", ("old-a", "alpha"), ("old-b", "beta"))
    alpha, beta = room.peer("old-a"), room.peer("old-b")
    room.session("new-me")  # a new connection: every id changes
    assert alpha.stale and beta.stale
    beta.media_age = 10.0  # beta's media stopped while the server was away
    await room.joined("new-me", ("new-a", "alpha"), ("new-b", "beta"))
    assert room.peer("new-a") is alpha and alpha.calls == [("offer",), ("rekey", "new-me", "new-a")]
    assert not alpha.stale
    fresh = room.peer("new-b")
    assert fresh is not beta and fresh.calls == [("offer",)]  # a dead link is not adopted: a new one is offered
    assert room.mesh.peers.get("old-b") is beta and beta.stale  # left for housekeeping to retire
    assert len(room.made) == 3
    await room.mesh.close()


async def test_after_only_this_unit_reconnected_the_others_ids_are_kept_and_dead_links_start_over():
    room = Room(stale_grace=3.0)
    room.session("old-me")
    await room.joined("old-me", ("u1", "alpha"), ("u2", "beta"))
    alpha, beta = room.peer("u1"), room.peer("u2")
    room.session("new-me")  # this unit's link was down: only its own id changes
    alpha.state, alpha.media_age = "connected", 25.0  # no media for the whole outage (consent not failed yet)
    beta.media_age = 0.2  # its media kept flowing
    await room.joined("new-me", ("u1", "alpha"), ("u2", "beta"))
    # the same links, under this unit's new id and no longer stale: nobody is left for housekeeping to retire
    assert room.peer("u1") is alpha and room.peer("u2") is beta and len(room.made) == 2
    assert not alpha.stale and not beta.stale
    assert alpha.calls == [("offer",), ("rekey", "new-me", "u1"), ("rebuild",)]  # the dead one starts over
    assert beta.calls == [("offer",), ("rekey", "new-me", "u2")]  # the live one goes on
    await room.mesh.close()


async def test_a_link_is_rekeyed_only_to_one_unambiguous_same_name_participant():
    room = Room()
    room.session("m1")
    await room.joined("m1", ("a1", "twin"), ("a2", "twin"), ("a3", "solo"))
    room.peer("a3").state = "connecting"  # not connected: nothing to keep
    room.session("m2")
    await room.joined("m2", ("b1", "twin"), ("b3", "solo"))
    assert len(room.made) == 5  # two stale "twin"s: which one is b1? neither is reused; nor the unconnected one
    assert all(p.did("rekey") == 0 for p in room.made)
    await room.mesh.close()


async def test_peer_left_keeps_a_link_whose_media_flows_unless_the_participant_left():
    room = Room()
    room.session("u0")
    await room.joined("u0", ("u1", "a"), ("u2", "b"), ("u3", "c"))
    room.peer("u3").media_age = 5.0
    await room.mesh.on_message({"type": "peer-left", "peer_id": "u1", "reason": "timeout"})
    await room.mesh.on_message({"type": "peer-left", "peer_id": "u2", "reason": "left"})
    await room.mesh.on_message({"type": "peer-left", "peer_id": "u3", "reason": "timeout"})
    assert list(room.mesh.peers) == ["u1"] and room.peer("u1").stale  # signaling dropped, media did not
    assert [p.did("close") for p in room.made] == [0, 1, 1]
    await room.mesh.close()


async def test_housekeeping_retires_dead_stale_links_and_rebuilds_failed_ones():
    room = Room(tick=0.01, stale_grace=1.0)
    room.session("u0")
    await room.joined("u0", ("u1", "a"), ("u2", "b"), ("u3", "c"))
    live, dead, failed = room.peer("u1"), room.peer("u2"), room.peer("u3")
    live.stale = dead.stale = True
    dead.media_age = 2.0
    failed.state, failed.rebuild_due = "failed", True
    room.mesh.start()
    await until(lambda: "u2" not in room.mesh.peers and failed.did("rebuild") == 1)
    assert dead.did("close") == 1
    assert "u1" in room.mesh.peers and live.did("close") == 0  # stale, but its media still flows
    live.media_age = None  # ...until it stops
    await until(lambda: "u1" not in room.mesh.peers)
    assert live.did("close") == 1 and failed.did("close") == 0
    await room.mesh.close()
    assert failed.did("close") == 1 and room.mesh.peers == {}


async def test_peer_state_and_hangup_reach_the_links():
    room = Room()
    room.session("u0")
    await room.joined("u0", ("u1", "a"))
    await room.mesh.on_message({"type": "peer-state", "peer_id": "u1", "muted": True, "camera": False})
    link = room.peer("u1")
    assert (link.muted, link.camera) == (True, False)
    assert room.mesh.status() == [{"id": "u1", "name": "a", "stale": False}]
    await room.mesh.on_message({"type": "left", "room": "lobby"})
    assert room.mesh.peers == {} and room.mesh.room is None and link.did("close") == 1
