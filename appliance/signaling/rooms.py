"""Rooms held in memory: who is connected, who is in which room, and relaying between them.

The hub is the only place that decides who may hear a frame: a relay or a broadcast only
ever goes to members of the sender's own room, and a ``to`` naming anyone else is answered
``unknown_peer`` exactly as if that peer did not exist, so no roster leaks across rooms.
It does no I/O itself; each :class:`Participant` hands frames to its connection's outbox.

A :class:`Participant` is the server's record of one signed-in client (its peer id, name,
account, room and mute/camera state), not a media peer: those are ``appliance.mesh.peer.Peer``.
Its ``name`` is what it calls itself, its ``account`` who its token says it is (a user's
account name, a device's id); the room hears both, so a tile can show when they differ.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any, Protocol

from appliance import protocol
from appliance.signaling.auth import Claims

log = logging.getLogger(__name__)


class Participant:
    """One authenticated client; ``send`` queues a serialized frame for its connection."""

    __slots__ = ("account", "camera", "claims", "close", "kind", "muted", "name", "peer_id", "room", "send")

    def __init__(self, claims: Claims, name: str, send: Callable[[bytes], None], close: Callable[[int, str], None]) -> None:
        self.peer_id = secrets.token_hex(8)
        self.name = name
        self.account = protocol.clean_name(claims.sub) or claims.sub[: protocol.MAX_NAME_CHARS]
        self.kind = claims.kind
        self.claims = claims
        self.room: str | None = None
        self.muted = False
        self.camera = False
        self.send = send
        self.close = close

    def entry(self) -> protocol.RosterEntry:
        return protocol.roster_entry(self.peer_id, self.name, self.kind, self.muted, self.camera, self.account)


class RoomBroker(Protocol):
    """What the hub asks of a conference server (:class:`appliance.signaling.sfu.broker.SfuBroker`)."""

    def capacity(self, room: str) -> int:
        """How many participants ``room`` may hold now."""

    def full_message(self) -> str:
        """What a joiner refused for a full room is told."""

    def mode(self, room: str) -> tuple[str, int]:
        """The room's mode (``mesh`` or ``sfu``) and its SFU epoch."""

    def joined(self, room: str, peer: Participant) -> None:
        """``peer`` was added to ``room``."""

    def left(self, room: str, peer_id: str) -> None:
        """``peer_id`` is no longer in ``room``."""

    def from_client(self, peer: Participant, data: dict[str, Any]) -> None:
        """A ``signal`` addressed to the SFU."""


#: What a joiner of a full room hears when the site has no conference server to grow it.
NO_SFU_FULL = "this room is full; the site has no conference server"


class Hub:
    """All participants and rooms of one server."""

    def __init__(
        self, *, max_room_size: int, on_call: Callable[[str, str, Participant], None] | None = None, sfu: RoomBroker | None = None,
    ) -> None:
        self.max_room_size = max_room_size
        self.sfu = sfu
        self.participants: dict[str, Participant] = {}
        self.rooms: dict[str, dict[str, Participant]] = {}
        self._on_call = on_call or (lambda event, room, peer: None)

    @property
    def members(self) -> int:
        return sum(len(r) for r in self.rooms.values())

    def add(self, peer: Participant) -> None:
        self.participants[peer.peer_id] = peer

    def remove(self, peer: Participant, reason: str) -> None:
        """Forget a connection; its room hears ``peer-left`` at once."""
        if self.participants.pop(peer.peer_id, None) is None:
            return
        if peer.room is not None:
            self._leave(peer, reason)

    def join(self, peer: Participant, room: str) -> protocol.Joined:
        """Add ``peer`` to ``room``; returns its ``joined`` answer or raises ProtocolError."""
        if peer.room is not None:
            if peer.room == room:
                raise protocol.ProtocolError("bad_message", "already in this room", "join")
            raise protocol.ProtocolError("bad_message", "leave the current room first", "join")
        if not peer.claims.grants(room):
            raise protocol.ProtocolError("forbidden", "your token does not grant this room", "join")
        members = self.rooms.get(room)
        cap = self.max_room_size if self.sfu is None else self.sfu.capacity(room)
        if members is None:
            members = self.rooms[room] = {}
        elif len(members) >= cap:
            message = NO_SFU_FULL if self.sfu is None else self.sfu.full_message()
            raise protocol.ProtocolError("room_full", message, "join")
        roster = [p.entry() for p in members.values()]
        announce = protocol.encode_server(protocol.peer_joined(peer.peer_id, peer.name, peer.kind, peer.account))
        for other in members.values():
            other.send(announce)
        members[peer.peer_id] = peer
        peer.room = room
        self._on_call("join", room, peer)
        if self.sfu is None:
            return protocol.joined(room, peer.peer_id, roster)
        self.sfu.joined(room, peer)
        mode, epoch = self.sfu.mode(room)
        return protocol.joined(room, peer.peer_id, roster, mode, epoch)

    def leave(self, peer: Participant) -> protocol.Left:
        if peer.room is None:
            raise protocol.ProtocolError("not_in_room", "not in a room", "leave")
        room = peer.room
        self._leave(peer, "left")
        return protocol.left(room)

    def _leave(self, peer: Participant, reason: str) -> None:
        room = peer.room
        peer.room = None
        members = self.rooms.get(room)  # type: ignore[arg-type]
        if members is None or members.pop(peer.peer_id, None) is None:
            return
        if not members:
            del self.rooms[room]  # type: ignore[arg-type]
        if self.sfu is not None:
            self.sfu.left(room, peer.peer_id)  # type: ignore[arg-type]
        if members:
            frame = protocol.encode_server(protocol.peer_left(peer.peer_id, reason))
            for other in members.values():
                other.send(frame)
        self._on_call("leave", room, peer)  # type: ignore[arg-type]

    def relay(self, peer: Participant, to: str, data: dict[str, Any]) -> None:
        """Deliver a validated ``signal`` to ``to`` in the sender's room, within the frame limit."""
        room = peer.room
        if room is None:
            raise protocol.ProtocolError("not_in_room", "join a room before signaling", "signal")
        if to == protocol.SFU_PEER_ID and self.sfu is not None:
            self.sfu.from_client(peer, data)
            return
        target = self.rooms[room].get(to)
        if target is None or target is peer:
            raise protocol.ProtocolError("unknown_peer", "no such peer in your room", "signal")
        try:
            frame = protocol.encode_server(protocol.relayed(peer.peer_id, data))
        except TypeError:  # orjson.JSONEncodeError; parse_client's bounds should make it impossible
            raise protocol.ProtocolError("bad_message", "'data' cannot be relayed", "signal") from None
        if len(frame) > protocol.MAX_FRAME_BYTES:
            # the relayed form can be a little longer than what was sent ("from" and a
            # 16-character id instead of "to"); a receiver would have to drop it
            raise protocol.ProtocolError("too_large", f"relayed frame would exceed {protocol.MAX_FRAME_BYTES} bytes", "signal")
        target.send(frame)

    def set_state(self, peer: Participant, muted: bool, camera: bool) -> None:
        """Record mute/camera; the rest of the room hears ``peer-state``."""
        peer.muted, peer.camera = muted, camera
        if peer.room is None:
            return
        frame = protocol.encode_server(protocol.peer_state(peer.peer_id, muted, camera))
        for other in self.rooms[peer.room].values():
            if other is not peer:
                other.send(frame)
