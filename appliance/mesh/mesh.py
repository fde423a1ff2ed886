"""The full mesh: one :class:`~appliance.mesh.peer.Peer` per remote participant in the room.

The mesh reacts to the signaling session (``joined``, ``peer-joined``,
``peer-left``, ``signal``, ``peer-state``) and to time (a housekeeping tick that
samples stats, rebuilds failed connections and retires dead ones).

Surviving a signaling outage: peer connections do not depend on the server, so
they keep running while it is away. The server hands out new peer ids on every
connection, so after a reconnect the old links are *stale* (their ids are not
in the new roster). A stale link whose media still flows is kept and re-keyed
when a participant of the same name reappears, instead of opening a duplicate
connection; a stale link whose media has stopped for :attr:`Mesh.stale_grace`
seconds is closed. A ``peer-left`` for a participant whose media is still
arriving (its signaling dropped, not its media) is handled the same way.

The roster decisions live here and only here — the room cap, who offers (the joiner),
re-keying a stale link, retiring dead ones. The links themselves come from a
``peer_factory`` (by default :class:`~appliance.mesh.peer.Peer`, one real
``RTCPeerConnection`` each) and are used only through :class:`MeshPeer`, so the roster
logic can be exercised without connections (``tests/mesh/test_mesh_roster.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast

from appliance.mesh import ice
from appliance.mesh.peer import LocalMedia, Peer, SendSignal

log = logging.getLogger(__name__)


class MeshPeer(Protocol):
    """What the mesh uses of one link (:class:`~appliance.mesh.peer.Peer` is the real one)."""

    remote_id: str
    name: str
    kind: str
    muted: bool
    camera: bool
    stale: bool  # not in the current signaling session's roster

    @property
    def connection_state(self) -> str:
        """The connection's state: ``new``, ``connecting``, ``connected``, ``failed``, ``closed``."""

    def last_media_age(self) -> float | None:
        """Seconds since the newest frame from the remote, None if none ever came."""

    def rekey(self, local_id: str, remote_id: str) -> None:
        """Keep the connection under new signaling ids; no longer stale."""

    async def offer(self) -> None:
        """Start the connection with an offer (the mesh calls it when this unit joined later)."""

    async def handle_signal(self, data: dict[str, Any]) -> None:
        """A relayed ``signal`` payload from the remote (SDP or candidate)."""

    def needs_rebuild(self, now: float) -> bool:
        """Whether the connection has failed (or stalled) long enough to be rebuilt now."""

    async def rebuild(self) -> None:
        """Start over with a fresh offer."""

    async def sample_stats(self) -> None:
        """Refresh the link's figures (best effort)."""

    def status(self, samples: bool = False) -> dict[str, Any]:
        """The link for ``GET /status``."""

    async def close(self) -> None:
        """Release the connection. Idempotent."""


if TYPE_CHECKING:  # a mesh built without a factory holds real Peers (a PEP 696 default, for checkers)
    import typing_extensions

    PeerT = typing_extensions.TypeVar("PeerT", bound=MeshPeer, default=Peer)
else:
    PeerT = TypeVar("PeerT", bound=MeshPeer)
PeerT_co = TypeVar("PeerT_co", bound=MeshPeer, covariant=True)


class PeerFactory(Protocol[PeerT_co]):
    """Makes the link to one newly seen participant (the :class:`~appliance.mesh.peer.Peer` constructor)."""

    def __call__(
        self,
        *,
        local_id: str,
        remote_id: str,
        name: str,
        kind: str,
        policy: ice.IcePolicy,
        media: LocalMedia,
        send_signal: SendSignal,
        on_change: Callable[[Any], None],
        stamp_reader: Callable[[Any], Any] | None,
        on_frame: Callable[[], None] | None,
    ) -> PeerT_co: ...


class Mesh(Generic[PeerT]):
    """All of a unit's peer connections in its current room."""

    def __init__(
        self,
        *,
        policy: ice.IcePolicy,
        media: LocalMedia,
        send_signal: SendSignal,
        on_change: Callable[[], None] = lambda: None,
        stamp_reader: Callable[[Any], Any] | None = None,
        on_frame: Callable[[], None] | None = None,
        max_room_size: int = 6,
        tick: float = 1.0,
        stale_grace: float = 3.0,
        peer_factory: PeerFactory[PeerT] | None = None,
    ) -> None:
        self.policy = policy
        self.media = media
        self.send_signal = send_signal
        self.on_change = on_change
        self.stamp_reader = stamp_reader
        self.on_frame = on_frame  # every peer's receiver calls it per new video frame
        self.max_room_size = max_room_size
        self.tick = tick
        self.stale_grace = stale_grace
        self.local_id: str | None = None
        self.room: str | None = None
        self.joined_at: float | None = None  # wall clock of the first joined of this room
        self.peers: dict[str, PeerT] = {}
        self._make_peer = peer_factory if peer_factory is not None else cast("PeerFactory[PeerT]", Peer)
        self._task: asyncio.Task[None] | None = None
        self._jobs: set[asyncio.Task[Any]] = set()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._housekeeping(), name="mesh-housekeeping")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.clear()

    async def clear(self) -> None:
        """Close every peer (hang-up)."""
        peers, self.peers = list(self.peers.values()), {}
        for job in list(self._jobs):
            job.cancel()
        await asyncio.gather(*self._jobs, return_exceptions=True)
        await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)
        self.room = None
        self.joined_at = None
        if peers:
            self.on_change()

    def _spawn(self, coro: Any, what: str) -> None:
        task = asyncio.create_task(coro, name=what)
        self._jobs.add(task)
        task.add_done_callback(self._job_done)

    def _job_done(self, task: asyncio.Task[Any]) -> None:
        self._jobs.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.warning("mesh: %s failed: %s: %s", task.get_name(), exc.__class__.__name__, exc)

    # -- signaling events ----------------------------------------------------------------

    def set_session(self, welcome: dict[str, Any]) -> None:
        """A new signaling session: our id changes, the ICE servers and room cap come from the server."""
        self.local_id = str(welcome["peer_id"])
        limits = welcome.get("limits") or {}
        if isinstance(limits.get("max_room_size"), int) and limits["max_room_size"] > 1:
            self.max_room_size = limits["max_room_size"]
        servers = [s for s in welcome.get("ice_servers") or [] if isinstance(s, dict)]
        self.policy = self.policy.with_servers(servers)
        for peer in self.peers.values():
            peer.stale = True

    async def on_joined(self, msg: dict[str, Any]) -> None:
        self.local_id = str(msg["peer_id"])
        if self.room != str(msg["room"]) or self.joined_at is None:
            self.joined_at = time.time()
        self.room = str(msg["room"])
        roster = [p for p in msg.get("peers") or [] if isinstance(p, dict) and isinstance(p.get("peer_id"), str)]
        for entry in roster:
            if entry["peer_id"] == self.local_id:
                continue
            peer = self._adopt(entry)
            if peer is None:
                peer = self._add(entry)
                if peer is not None:
                    self._spawn(peer.offer(), f"offer-{peer.remote_id}")  # the joiner offers
            state = entry.get("state")
            if peer is not None and isinstance(state, dict):
                peer.muted = bool(state.get("muted", peer.muted))
                peer.camera = bool(state.get("camera", peer.camera))
        self.on_change()

    async def on_message(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "peer-joined":
            if self._adopt(msg) is None:
                self._add(msg)  # the newcomer offers to us
            self.on_change()
        elif kind == "peer-left":
            await self._on_peer_left(msg["peer_id"], msg.get("reason", ""))
        elif kind == "signal":
            await self._on_signal(msg["from"], msg["data"])
        elif kind == "peer-state":
            peer = self.peers.get(msg["peer_id"])
            if peer is not None:
                peer.muted, peer.camera = bool(msg["muted"]), bool(msg["camera"])
                self.on_change()
        elif kind == "left":
            await self.clear()
        elif kind == "error":
            log.warning("mesh: server error %s: %s", msg.get("code"), msg.get("message"))

    def _add(self, entry: dict[str, Any]) -> PeerT | None:
        remote = str(entry["peer_id"])
        if remote == self.local_id or remote in self.peers or self.local_id is None:
            known = self.peers.get(remote)
            if known is not None:  # an offer may have raced ahead of the roster: learn who it is now
                known.name = known.name or str(entry.get("name") or "")
                known.kind = known.kind or str(entry.get("kind") or "")
            return known
        live = [p for p in self.peers.values() if not p.stale]
        if len(live) + 1 >= self.max_room_size:
            log.warning("mesh: room cap %d reached; not connecting to %s", self.max_room_size, remote)
            return None
        peer = self._make_peer(
            local_id=self.local_id,
            remote_id=remote,
            name=str(entry.get("name") or ""),
            kind=str(entry.get("kind") or ""),  # "" until the roster says: treated as a browser
            policy=self.policy,
            media=self.media,
            send_signal=self.send_signal,
            on_change=lambda _p: self.on_change(),
            stamp_reader=self.stamp_reader,
            on_frame=self.on_frame,
        )
        self.peers[remote] = peer
        log.info("mesh: peer %s (%s) added", remote, peer.name)
        return peer

    def _adopt(self, entry: dict[str, Any]) -> PeerT | None:
        """Re-key a stale but live link to a reappearing participant of the same name."""
        name = str(entry.get("name") or "")
        remote = str(entry["peer_id"])
        if self.local_id is None:
            return None
        known = self.peers.get(remote)
        if known is not None and known.stale:
            return self._resume(known)
        if not name or remote in self.peers:
            return None
        same = [p for p in self.peers.values() if p.stale and p.name == name]
        if len(same) != 1:
            return None
        peer = same[0]
        age = peer.last_media_age()
        if peer.connection_state != "connected" or age is None or age > self.stale_grace:
            return None
        del self.peers[peer.remote_id]
        peer.rekey(self.local_id, remote)
        self.peers[remote] = peer
        return peer

    def _resume(self, peer: PeerT) -> PeerT:
        """A stale link whose participant kept its id: only this unit's session changed (its
        link went down and came back, the others stayed). The participant now knows this unit
        by its new id: a link whose media still flows goes on under it; a dead one starts over
        with an offer (this unit is the one that joined later)."""
        assert self.local_id is not None
        age = peer.last_media_age()
        alive = peer.connection_state == "connected" and age is not None and age <= self.stale_grace
        peer.rekey(self.local_id, peer.remote_id)
        if not alive:
            log.info("mesh: %s (%s) is still in the room; its link is dead: starting it over", peer.remote_id, peer.name)
            self._spawn(peer.rebuild(), f"rebuild-{peer.remote_id}")
        return peer

    async def _on_peer_left(self, remote: str, reason: str) -> None:
        peer = self.peers.get(remote)
        if peer is None:
            return
        age = peer.last_media_age()
        if reason != "left" and peer.connection_state == "connected" and age is not None and age < 1.0:
            log.info("mesh: %s lost signaling (%s) but media flows; keeping it for now", remote, reason)
            peer.stale = True
            return
        await self._drop(remote, reason or "left")

    async def _drop(self, remote: str, why: str) -> None:
        peer = self.peers.pop(remote, None)
        if peer is not None:
            log.info("mesh: peer %s (%s) dropped: %s", remote, peer.name, why)
            await peer.close()
            self.on_change()

    async def _on_signal(self, sender: str, data: dict[str, Any]) -> None:
        peer = self.peers.get(sender)
        if peer is None:
            sdp = data.get("sdp") if isinstance(data, dict) else None
            if not (isinstance(sdp, dict) and sdp.get("type") == "offer"):
                return
            peer = self._add({"peer_id": sender})  # offer raced ahead of peer-joined
            if peer is None:
                return
        self._spawn(peer.handle_signal(data), f"signal-{sender}")

    # -- housekeeping --------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            now = time.monotonic()
            for remote, peer in list(self.peers.items()):
                if peer.stale:
                    age = peer.last_media_age()
                    if peer.connection_state != "connected" or age is None or age > self.stale_grace:
                        await self._drop(remote, "gone (no media, not in the room)")
                        continue
                elif peer.needs_rebuild(now):
                    log.info("mesh: rebuilding the connection to %s", remote)
                    self._spawn(peer.rebuild(), f"rebuild-{remote}")
                try:
                    await peer.sample_stats()
                except Exception as exc:  # noqa: BLE001 - stats are best effort; never stop the tick
                    log.debug("mesh: stats of %s failed: %s", remote, exc)
            self.on_change()

    def status(self, samples: bool = False) -> list[dict[str, Any]]:
        return [p.status(samples) for p in self.peers.values()]
