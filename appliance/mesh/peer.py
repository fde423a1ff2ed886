"""One remote participant: an RTCPeerConnection, its negotiation, and what it receives.

Negotiation follows DESIGN.md: the participant that joins later offers; later
offers (a rebuilt connection, a browser renegotiating) follow "perfect
negotiation", where the *polite* side is the one whose peer id sorts lower.
aiortc cannot roll back a local offer or restart ICE on a live connection, so
the polite side resolves a collision — and any answerer resolves a fresh offer
on an established connection — by replacing its RTCPeerConnection with a new
one that answers. The media tracks are per-peer views of the unit's shared
encoder and microphone, so a replacement costs no extra encoding.

Every connection is built with an explicit RTCConfiguration (only the site's
ICE servers) and gathers host candidates inside :func:`appliance.mesh.ice.gathering`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from appliance.mesh import aiortc_hooks, garbage, ice
from appliance.mesh.negotiation import prefer_wallmesh_codecs
from appliance.mesh.receive import AudioReceiver, VideoReceiver
from appliance.mesh.stats import StatsSampler

log = logging.getLogger(__name__)

_serial = itertools.count(1)

SendSignal = Callable[[str, dict[str, Any]], Awaitable[bool]]


class LocalMedia(Protocol):
    """What a peer needs from the unit's own media (see ``appliance.unit.media``)."""

    def video_track(self) -> Any | None:
        """A new per-peer video track (encoded packets of the shared encoder), or None."""

    def audio_track(self) -> Any | None:
        """A new per-peer microphone track, or None."""

    def bind_video_sender(self, sender: Any) -> None:
        """Route the sender's keyframe requests to the shared encoder."""

    def add_remote_audio(self, key: str, track: Any) -> bool:
        """Mix this remote audio track to the speaker; False when there is no mixer."""

    def remove_remote_audio(self, key: str) -> None:
        """Stop mixing the track added under ``key``."""


#: Roster kinds of participants that are wallmesh units (their senders ignore REMB).
#: Anything else — a browser's "user", or a kind not known yet — keeps REMB.
UNIT_KINDS = ("device",)


def wall_clock(t: float | None) -> float | None:
    """A time.monotonic() instant as wall-clock seconds (comparable across processes)."""
    return None if t is None else round(time.time() - (time.monotonic() - t), 4)


def video_status(video: VideoReceiver | None, samples: bool = False) -> dict[str, Any]:
    """What ``GET /status`` shows of a remote's pictures as this unit got them (every kind of link)."""
    lat = sorted(video.latencies_ms) if video and video.latencies_ms else []
    out: dict[str, Any] = {
        "fps": round(video.fps, 1) if video else 0.0,
        "frames": video.frames if video else 0,
        "latency_ms": round(video.latencies_ms[-1], 1) if video and video.latencies_ms else None,
        "latency_p50_ms": round(lat[len(lat) // 2], 1) if lat else None,
        "latency_p95_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.95))], 1) if lat else None,
        "first_frame_at": wall_clock(video.first_frame_at if video else None),
        "freezes": [[round(time.time() - (time.monotonic() - end), 4), round(gap * 1000, 1)] for end, gap in video.freezes]
        if video else [],
    }
    if samples:
        out["latency_samples_ms"] = [round(x, 2) for x in video.latencies_ms] if video else []
    return out


def decode_status(route: aiortc_hooks.DecodeRoute | None) -> dict[str, Any]:
    """How a link's remote video is decoded, for ``GET /status``."""
    return {
        "decode_dropped": route.dropped if route is not None else 0,
        "decode_inline": route.inline if route is not None else False,
        "decode_ms": round(route.budget.ms or 0.0, 2) if route is not None else 0.0,
    }


def link_status(link: Any, fig: Any) -> dict[str, Any]:
    """Who a link is to and how it stands, for ``GET /status`` (every kind of link)."""
    return {
        "id": link.remote_id, "name": link.name, "kind": link.kind, "connection": link.connection_state,
        "bitrate": fig.bitrate, "loss": fig.loss, "rtt": fig.rtt,
        "muted": link.muted, "camera": link.camera, "stale": link.stale, "rebuilds": link.rebuilds,
    }


class Peer:
    """The unit's link with one remote participant, rebuilt as needed under one identity."""

    def __init__(
        self,
        *,
        local_id: str,
        remote_id: str,
        name: str = "",
        kind: str = "",
        policy: ice.IcePolicy,
        media: LocalMedia,
        send_signal: SendSignal,
        on_change: Callable[[Peer], None] = lambda p: None,
        stamp_reader: Callable[[Any], Any] | None = None,
        on_frame: Callable[[], None] | None = None,
        discard_video: bool = False,
    ) -> None:
        self.local_id = local_id
        self.remote_id = remote_id
        self.name = name
        self.kind = kind
        self.policy = policy
        self.media = media
        self.send_signal = send_signal
        self.on_change = on_change
        self.stamp_reader = stamp_reader
        self.on_frame = on_frame
        self.discard_video = discard_video  # count the remote's pictures, decode none (a bench's load peer)
        self.muted = False
        self.camera = True
        self.stale = False  # not (yet) in the room roster of the current signaling session
        self.created_at = time.monotonic()
        self.audio_key = f"{remote_id}#{next(_serial)}"  # stable across rekeying; the mixer's key
        self.connected_at: float | None = None
        self.failures = 0
        self.rebuilds = 0
        self.pc: Any = None
        self.decode_backlog: aiortc_hooks.DecodeRoute | None = None
        self.remb_dropped = False  # aiortc's bandwidth estimator is off for this link
        self.audio_inline = False  # remote Opus reaches the mixer without aiortc's decoder thread
        self.video: VideoReceiver | None = None
        self.audio: AudioReceiver | None = None
        self.stats = StatsSampler()
        self._local_tracks: list[Any] = []
        self._lock = asyncio.Lock()
        self._closed = False
        self._failed_at: float | None = None
        self._built_at = time.monotonic()

    # -- identity and roles --------------------------------------------------------------

    @property
    def label(self) -> str:
        return f"{self.local_id}->{self.remote_id}({self.name})"

    @property
    def polite(self) -> bool:
        return self.local_id < self.remote_id

    @property
    def connection_state(self) -> str:
        if self._closed:
            return "closed"
        return self.pc.connectionState if self.pc is not None else "new"

    @property
    def discarded_frames(self) -> int:
        """Remote pictures received and dropped undecoded on this connection (``discard_video``)."""
        return self.decode_backlog.discarded if self.decode_backlog is not None else 0

    def last_media_age(self) -> float | None:
        """Seconds since the newest frame (video or audio) from this peer, None if never."""
        times = []
        if self.video is not None and self.video.latest.frame_time is not None:
            times.append(self.video.latest.frame_time)
        if self.audio is not None and self.audio.last_frame_at is not None:
            times.append(self.audio.last_frame_at)
        return time.monotonic() - max(times) if times else None

    def rekey(self, local_id: str, remote_id: str) -> None:
        """Keep this connection under new signaling ids (after the server came back)."""
        log.info("peer %s: now known as %s->%s", self.label, local_id, remote_id)
        self.local_id, self.remote_id = local_id, remote_id
        self.stale = False

    # -- building the connection ---------------------------------------------------------

    async def _new_pc(self) -> None:
        from aiortc import RTCPeerConnection

        await self._drop_pc()
        pc = RTCPeerConnection(self.policy.rtc_configuration())
        self.pc = pc
        self._failed_at = None
        self._built_at = time.monotonic()
        video_track = self.media.video_track()
        vt = pc.addTransceiver(video_track or "video", direction="sendrecv" if video_track else "recvonly")
        # None / False: aiortc's internals differ; the hook has said so (once) and aiortc's own
        # path runs — its decoder thread, its estimator — which status shows per peer.
        self.decode_backlog = aiortc_hooks.install_inline_video(vt.receiver)
        if self.discard_video and self.decode_backlog is not None:
            self.decode_backlog.discard = True
        # a unit's shared encoder ignores REMB; browsers follow it
        self.remb_dropped = self.kind in UNIT_KINDS and aiortc_hooks.drop_remb(vt.receiver)
        if video_track is not None:
            self._local_tracks.append(video_track)
            self.media.bind_video_sender(vt.sender)
        audio_track = self.media.audio_track()
        at = pc.addTransceiver(audio_track or "audio", direction="sendrecv" if audio_track else "recvonly")
        audio_inlet = aiortc_hooks.install_inline_audio(at.receiver)
        self.audio_inline = audio_inlet is not None
        if audio_track is not None:
            self._local_tracks.append(audio_track)
        # H.264 on video and Opus on audio (shared-audio packets are Opus), in our offers and,
        # since these preferences are set before any remote offer is applied, in our answers.
        prefer_wallmesh_codecs(pc)

        @pc.on("track")
        def on_track(track: Any) -> None:
            if pc is not self.pc:
                return
            if track.kind == "video":
                self.video = VideoReceiver(
                    track, label=self.label, stamp_reader=self.stamp_reader, on_frame=self.on_frame
                )
                if self.decode_backlog is not None:  # pictures decoded on the loop come straight here
                    self.decode_backlog.connect(self.video.accept)
                self.video.start()
            elif track.kind == "audio":
                self.audio = AudioReceiver(track, label=self.label, inlet=audio_inlet)
                if not self.media.add_remote_audio(self.audio_key, self.audio.track):
                    self.audio.start()

        @pc.on("iceconnectionstatechange")
        def on_ice_state() -> None:
            if pc is self.pc and pc.iceConnectionState == "completed":
                for track in self._local_tracks:
                    prime = getattr(track, "prime", None)  # the unit's gated video track
                    if prime is not None:
                        prime()

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc is not self.pc:
                return
            state = pc.connectionState
            log.info("peer %s: connection %s", self.label, state)
            if state == "connected":
                self.connected_at = time.monotonic()
                self.failures = 0
            elif state == "failed":
                self.failures += 1
                self._failed_at = time.monotonic()
            self.on_change(self)

    async def _drop_pc(self) -> None:
        pc, self.pc = self.pc, None
        video, audio, self.video, self.audio = self.video, self.audio, None, None
        if self.decode_backlog is not None:
            self.decode_backlog.connect(None)
            self.decode_backlog = None
        tracks, self._local_tracks = self._local_tracks, []
        if audio is not None:
            self.media.remove_remote_audio(self.audio_key)
        for rx in (video, audio):
            if rx is not None:
                await rx.close()
        for track in tracks:
            track.stop()
        if pc is not None:
            await pc.close()
            garbage.after_close()  # its reference cycles go now, not at the next full collection

    async def _describe(self, description: Any) -> None:
        with ice.gathering(self.policy):
            await self.pc.setLocalDescription(description)
        local = self.pc.localDescription
        await self.send_signal(self.remote_id, {"sdp": {"type": local.type, "sdp": local.sdp}})

    async def offer(self) -> None:
        """Start (or restart) the connection with a fresh offer."""
        async with self._lock:
            if self._closed:
                return
            await self._new_pc()
            await self._describe(await self.pc.createOffer())
            log.info("peer %s: offer sent", self.label)

    async def rebuild(self) -> None:
        self.rebuilds += 1
        await self.offer()

    def needs_rebuild(self, now: float, backoff_max: float = 10.0) -> bool:
        """Failed long enough ago (backoff grows with consecutive failures) to try again."""
        if self._closed:
            return False
        if self._failed_at is None:
            # never connected: an offer or answer lost while the server was away
            stuck = self.pc is not None and self.pc.connectionState in ("new", "connecting")
            return stuck and now - self._built_at > (15.0 if not self.polite else 20.0)
        delay = min(backoff_max, 0.5 * 2 ** min(self.failures, 6))
        if self.polite:
            delay += 1.0  # let the impolite side offer first; avoids a collision
        return now - self._failed_at >= delay

    # -- incoming signals ----------------------------------------------------------------

    async def handle_signal(self, data: dict[str, Any]) -> None:
        async with self._lock:
            if self._closed:
                return
            if "sdp" in data:
                await self._handle_sdp(data["sdp"])
            elif "candidate" in data:
                await self._handle_candidate(data["candidate"])

    async def _handle_sdp(self, sdp: Any) -> None:
        from aiortc import RTCSessionDescription
        from aiortc.sdp import SessionDescription

        if not isinstance(sdp, dict) or not isinstance(sdp.get("sdp"), str):
            log.warning("peer %s: ignoring a malformed description", self.label)
            return
        kind = sdp.get("type")
        text = self.policy.filter_sdp(sdp["sdp"])
        try:  # refuse garbage before touching a working connection
            parsed = SessionDescription.parse(text)
            usable = bool(parsed.media) and all(
                m.ice is not None and m.ice.usernameFragment and m.dtls is not None and m.dtls.fingerprints
                for m in parsed.media
            )
        except (ValueError, KeyError, IndexError, AttributeError, TypeError):
            usable = False
        if not usable:
            log.warning("peer %s: ignoring an unusable %s (no media, ICE or DTLS parameters)", self.label, kind)
            return
        try:
            if kind == "offer":
                await self._answer(text)
            elif kind == "answer":
                if self.pc is None or self.pc.signalingState != "have-local-offer":
                    log.info("peer %s: ignoring an answer in state %s", self.label, self.pc and self.pc.signalingState)
                    return
                await self.pc.setRemoteDescription(RTCSessionDescription(sdp=text, type="answer"))
            else:
                log.info("peer %s: ignoring description of type %r", self.label, kind)
        except (ValueError, KeyError, IndexError, AttributeError, TypeError) as exc:
            # e.g. no common codec (a peer that cannot do H.264): this link cannot work
            log.warning("peer %s: %s refused: %s", self.label, kind, exc)
            if self.pc is not None and self.pc.connectionState != "connected":
                self._failed_at = time.monotonic()
                self.failures += 1

    async def _answer(self, text: str) -> None:
        from aiortc import RTCSessionDescription

        pc = self.pc
        collision = pc is not None and pc.signalingState == "have-local-offer"
        if collision and not self.polite:
            log.info("peer %s: offer collision, impolite side keeps its own offer", self.label)
            return
        # aiortc can neither roll back nor restart ICE: answer on a fresh connection.
        if pc is None or collision or pc.remoteDescription is not None:
            await self._new_pc()
        prefer_wallmesh_codecs(self.pc)  # already set by _new_pc; cheap, and answers depend on it
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=text, type="offer"))
        await self._describe(await self.pc.createAnswer())
        log.info("peer %s: answer sent", self.label)

    async def _handle_candidate(self, cand: Any) -> None:
        from aiortc.sdp import candidate_from_sdp

        if self.pc is None or self.pc.remoteDescription is None:
            return  # our offers carry all candidates; late trickle for a replaced pc is moot
        if not isinstance(cand, dict):
            return
        line = cand.get("candidate")
        if not isinstance(line, str):
            return
        if not line.strip():  # a browser's end-of-candidates
            try:
                await self.pc.addIceCandidate(None)
            except (ValueError, KeyError, OSError) as exc:
                log.info("peer %s: end-of-candidates refused: %s", self.label, exc)
            return
        line = line.strip()
        line = line.removeprefix("candidate:")
        if not self.policy.accepts_candidate("candidate:" + line):
            log.debug("peer %s: ignoring an mDNS candidate (not resolved in this mode)", self.label)
            return
        try:
            candidate = candidate_from_sdp(line)
        except (ValueError, IndexError, AssertionError):  # aiortc asserts on short candidate lines
            log.info("peer %s: ignoring an unparsable candidate", self.label)
            return
        candidate.sdpMid = cand.get("sdpMid")
        candidate.sdpMLineIndex = cand.get("sdpMLineIndex")
        try:
            await self.pc.addIceCandidate(candidate)
        except (ValueError, KeyError, OSError) as exc:
            log.info("peer %s: candidate refused: %s", self.label, exc)

    # -- figures and teardown ------------------------------------------------------------

    async def sample_stats(self) -> None:
        if self.pc is not None and self.connection_state == "connected":
            await self.stats.sample(self.pc)

    def status(self, samples: bool = False) -> dict[str, Any]:
        """This link for ``GET /status``; ``samples`` adds the recent latency samples (benchmarks)."""
        out = link_status(self, self.stats.figures)
        out.update(decode_status(self.decode_backlog))
        out.update({"audio_inline": self.audio_inline, "remb_dropped": self.remb_dropped,
                    "connected_at": wall_clock(self.connected_at)})
        out.update(video_status(self.video, samples))
        return out

    async def close(self) -> None:
        """Release everything: receivers' tasks, local per-peer tracks, the connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        async with self._lock:
            await self._drop_pc()
        log.info("peer %s: closed", self.label)
