"""``SfuBroker``: the signaling server's side of rooms that go through Janus.

The hub asks the broker three things: how large a room may grow (the mesh cap without a
live SFU, the SFU's cap with one), what mode a room is in, and to handle a ``signal``
addressed to :data:`~appliance.protocol.SFU_PEER_ID`. Everything Janus sees comes from
here: one VideoRoom per wallmesh room (a random numeric id, created with the admin key,
the publisher limit set explicitly), one publisher handle per participant (its feed's
display is its wallmesh peer id) and one multistream subscriber handle per participant,
subscribed to every *other* live feed of the *same* room — the only feeds it ever names,
so nothing crosses rooms and a participant only gets there through a granted ``join``.

Descriptions: a client offers to publish (``data.stream == "publish"``) and gets Janus's
answer back; Janus offers each subscription (``stream: "subscribe"``, with ``session`` and
``streams``: which mid carries which peer's audio or video) and the client answers. When
the set of live feeds changes the subscription is rebuilt on a new handle (the old one is
detached a few seconds later, so the client's tiles keep moving until the new one runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from appliance import protocol
from appliance.errors import ProtocolError
from appliance.signaling.sfu.janus import JanusError, JanusSession, SfuUnavailable
from appliance.signaling.sfu.policy import ModePolicy
from appliance.tasks import TaskSet

if TYPE_CHECKING:
    from appliance.signaling.config import Sfu, SignalConfig
    from appliance.signaling.rooms import Participant

log = logging.getLogger(__name__)

RESUBSCRIBE_DEBOUNCE_S = 0.3
# After a room moves to the SFU, its first subscriptions wait (at most this long) for every
# participant's feed, so that each gets one complete subscription instead of several partial
# ones, and all of them leave the mesh at about the same moment.
GATHER_S = 3.0
OLD_HANDLE_GRACE_S = 4.0
RETRY_S = 2.0
ANSWER_TIMEOUT_S = 10.0
#: How the VideoRooms this server creates are described (and found again, see SfuBroker._sweep).
ROOM_PREFIX = "wallmesh "


class Instance:
    """One Janus the site runs: its URL, the session to it, and the handles opened there."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.janus: JanusSession | None = None
        self.handles: dict[int, tuple[str, str, str]] = {}  # janus handle -> (room, peer id, role)

    @property
    def alive(self) -> bool:
        return self.janus is not None and self.janus.alive

    def session(self) -> JanusSession:
        if self.janus is None or not self.janus.alive:
            raise SfuUnavailable(f"the conference server at {self.url} is not reachable")
        return self.janus


@dataclass
class Member:
    instance: Instance | None = None  # where its handles are
    publisher: int | None = None  # Janus handle
    feed: int | None = None
    live: bool = False  # Janus receives its media
    subscriber: int | None = None
    subscribed: frozenset[int] = frozenset()
    session: int = 0  # counts this member's subscriptions
    answer: asyncio.Future[dict[str, Any]] | None = None
    busy: bool = False
    dirty: bool = False


@dataclass
class SfuRoom:
    name: str
    mode: str = "mesh"
    epoch: int = 0
    janus_id: int | None = None
    instance: Instance | None = None  # the Janus this room's VideoRoom lives on
    pin: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    small_since: float | None = None
    members: dict[str, Member] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    resubscribe: asyncio.TimerHandle | None = None
    escalated_at: float = 0.0


def check_config(config: SignalConfig, where: str | None) -> None:
    """Refuse an ``[sfu]`` section that cannot work, naming the file and the key."""
    from appliance.errors import ConfigError

    sfu = config.sfu
    if sfu.type == "none":
        return
    if not sfu.url:
        raise ConfigError(where, "sfu.url", "type = 'janus' needs the URL of Janus's HTTP API, e.g. 'http://10.0.0.2:8088/janus'")
    escalate = sfu.escalate_at or config.max_room_size + 1
    if sfu.escalate_at > config.max_room_size + 1:
        raise ConfigError(where, "sfu.escalate_at", f"at most max_room_size + 1 ({config.max_room_size + 1}): a mesh never grows past its cap")
    if sfu.return_below and sfu.return_below >= escalate:
        raise ConfigError(where, "sfu.return_below", f"must be smaller than sfu.escalate_at ({escalate})")


class SfuBroker:
    """See the module docstring. ``members_of(room)`` is the hub's roster of a room."""

    def __init__(
        self,
        config: Sfu,
        *,
        mesh_cap: int,
        api_secret: str,
        admin_key: str,
        members_of: Callable[[str], dict[str, Participant]],
    ) -> None:
        self.config = config
        self.mesh_cap = mesh_cap
        escalate = config.escalate_at or mesh_cap + 1
        escalate = min(escalate, mesh_cap + 1)
        back = config.return_below or max(1, mesh_cap - 2)
        self.policy = ModePolicy(escalate, min(back, escalate - 1), config.return_after_s)
        self.max_room_size = max(config.max_room_size, mesh_cap)
        self.api_secret = api_secret
        self.admin_key = admin_key
        self.members_of = members_of
        self.rooms: dict[str, SfuRoom] = {}
        self.instances = [Instance(url) for url in dict.fromkeys((config.url, *config.more_urls)) if url]
        self._feeds = itertools.count(secrets.randbelow(2**20) * 1000 + 1)
        self._jobs = TaskSet("sfu", log)
        self._closed = False

    # -- what the hub asks -----------------------------------------------------------

    @property
    def available(self) -> bool:
        return any(i.alive for i in self.instances)

    @property
    def janus(self) -> JanusSession | None:
        """The first instance's live session (what a one-Janus site has)."""
        return next((i.janus for i in self.instances if i.alive), None)

    def load(self, instance: Instance) -> int:
        """Participants of the rooms placed on ``instance``: each publishes one feed and receives the others."""
        return sum(len(self.members_of(r.name)) ** 2 for r in self.rooms.values() if r.instance is instance and r.mode == "sfu")

    def _place(self, state: SfuRoom) -> Instance | None:
        """Put a room on the least loaded live instance (forwarded streams grow as its size squared)."""
        live = [i for i in self.instances if i.alive]
        state.instance = min(live, key=self.load) if live else None
        return state.instance

    def capacity(self, room: str) -> int:
        state = self.rooms.get(room)
        if self.available:
            return self.max_room_size
        return max(self.mesh_cap, len(state.members) if state is not None and state.mode == "sfu" else 0)

    def full_message(self) -> str:
        if self.available:
            return f"this room is full; it holds at most {self.max_room_size} participants"
        return "this room is full; the site's conference server is not reachable"

    def mode(self, room: str) -> tuple[str, int]:
        state = self.rooms.get(room)
        return (state.mode, state.epoch) if state is not None else ("mesh", 0)

    def joined(self, room: str, peer: Participant) -> None:
        """``peer`` is now in ``room`` (the hub has added it); the room may escalate."""
        state = self.rooms.setdefault(room, SfuRoom(room))
        state.members[peer.peer_id] = Member()
        size = len(self.members_of(room))
        state.small_since = self.policy.small_since(size, state.small_since, time.monotonic())
        if state.mode == "mesh" and self.available and self.policy.after_join("mesh", size) == "sfu":
            self._place(state)
            state.mode = "sfu"
            state.epoch += 1
            state.escalated_at = time.monotonic()
            log.info("sfu: room %s has %d participants: through the conference server (epoch %d)", room, size, state.epoch)
            self._broadcast(state, exclude=peer.peer_id)

    def left(self, room: str, peer_id: str) -> None:
        state = self.rooms.get(room)
        if state is None:
            return
        member = state.members.pop(peer_id, None)
        if member is not None:
            self._spawn(self._release(member), f"sfu-release-{peer_id}")
        size = len(self.members_of(room))
        if size == 0:
            del self.rooms[room]
            if state.janus_id is not None and state.instance is not None:
                self._spawn(self._destroy_room(state.instance, state.janus_id), f"sfu-destroy-{room}")
            return
        state.small_since = self.policy.small_since(size, state.small_since, time.monotonic())
        if member is not None and member.feed is not None:
            self._schedule_resubscribe(state)

    def from_client(self, peer: Participant, data: dict[str, Any]) -> None:
        """A ``signal`` the client addressed to the SFU; a bad one raises ProtocolError."""
        room = peer.room
        state = self.rooms.get(room) if room is not None else None
        if state is None or state.mode != "sfu":
            raise ProtocolError("unknown_peer", "this room does not use the conference server", "signal")
        member = state.members.get(peer.peer_id)
        if member is None:
            raise ProtocolError("unknown_peer", "not in a room that uses the conference server", "signal")
        stream, sdp = data.get("stream"), data.get("sdp")
        if "candidate" in data:
            return  # descriptions carry every candidate (non-trickle); a trickled one adds nothing
        if not isinstance(sdp, dict) or not isinstance(sdp.get("sdp"), str):
            raise ProtocolError("bad_message", "a signal to the conference server carries a description", "signal")
        if stream == "publish" and sdp.get("type") == "offer":
            self._spawn(self._publish(state, peer, member, sdp["sdp"]), f"sfu-publish-{peer.peer_id}")
        elif stream == "subscribe" and sdp.get("type") == "answer":
            fut = member.answer
            if fut is None or fut.done() or data.get("session") != member.session:
                return  # an answer to a subscription already replaced
            fut.set_result(sdp)
        else:
            raise ProtocolError("bad_message", "'stream' must be 'publish' (an offer) or 'subscribe' (an answer)", "signal")

    # -- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        """Keep a Janus session up (reconnecting after a loss) and apply the return rule."""
        while not self._closed:
            for instance in self.instances:
                if not instance.alive:
                    await self._connect(instance)
                else:
                    with contextlib.suppress(SfuUnavailable, JanusError):  # a lost session: the poll loop says so
                        await instance.session().keepalive()
            self._rebuild_waiting()
            self._check_returns()
            await asyncio.sleep(self.config.probe_s)

    async def _connect(self, instance: Instance) -> None:
        old, instance.janus = instance.janus, None
        if old is not None:
            await old.close()
        session = JanusSession(
            instance.url, self.api_secret, timeout_s=self.config.timeout_s,
            on_event=lambda handle, event: self._on_event(instance, handle, event), on_lost=lambda: self._lost(instance),
        )
        try:
            await session.start()
        except (SfuUnavailable, JanusError, KeyError, TypeError, ValueError) as exc:
            await session.close()
            log.debug("sfu: janus at %s not reachable: %s", instance.url, exc)
            return
        instance.janus = session
        instance.handles.clear()
        await self._sweep(instance)

    async def _sweep(self, instance: Instance) -> None:
        """Destroy VideoRooms an earlier run of this server left behind (it was killed, say):
        Janus keeps a room, and its publishers' slots, until someone destroys it."""
        ours = {r.janus_id for r in self.rooms.values() if r.instance is instance}
        janus = instance.session()
        try:
            handle = await janus.attach()
            try:
                listing = await janus.request(handle, {"request": "list", "admin_key": self.admin_key})
                for room in listing.get("list") or []:
                    if not isinstance(room, dict) or not str(room.get("description", "")).startswith(ROOM_PREFIX):
                        continue
                    if room.get("room") in ours:
                        continue
                    await janus.request(handle, {"request": "destroy", "room": room["room"], "admin_key": self.admin_key, "permanent": False})
                    log.info("sfu: removed a VideoRoom left behind on %s", instance.url)
            finally:
                await janus.detach(handle)
        except (SfuUnavailable, JanusError) as exc:
            log.info("sfu: could not look for VideoRooms left behind on %s: %s", instance.url, exc)

    def _rebuild_waiting(self) -> None:
        """Rooms left on the SFU without a live instance: place them afresh and have them publish again."""
        for state in self.rooms.values():
            if state.mode != "sfu" or (state.instance is not None and state.instance.alive):
                continue
            if self._place(state) is None:
                continue
            state.janus_id = None
            state.members = {pid: Member() for pid in state.members}
            state.epoch += 1
            state.escalated_at = time.monotonic()
            log.info("sfu: room %s publishes afresh on %s (epoch %d)", state.name, state.instance.url, state.epoch)  # type: ignore[union-attr]
            self._broadcast(state)

    def _lost(self, instance: Instance) -> None:
        """A Janus went away: its rooms that fit a mesh return to it; the others move to another
        instance (at the next probe) or wait for this one to come back."""
        for state in self.rooms.values():
            if state.instance is not instance:
                continue
            state.janus_id = None
            if state.mode != "sfu":
                continue
            if len(self.members_of(state.name)) <= self.mesh_cap:
                state.mode = "mesh"
                state.instance = None
                log.warning("sfu: conference server %s lost; room %s back to a mesh", instance.url, state.name)
                self._broadcast(state)
            else:
                log.warning("sfu: conference server %s lost; room %s is larger than a mesh and waits for one", instance.url, state.name)

    async def close(self) -> None:
        self._closed = True
        await self._jobs.cancel()
        for state in self.rooms.values():
            if state.janus_id is not None and state.instance is not None:
                await self._destroy_room(state.instance, state.janus_id)
        for instance in self.instances:
            if instance.janus is not None:
                await instance.janus.close()

    def _check_returns(self) -> None:
        now = time.monotonic()
        for state in self.rooms.values():
            size = len(self.members_of(state.name))
            state.small_since = self.policy.small_since(size, state.small_since, now)
            if self.policy.returns(state.mode, size, state.small_since, now):
                log.info("sfu: room %s has stayed at %d: back to a mesh", state.name, size)
                state.mode = "mesh"
                self._broadcast(state)
                janus_id, state.janus_id = state.janus_id, None
                instance, state.instance = state.instance, None
                members, state.members = state.members, {pid: Member() for pid in state.members}
                self._spawn(self._retire(instance, janus_id, list(members.values())), f"sfu-retire-{state.name}")

    async def _retire(self, instance: Instance | None, janus_id: int | None, members: list[Member]) -> None:
        """After a return to mesh: keep the SFU streams while the mesh links come up, then drop them."""
        await asyncio.sleep(OLD_HANDLE_GRACE_S * 2)
        for member in members:
            await self._release(member)
        if janus_id is not None and instance is not None:
            await self._destroy_room(instance, janus_id)

    # -- internals ---------------------------------------------------------------------

    def _spawn(self, coro: Any, name: str) -> None:
        self._jobs.spawn(coro, name)

    def _broadcast(self, state: SfuRoom, exclude: str | None = None) -> None:
        frame = protocol.encode_server(protocol.room_mode(state.name, state.mode, state.epoch))
        for pid, who in self.members_of(state.name).items():
            if pid != exclude:
                who.send(frame)

    def _send(self, room: str, peer_id: str, data: dict[str, Any]) -> None:
        who = self.members_of(room).get(peer_id)
        if who is not None:
            who.send(protocol.encode_server(protocol.relayed(protocol.SFU_PEER_ID, data)))

    async def _ensure_room(self, state: SfuRoom) -> tuple[Instance, int]:
        async with state.lock:
            instance = state.instance
            if instance is None:
                raise SfuUnavailable("the room has no conference server yet")
            if state.janus_id is not None:
                return instance, state.janus_id
            janus = instance.session()
            handle = await janus.attach()
            try:
                janus_id = secrets.randbelow(2**52) + 1
                await janus.request(handle, {
                    "request": "create", "room": janus_id, "admin_key": self.admin_key, "pin": state.pin,
                    "description": f"{ROOM_PREFIX}{state.name}"[:64], "publishers": self.max_room_size, "permanent": False,
                    "is_private": True, "videocodec": "h264", "h264_profile": "42e01f", "audiocodec": "opus",
                    "notify_joining": False, "bitrate": 0, "fir_freq": 10,
                })
            finally:
                await janus.detach(handle)
            state.janus_id = janus_id
            log.info("sfu: room %s has its VideoRoom on %s", state.name, instance.url)
            return instance, janus_id

    async def _publish(self, state: SfuRoom, peer: Participant, member: Member, sdp: str) -> None:
        instance, janus_id = await self._ensure_room(state)
        janus = instance.session()
        if member.publisher is not None and member.instance is not None:  # publishing afresh: the old feed goes
            old, member.publisher, member.feed, member.live = member.publisher, None, None, False
            member.instance.handles.pop(old, None)
            if member.instance.janus is not None:
                await member.instance.janus.detach(old)
        member.instance = instance
        handle = await janus.attach()
        feed = next(self._feeds)
        instance.handles[handle] = (state.name, peer.peer_id, "publisher")
        try:
            _, jsep = await janus.message(
                handle,
                {"request": "joinandconfigure", "room": janus_id, "pin": state.pin, "ptype": "publisher", "id": feed,
                 "display": peer.peer_id, "audio": True, "video": True},
                {"type": "offer", "sdp": sdp, "trickle": False},
            )
        except BaseException:
            instance.handles.pop(handle, None)
            await janus.detach(handle)
            raise
        if state.members.get(peer.peer_id) is not member:  # left meanwhile
            instance.handles.pop(handle, None)
            await janus.detach(handle)
            return
        member.publisher, member.feed = handle, feed
        if not jsep or jsep.get("type") != "answer":
            raise SfuUnavailable("janus did not answer the publisher's offer")
        self._send(state.name, peer.peer_id, {"sdp": {"type": "answer", "sdp": jsep["sdp"]}, "stream": "publish"})
        self._schedule_resubscribe(state)  # the member itself subscribes to the others right away

    def _on_event(self, instance: Instance, handle: int, event: dict[str, Any]) -> None:
        where = instance.handles.get(handle)
        if where is None:
            return
        room, peer_id, role = where
        state = self.rooms.get(room)
        member = state.members.get(peer_id) if state is not None else None
        if state is None or member is None:
            return
        kind = event.get("janus")
        if role == "publisher" and member.publisher == handle:
            if kind in ("webrtcup", "media") and not member.live:
                member.live = True
                self._schedule_resubscribe(state)
            elif kind == "hangup" and member.live:
                member.live = False
                self._schedule_resubscribe(state)

    def _schedule_resubscribe(self, state: SfuRoom, delay: float = RESUBSCRIBE_DEBOUNCE_S) -> None:
        if state.resubscribe is not None:
            state.resubscribe.cancel()
        state.resubscribe = asyncio.get_running_loop().call_later(delay, self._resubscribe_all, state)

    def _resubscribe_all(self, state: SfuRoom) -> None:
        state.resubscribe = None
        if self.rooms.get(state.name) is not state or state.mode != "sfu":
            return
        waited = time.monotonic() - state.escalated_at
        if waited < GATHER_S and not all(m.live for m in state.members.values()):
            state.resubscribe = asyncio.get_running_loop().call_later(min(RESUBSCRIBE_DEBOUNCE_S, GATHER_S - waited), self._resubscribe_all, state)
            return
        for peer_id, member in state.members.items():
            self._spawn(self._subscribe(state, peer_id, member), f"sfu-subscribe-{peer_id}")

    async def _subscribe(self, state: SfuRoom, peer_id: str, member: Member) -> None:
        if member.busy:
            member.dirty = True
            return
        member.busy = True
        try:
            while True:
                member.dirty = False
                try:
                    await self._subscribe_once(state, peer_id, member)
                except JanusError as exc:  # e.g. a feed that went between the choice and the join
                    log.info("sfu: subscription for %s refused (%s); trying again", peer_id, exc.reason)
                    self._schedule_resubscribe(state)
                    return
                except TimeoutError:  # the client did not answer: offer again, at a client's pace
                    log.info("sfu: %s did not answer its subscription; offering again", peer_id)
                    self._schedule_resubscribe(state, RETRY_S)
                    return
                if not member.dirty or state.members.get(peer_id) is not member:
                    return
        finally:
            member.busy = False

    async def _subscribe_once(self, state: SfuRoom, peer_id: str, member: Member) -> None:
        feeds = {m.feed: pid for pid, m in state.members.items() if pid != peer_id and m.live and m.feed is not None}
        wanted = frozenset(feeds)
        instance = state.instance
        if member.instance is None:
            member.instance = instance  # one that subscribes before (or without) publishing
        if wanted == member.subscribed or state.janus_id is None or instance is None or member.instance is not instance:
            return
        janus = instance.session()
        old = member.subscriber
        if not wanted:
            member.subscriber, member.subscribed = None, wanted
        else:
            handle = await janus.attach()
            instance.handles[handle] = (state.name, peer_id, "subscriber")
            try:
                data, jsep = await janus.message(handle, {
                    "request": "join", "room": state.janus_id, "pin": state.pin, "ptype": "subscriber",
                    "streams": [{"feed": f} for f in sorted(wanted)],
                })
                if not jsep or jsep.get("type") != "offer":
                    raise SfuUnavailable("janus offered no subscription")
                member.session += 1
                streams = [
                    {"mid": str(s.get("mid")), "peer_id": feeds.get(int(s.get("feed_id") or 0), ""), "kind": s.get("type")}
                    for s in data.get("streams") or [] if isinstance(s, dict) and s.get("feed_id") in feeds
                ]
                member.answer = asyncio.get_running_loop().create_future()
                self._send(state.name, peer_id, {
                    "sdp": {"type": "offer", "sdp": jsep["sdp"]}, "stream": "subscribe", "session": member.session, "streams": streams,
                })
                async with asyncio.timeout(ANSWER_TIMEOUT_S):
                    answer = await member.answer
                await janus.message(handle, {"request": "start"}, {"type": "answer", "sdp": answer["sdp"], "trickle": False})
            except BaseException:
                instance.handles.pop(handle, None)
                await janus.detach(handle)
                raise
            member.subscriber, member.subscribed = handle, wanted
        if old is not None:
            self._spawn(self._detach_later(instance, old), f"sfu-detach-{old}")

    async def _detach_later(self, instance: Instance, handle: int) -> None:
        await asyncio.sleep(OLD_HANDLE_GRACE_S)
        instance.handles.pop(handle, None)
        if instance.alive:
            await instance.session().detach(handle)

    async def _release(self, member: Member) -> None:
        if member.answer is not None and not member.answer.done():
            member.answer.cancel()
        instance = member.instance
        if instance is None:
            return
        for handle in (member.publisher, member.subscriber):
            if handle is not None:
                instance.handles.pop(handle, None)
                if instance.alive:
                    await instance.session().detach(handle)

    async def _destroy_room(self, instance: Instance, janus_id: int) -> None:
        if not instance.alive:
            return
        janus = instance.session()
        try:
            handle = await janus.attach()
            try:
                await janus.request(handle, {"request": "destroy", "room": janus_id, "admin_key": self.admin_key, "permanent": False})
            finally:
                await janus.detach(handle)
        except (SfuUnavailable, JanusError) as exc:
            log.debug("sfu: destroying a VideoRoom: %s", exc)
