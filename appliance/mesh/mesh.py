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

from appliance import protocol
from appliance.mesh import ice
from appliance.mesh.peer import LocalMedia, Peer, SendSignal
from appliance.mesh.sfu import SfuPath, SfuRemote
from appliance.tasks import TaskSet

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
        self._jobs = TaskSet("mesh", log)
        # Rooms beyond the mesh cap go through the site's SFU (see appliance.mesh.sfu); the
        # roster is kept apart from the links, since then there is no link per participant.
        self.mode = "mesh"
        self.epoch = 0
        self.sfu: SfuPath | None = None
        self.roster: dict[str, dict[str, Any]] = {}
        self.switched_at: float | None = None  # monotonic time of the last mode change
        self.switch_gap_ms: float | None = None  # the longest a tile went without a new frame in the last switch
        self._pending: dict[str, PeerT] = {}  # mesh links being built back after the SFU
        self._switch: asyncio.Task[None] | None = None

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
        peers += list(self._pending.values())
        self._pending = {}
        await self._jobs.cancel()
        if self._switch is not None:
            self._switch.cancel()
            await asyncio.gather(self._switch, return_exceptions=True)
            self._switch = None
        await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)
        sfu, self.sfu = self.sfu, None
        if sfu is not None:
            await sfu.close()
        self.mode, self.epoch, self.roster = "mesh", 0, {}
        self.room = None
        self.joined_at = None
        if peers:
            self.on_change()

    def _spawn(self, coro: Any, what: str) -> None:
        self._jobs.spawn(coro, what)

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
        self.roster = {str(e["peer_id"]): e for e in roster if e["peer_id"] != self.local_id}
        for remote in [r for r, link in self.peers.items() if isinstance(link, SfuRemote) and r not in self.roster]:
            await self._drop(remote, "not in the room after a new session")  # its SFU tile comes back under the new id
        mode = msg.get("mode")
        if mode == "sfu" or self.mode == "sfu":
            epoch = msg.get("epoch")
            await self._set_mode(mode if mode in protocol.ROOM_MODES else "mesh", epoch if isinstance(epoch, int) else 0)
        for entry in roster:
            if entry["peer_id"] == self.local_id:
                continue
            if self.mode == "sfu":
                self._remote(entry, self.peers.get(entry["peer_id"]))
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
            self.roster[str(msg["peer_id"])] = msg
            if self.mode == "sfu":
                self._remote(msg, None)
            elif self._adopt(msg) is None:
                self._add(msg)  # the newcomer offers to us
            self.on_change()
        elif kind == "peer-left":
            self.roster.pop(str(msg["peer_id"]), None)
            pending = self._pending.pop(str(msg["peer_id"]), None)
            if pending is not None:
                await pending.close()
            await self._on_peer_left(msg["peer_id"], msg.get("reason", ""))
        elif kind == "room-mode":
            if msg.get("room") == self.room and msg.get("mode") in protocol.ROOM_MODES:
                await self._set_mode(str(msg["mode"]), int(msg.get("epoch") or 0))
        elif kind == "signal":
            if msg["from"] == protocol.SFU_PEER_ID:
                if self.sfu is not None:
                    self._spawn(self.sfu.handle_signal(msg["data"]), "signal-sfu")
                return
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
        peer = self.peers[remote] = self._new_link(entry)
        log.info("mesh: peer %s (%s) added", remote, peer.name)
        return peer

    def _new_link(self, entry: dict[str, Any]) -> PeerT:
        assert self.local_id is not None
        return self._make_peer(
            local_id=self.local_id,
            remote_id=str(entry["peer_id"]),
            name=str(entry.get("name") or ""),
            kind=str(entry.get("kind") or ""),  # "" until the roster says: treated as a browser
            policy=self.policy,
            media=self.media,
            send_signal=self.send_signal,
            on_change=lambda _p: self.on_change(),
            stamp_reader=self.stamp_reader,
            on_frame=self.on_frame,
        )

    # -- rooms through the SFU -----------------------------------------------------------

    async def _set_mode(self, mode: str, epoch: int) -> None:
        """Follow the room to the SFU (publish, subscribe) or back to a mesh (a link per participant)."""
        if mode == "sfu":
            fresh = self.mode != "sfu" or epoch != self.epoch or self.sfu is None
            self.mode, self.epoch = "sfu", epoch
            if not fresh or self.local_id is None:
                return
            log.info("mesh: room %s goes through the conference server (epoch %d)", self.room, epoch)
            for pending in self._pending.values():
                await pending.close()
            self._pending = {}
            if self.sfu is None:
                self.sfu = SfuPath(
                    local_id=self.local_id, policy=self.policy, media=self.media, send_signal=self.send_signal,
                    stamp_reader=self.stamp_reader, on_frame=self.on_frame, on_change=self.on_change,
                )
            self._spawn(self.sfu.publish(), "sfu-publish")
        elif self.mode == "sfu":
            self.mode = "mesh"
            log.info("mesh: room %s back to a mesh", self.room)
            for remote, entry in self.roster.items():
                if remote in self._pending or not isinstance(self.peers.get(remote), SfuRemote):
                    continue
                link = self._pending[remote] = self._new_link(entry)
                if self.local_id is not None and self.local_id > remote:  # the higher id offers, as in a rebuild
                    self._spawn(link.offer(), f"offer-{remote}")
        else:
            return
        self.switched_at = time.monotonic()
        self.switch_gap_ms = 0.0
        if self._switch is None or self._switch.done():
            self._switch = asyncio.create_task(self._switching(), name="mesh-switch")

    def _remote(self, entry: dict[str, Any], link: Any) -> SfuRemote:
        """The SfuRemote for a roster entry (a placeholder until the SFU delivers it)."""
        if isinstance(link, SfuRemote):
            return link
        remote = SfuRemote(str(entry["peer_id"]), str(entry.get("name") or ""), str(entry.get("kind") or ""))
        state = entry.get("state")
        if isinstance(state, dict):
            remote.muted, remote.camera = bool(state.get("muted")), bool(state.get("camera", True))
        if link is None:
            self.peers[remote.remote_id] = cast("PeerT", remote)
        return remote

    async def _switching(self, period: float = 0.1, give_up_s: float = 10.0) -> None:
        """Move each tile to the new path once it delivers; the old one goes after ``give_up_s`` anyway."""
        sampled = 0.0
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            if self.switched_at is not None and self.switch_gap_ms is not None:
                videos = [getattr(link, "video", None) for link in self.peers.values()]
                ages = [now - v.latest.frame_time for v in videos if v is not None and v.latest.frame_time is not None]
                self.switch_gap_ms = max([self.switch_gap_ms, *(a * 1000 for a in ages)])
            if self.sfu is not None and now - sampled >= 1.0:
                sampled = now
                try:
                    await self.sfu.sample_upload()
                except Exception as exc:  # noqa: BLE001 - a figure; never stop the switch
                    log.debug("mesh: upload figures of the SFU path failed: %s", exc)
            since = self.switched_at
            late = since is not None and time.monotonic() - since > give_up_s
            if self.mode == "sfu" and self.sfu is not None:
                done = await self._toward_sfu(self.sfu, late)
            else:
                done = await self._toward_mesh(late)
            if done:
                return

    async def _toward_sfu(self, sfu: SfuPath, late: bool) -> bool:
        settled = True
        for remote, entry in list(self.roster.items()):
            link: Any = self.peers.get(remote)
            sub = sfu.feeding(remote)
            if sub is None:
                settled = False
                if link is None:
                    self._remote(entry, None)
                elif late and not isinstance(link, SfuRemote):
                    age = link.last_media_age()
                    if age is None or age > 2.0:  # a mesh link that still delivers stays until the SFU does
                        await self._replace(remote, self._remote(entry, link))
                continue
            target = self._remote(entry, link)
            if target.via is not sub or target.video is not sub.video.get(remote):
                target.via, target.video, target.audio = sub, sub.video.get(remote), sub.audio.get(remote)
                target.audio_key = f"{remote}#sfu{sub.session}"
                self.on_change()
            if target is not link:
                target.muted, target.camera = getattr(link, "muted", False), getattr(link, "camera", True)
                await self._replace(remote, target)
        await sfu.prune()
        if settled and self.switched_at is not None:
            self.switched_at = None  # every tile is on the SFU: its figures are the switch's
            self.on_change()
        return False  # a later subscription (someone joined or left) is picked up the same way

    async def _toward_mesh(self, late: bool) -> bool:
        for remote, link in list(self.peers.items()):
            if not isinstance(link, SfuRemote):
                continue
            pending = self._pending.get(remote)
            if pending is not None and (late or pending.last_media_age() is not None):
                del self._pending[remote]
                pending.muted, pending.camera = link.muted, link.camera
                await self._replace(remote, pending)
            elif late and pending is None:
                await self._drop(remote, "no mesh link after the conference server")
        if any(isinstance(p, SfuRemote) for p in self.peers.values()):
            return False
        sfu, self.sfu = self.sfu, None
        if sfu is not None:
            await sfu.close()
        return True

    async def _replace(self, remote: str, link: Any, linger_s: float = 3.0) -> None:
        """Show ``link`` for ``remote`` now; the old link goes ``linger_s`` later, so that the
        other side, which may not have its new path yet, keeps receiving us meanwhile."""
        old = self.peers.get(remote)
        self.peers[remote] = link
        if old is not None and old is not link:
            key = getattr(old, "audio_key", None)
            if isinstance(key, str) and key != getattr(link, "audio_key", None):
                self.media.remove_remote_audio(key)  # one voice per participant, from now on the new path's
            self._spawn(self._close_later(old, linger_s), f"retire-{remote}")
        self.on_change()

    async def _close_later(self, link: Any, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
        finally:
            await link.close()

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
        if isinstance(peer, SfuRemote):  # the server ends its feed: nothing to keep
            await self._drop(remote, reason or "left")
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
        peer: Any = self._pending.get(sender) or self.peers.get(sender)
        if isinstance(peer, SfuRemote):
            sdp = data.get("sdp") if isinstance(data, dict) else None
            if not (isinstance(sdp, dict) and sdp.get("type") == "offer"):
                return
            peer = self._pending[sender] = self._new_link(self.roster.get(sender) or {"peer_id": sender})  # it is back to mesh already
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
            for remote, link in list(self._pending.items()):
                if link.needs_rebuild(now):
                    self._spawn(link.rebuild(), f"rebuild-{remote}")
            for remote, peer in list(self.peers.items()):
                if isinstance(peer, SfuRemote):
                    continue
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
