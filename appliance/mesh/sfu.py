"""A unit's media through the site's conference server (SFU): publish once, receive everyone.

In a room the server has moved to its SFU (``room-mode`` ``sfu``), a unit keeps two
connections instead of one per participant: a *publisher* that sends its one shared-encoder
video stream and its one Opus stream, and a multistream *subscriber* that receives every
other participant's audio and video. Both are negotiated over protocol v1 ``signal``
frames with the reserved peer :data:`~appliance.protocol.SFU_PEER_ID`; the server relays
them to and from Janus, and says in each subscription offer which ``mid`` carries whose
stream.

The rest of the unit sees no difference: every remote participant is an :class:`SfuRemote`
in the mesh's ``peers`` (the same fields a :class:`~appliance.mesh.peer.Peer` offers the
wall, the status document and the mixer), fed by the subscriber's receivers. A
subscription rebuilt by the server (someone joined or left) arrives on a new connection;
the old one keeps feeding the tiles until the new one delivers, then it is closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from appliance import protocol
from appliance.mesh import aiortc_hooks, ice
from appliance.mesh.negotiation import prefer_wallmesh_codecs
from appliance.mesh.peer import LocalMedia, SendSignal, decode_status, link_status, video_status
from appliance.mesh.receive import AudioReceiver, VideoReceiver
from appliance.mesh.stats import StatsSampler

log = logging.getLogger(__name__)

#: How long an old subscription is kept once a new one exists, at most.
OLD_SUBSCRIPTION_S = 6.0


class SfuRemote:
    """One remote participant as received through the SFU (the fields the wall and status read)."""

    def __init__(self, remote_id: str, name: str = "", kind: str = "") -> None:
        self.remote_id = remote_id
        self.name = name
        self.kind = kind
        self.muted = False
        self.camera = True
        self.stale = False
        self.video: VideoReceiver | None = None
        self.audio: AudioReceiver | None = None
        self.audio_key = f"{remote_id}#sfu"
        self.stats = StatsSampler()
        self.rebuilds = 0
        self.decode_backlog: aiortc_hooks.DecodeRoute | None = None
        self.audio_inline = False
        self.connected_at: float | None = None
        self.via: Any = None  # the Subscription feeding it
        self._closed = False

    @property
    def connection_state(self) -> str:
        if self._closed:
            return "closed"
        pc = getattr(self.via, "pc", None)
        return pc.connectionState if pc is not None else "new"

    def delivering(self) -> bool:
        return (self.video is not None and self.video.frames > 0) or (self.audio is not None and self.audio.frames > 0)

    def last_media_age(self) -> float | None:
        times = []
        if self.video is not None and self.video.latest.frame_time is not None:
            times.append(self.video.latest.frame_time)
        if self.audio is not None and self.audio.last_frame_at is not None:
            times.append(self.audio.last_frame_at)
        return time.monotonic() - max(times) if times else None

    def rekey(self, local_id: str, remote_id: str) -> None:
        self.remote_id = remote_id
        self.stale = False

    async def offer(self) -> None:
        """Nothing to offer: the SFU path negotiates for every remote at once."""

    async def handle_signal(self, data: dict[str, Any]) -> None:
        """A participant does not signal a remote it reaches through the SFU."""

    def needs_rebuild(self, now: float) -> bool:
        return False

    async def rebuild(self) -> None:
        """The server rebuilds subscriptions; nothing to do per remote."""

    async def sample_stats(self) -> None:
        """Figures of the SFU connections are not split per remote."""

    def status(self, samples: bool = False) -> dict[str, Any]:
        out = link_status(self, self.stats.figures)
        out.update(decode_status(self.decode_backlog))
        out.update({"audio_inline": self.audio_inline, "remb_dropped": False, "connected_at": None})
        out.update(video_status(self.video, samples))
        return out

    async def close(self) -> None:
        self._closed = True


class Subscription:
    """One subscriber connection: Janus's offer answered, its tracks handed out by ``mid``."""

    def __init__(self, session: int, streams: dict[str, str], *, label: str) -> None:
        self.session = session
        self.streams = streams  # mid -> remote peer id
        self.label = label
        self.pc: Any = None
        self.video: dict[str, VideoReceiver] = {}
        self.audio: dict[str, AudioReceiver] = {}
        self.routes: dict[str, aiortc_hooks.DecodeRoute] = {}
        self.created_at = time.monotonic()

    def delivering(self, remote: str) -> bool:
        v, a = self.video.get(remote), self.audio.get(remote)
        return (v is not None and v.frames > 0) or (a is not None and a.frames > 0)

    async def close(self, media: LocalMedia) -> None:
        for remote, rx in list(self.audio.items()):
            media.remove_remote_audio(f"{remote}#sfu{self.session}")
            await rx.close()
        for video in self.video.values():
            await video.close()
        for route in self.routes.values():
            route.connect(None)
        if self.pc is not None:
            await self.pc.close()


class SfuPath:
    """The unit's publisher and subscriber connections to the SFU; see the module docstring."""

    def __init__(
        self,
        *,
        local_id: str,
        policy: ice.IcePolicy,
        media: LocalMedia,
        send_signal: SendSignal,
        stamp_reader: Callable[[Any], Any] | None = None,
        on_frame: Callable[[], None] | None = None,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.local_id = local_id
        self.policy = policy
        self.media = media
        self.send_signal = send_signal
        self.stamp_reader = stamp_reader
        self.on_frame = on_frame
        self.on_change = on_change
        self.publisher: Any = None
        self.subscriptions: list[Subscription] = []  # oldest first; the last is the current one
        self._tracks: list[Any] = []
        self._lock = asyncio.Lock()
        self._closed = False
        self.upload_kbps: float | None = None  # what the publisher sends, audio and video
        self._sent: tuple[float, int] | None = None

    @property
    def label(self) -> str:
        return f"{self.local_id}->sfu"

    async def sample_upload(self) -> None:
        """Refresh :attr:`upload_kbps` from the publisher's outbound RTP counters."""
        from aiortc.stats import RTCOutboundRtpStreamStats

        pc = self.publisher
        if pc is None or pc.connectionState != "connected":
            return
        report = await pc.getStats()
        sent = sum(s.bytesSent for s in report.values() if isinstance(s, RTCOutboundRtpStreamStats))
        now = time.monotonic()
        if self._sent is not None and now > self._sent[0] and sent >= self._sent[1]:
            self.upload_kbps = round((sent - self._sent[1]) * 8 / 1000 / (now - self._sent[0]), 1)
        self._sent = (now, sent)

    @property
    def current(self) -> Subscription | None:
        return self.subscriptions[-1] if self.subscriptions else None

    def feeding(self, remote: str) -> Subscription | None:
        """The newest subscription that delivers ``remote``'s media, if any."""
        for sub in reversed(self.subscriptions):
            if sub.delivering(remote):
                return sub
        return None

    async def publish(self) -> None:
        """Send the unit's own streams to the SFU, on a fresh publisher connection."""
        from aiortc import RTCPeerConnection

        async with self._lock:
            if self._closed:
                return
            await self._drop_publisher()
            pc = self.publisher = RTCPeerConnection(self.policy.rtc_configuration())
            video = self.media.video_track()
            vt = pc.addTransceiver(video or "video", direction="sendonly" if video else "inactive")
            if video is not None:
                self._tracks.append(video)
                self.media.bind_video_sender(vt.sender)
            audio = self.media.audio_track()
            pc.addTransceiver(audio or "audio", direction="sendonly" if audio else "inactive")
            if audio is not None:
                self._tracks.append(audio)
            prefer_wallmesh_codecs(pc)

            @pc.on("iceconnectionstatechange")
            def on_ice() -> None:
                if pc is self.publisher and pc.iceConnectionState == "completed":
                    for track in self._tracks:
                        prime = getattr(track, "prime", None)
                        if prime is not None:
                            prime()

            @pc.on("connectionstatechange")
            def on_state() -> None:
                log.info("sfu %s: publisher %s", self.label, pc.connectionState)
                self.on_change()

            with ice.gathering(self.policy):
                await pc.setLocalDescription(await pc.createOffer())
            await self.send_signal(protocol.SFU_PEER_ID, {"sdp": {"type": "offer", "sdp": pc.localDescription.sdp}, "stream": "publish"})
            log.info("sfu %s: publishing", self.label)

    async def handle_signal(self, data: dict[str, Any]) -> None:
        """A description from the SFU: the answer to our publisher, or a subscription offer."""
        from aiortc import RTCSessionDescription

        sdp = data.get("sdp")
        if not isinstance(sdp, dict) or not isinstance(sdp.get("sdp"), str):
            return
        if data.get("stream") == "publish" and sdp.get("type") == "answer":
            async with self._lock:
                pc = self.publisher
                if pc is None or pc.signalingState != "have-local-offer":
                    return
                try:
                    await pc.setRemoteDescription(RTCSessionDescription(sdp=self.policy.filter_sdp(sdp["sdp"]), type="answer"))
                except (ValueError, KeyError, IndexError, AttributeError, TypeError) as exc:
                    log.warning("sfu %s: the SFU's answer was refused: %s", self.label, exc)
        elif data.get("stream") == "subscribe" and sdp.get("type") == "offer":
            session = data.get("session")
            streams = data.get("streams")
            mapping = {
                str(s["mid"]): str(s["peer_id"]) for s in streams or []
                if isinstance(s, dict) and isinstance(s.get("mid"), str) and isinstance(s.get("peer_id"), str)
            } if isinstance(streams, list) else {}
            await self._subscribe(session if isinstance(session, int) else 0, mapping, sdp["sdp"])

    async def _subscribe(self, session: int, streams: dict[str, str], text: str) -> None:
        from aiortc import RTCPeerConnection, RTCSessionDescription

        async with self._lock:
            if self._closed:
                return
            sub = Subscription(session, streams, label=self.label)
            pc = sub.pc = RTCPeerConnection(self.policy.rtc_configuration())
            # aiortc announces the remote tracks while it applies the offer: listen first
            @pc.on("track")
            def on_track(track: Any) -> None:
                tr = next((t for t in pc.getTransceivers() if t.receiver.track is track), None)
                remote = streams.get(str(tr.mid)) if tr is not None else None
                if tr is None or remote is None:
                    log.info("sfu %s: a %s track for no known participant", self.label, track.kind)
                    return
                label = f"{self.local_id}<-sfu<-{remote}"
                if track.kind == "video":
                    route = aiortc_hooks.install_inline_video(tr.receiver)  # before the receiver runs
                    aiortc_hooks.drop_remb(tr.receiver)
                    rx = VideoReceiver(track, label=label, stamp_reader=self.stamp_reader, on_frame=self.on_frame)
                    if route is not None:
                        sub.routes[remote] = route
                        route.connect(rx.accept)
                    rx.start()
                    sub.video[remote] = rx
                elif track.kind == "audio":
                    arx = AudioReceiver(track, label=label, inlet=aiortc_hooks.install_inline_audio(tr.receiver))
                    sub.audio[remote] = arx
                    if not self.media.add_remote_audio(f"{remote}#sfu{session}", arx.track):
                        arx.start()

            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=self.policy.filter_sdp(text), type="offer"))
            except (ValueError, KeyError, IndexError, AttributeError, TypeError) as exc:
                log.warning("sfu %s: subscription %d refused: %s", self.label, session, exc)
                await sub.close(self.media)
                return

            @pc.on("connectionstatechange")
            def on_state() -> None:
                log.info("sfu %s: subscription %d %s", self.label, session, pc.connectionState)
                self.on_change()

            with ice.gathering(self.policy):
                await pc.setLocalDescription(await pc.createAnswer())
            self.subscriptions.append(sub)
            await self.send_signal(protocol.SFU_PEER_ID, {
                "sdp": {"type": "answer", "sdp": pc.localDescription.sdp}, "stream": "subscribe", "session": session,
            })
            log.info("sfu %s: subscription %d answered (%d streams)", self.label, session, len(streams))

    async def prune(self) -> None:
        """Close subscriptions a newer one has replaced (once it delivers, or after a while)."""
        current = self.current
        if current is None:
            return
        now = time.monotonic()
        ready = all(current.delivering(r) for r in set(current.streams.values()))
        for sub in list(self.subscriptions[:-1]):
            if ready or now - current.created_at > OLD_SUBSCRIPTION_S:
                self.subscriptions.remove(sub)
                await sub.close(self.media)

    async def _drop_publisher(self) -> None:
        pc, self.publisher = self.publisher, None
        tracks, self._tracks = self._tracks, []
        for track in tracks:
            track.stop()
        if pc is not None:
            await pc.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        async with self._lock:
            await self._drop_publisher()
            subs, self.subscriptions = self.subscriptions, []
            for sub in subs:
                await sub.close(self.media)
        log.info("sfu %s: closed", self.label)
