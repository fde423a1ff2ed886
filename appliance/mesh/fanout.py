"""Encode once, send N-1 times: one H.264 encoder per unit, its packets fanned out to every peer.

aiortc's :class:`~aiortc.RTCRtpSender` accepts a track whose ``recv()`` returns encoded
:class:`av.Packet`\\ s and then only packetizes them into RTP; it would otherwise run one
encoder per peer. :class:`SharedVideo` fans out what the unit's one encoder delivers
through the :class:`~appliance.capture.base.EncodedVideoSource` port — the Pi's hardware
encoder (:class:`~appliance.capture.picamera.PiCameraSource`) or libx264 fed by a raw
camera (:class:`~appliance.capture.x264.SoftwareH264`, which a raw
:class:`~appliance.capture.base.VideoSource` given here is wrapped in) — and hands each
peer a :class:`FanoutTrack`. It decides when a keyframe is due and when a quality tier
applies; the encoder only carries them out.

Use::

    video = SharedVideo(source, width=640, height=480, fps=30, bitrate=500_000)
    await video.start()
    sender = pc.addTrack(video.track())   # one new track per peer
    video.attach(sender)                  # the peer's PLI/FIR → one coalesced keyframe
    video.reconfigure(tier)               # quality policy; applied at the next picture
    await video.close()

Guarantees: a new track's first packet is a keyframe, and one is produced at once for it;
keyframe requests are coalesced (any number within ``min_keyframe_spacing`` → one IDR); a
slow peer never gets stale packets queued — when its short queue overflows it drops the
backlog and resumes at the next keyframe, which it requests. With no peer attached the
encoder is told so (:meth:`~appliance.capture.base.EncodedVideoSource.set_active`): the
software one encodes nothing.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from appliance.capture.base import EncodedVideoSource, VideoSource, stop_task
from appliance.capture.x264 import SoftwareH264
from appliance.mesh import aiortc_hooks

log = logging.getLogger(__name__)

__all__ = ["FanoutStats", "FanoutTrack", "PacketTap", "SharedVideo", "gated_video_track"]


class TierLike(Protocol):
    width: int
    height: int
    bitrate: int


@dataclass
class FanoutStats:
    """What the shared encoder has delivered and the fan-out has done (read by status and benchmarks)."""

    frames_encoded: int = 0  # access units from the encoder
    keyframes: int = 0
    keyframes_requested: int = 0
    bytes_out: int = 0
    reconfigures: int = 0
    overflow_drops: int = 0


class FanoutTrack(MediaStreamTrack):
    """One peer's view of the shared encoder: ``recv()`` returns :class:`av.Packet`."""

    kind = "video"

    def __init__(self, owner: SharedVideo, max_queue: int) -> None:
        super().__init__()
        self._owner: SharedVideo | None = owner
        self._queue: collections.deque[av.Packet] = collections.deque()
        self._max_queue = max_queue
        self._wake = asyncio.Event()
        self.waiting_for_keyframe = True
        self._ask_on_resume = False
        self.packets_delivered = 0
        self.drops = 0

    def push(self, packet: av.Packet) -> bool:
        """Offer a packet; returns True when the track overflowed and dropped its backlog.

        An overflowing track asks for a keyframe only when its reader comes back (in
        :meth:`recv`), so a peer that is stuck for a while costs the others one IDR, not many.
        """
        if packet.is_keyframe:
            self._queue.clear()
            self.waiting_for_keyframe = False
            self._ask_on_resume = False
        elif self.waiting_for_keyframe:
            return False
        elif len(self._queue) >= self._max_queue:
            self.drops += len(self._queue) + 1
            self._queue.clear()
            self.waiting_for_keyframe = True
            self._ask_on_resume = True
            return True
        self._queue.append(packet)
        self._wake.set()
        return False

    async def recv(self) -> av.Packet:
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            if self._ask_on_resume and self._owner is not None:
                self._ask_on_resume = False
                self._owner.request_keyframe()
            self._wake.clear()
            await self._wake.wait()
        self.packets_delivered += 1
        return self._queue.popleft()

    def stop(self) -> None:
        super().stop()
        if self._owner is not None:
            self._owner._release(self)
            self._owner = None
        self._queue.clear()
        self._wake.set()


class PacketTap(FanoutTrack):
    """A consumer of the shared encoder that takes each packet in a call, not through ``recv()``
    (a media worker's feed: its own fan-out queues per peer). Counts as a peer for the encoder."""

    def __init__(self, owner: SharedVideo, deliver: Callable[[av.Packet], None]) -> None:
        super().__init__(owner, max_queue=0)
        self._deliver = deliver

    @property
    def owner(self) -> SharedVideo | None:
        return self._owner

    def push(self, packet: av.Packet) -> bool:
        self._deliver(packet)
        return False


class SharedVideo:
    """The unit's one video encoder and its per-peer tracks (see the module docstring)."""

    def __init__(
        self,
        source: EncodedVideoSource | VideoSource,
        *,
        width: int = 640,
        height: int = 480,
        fps: int = 30,
        bitrate: int = 500_000,
        keyframe_interval: float = 5.0,
        min_keyframe_spacing: float = 0.1,
        max_queue: int = 4,
        threads: int = 0,
        name: str = "unit",
        inline_encode: bool = True,
    ) -> None:
        """``keyframe_interval``, ``threads`` and ``inline_encode`` set up the software encoder a raw
        ``source`` is wrapped in (``inline_encode=False``: never on the event loop)."""
        aiortc_hooks.check()  # the keyframe hook below is tested against one aiortc version
        aiortc_hooks.share_h264_packing()  # every peer's sender gets the same packet: split it once
        if isinstance(source, VideoSource):
            source = SoftwareH264(source, bitrate=bitrate, keyframe_interval=keyframe_interval, threads=threads, name=name,
                                  may_inline=inline_encode)
        self.source: EncodedVideoSource = source
        self.width, self.height, self.fps, self.bitrate = width, height, fps, bitrate
        self.min_keyframe_spacing = min_keyframe_spacing
        self.stats = FanoutStats()
        self._name = name
        self._max_queue = max_queue
        self._tracks: set[FanoutTrack] = set()
        self._task: asyncio.Task[None] | None = None
        self._key_wanted = False
        self._last_key = float("-inf")
        self._key_timer: asyncio.TimerHandle | None = None
        self._pending_tier: tuple[int, int, int, int] | None = None  # width, height, bitrate, fps
        self._closed = False
        self.state = "new"
        self.error: str | None = None  # why the encoder stopped, for status

    @property
    def peers(self) -> int:
        return len(self._tracks)

    async def start(self) -> None:
        if self._task is not None:
            return
        if self._pending_tier is not None:
            self._apply_tier(configure=False)
        self.source.configure(self.width, self.height, self.fps, self.bitrate)
        self.source.set_active(bool(self._tracks))
        await self.source.start(self._on_packet)
        self._task = asyncio.create_task(self._watch(), name=f"{self._name}-shared-video")
        self._set_state("running")

    def track(self) -> FanoutTrack:
        """A new per-peer track; a keyframe is requested for it at once."""
        if self._closed:
            raise RuntimeError("SharedVideo is closed")
        if not self._tracks and self._pending_tier is not None and self._task is not None:
            self._apply_tier()  # an idle encoder starts again at the tier asked for meanwhile
        track = FanoutTrack(self, self._max_queue)
        self._tracks.add(track)
        self.source.set_active(True)
        self.request_keyframe()
        return track

    def tap(self, deliver: Callable[[av.Packet], None]) -> PacketTap:
        """Call ``deliver`` with every packet from now on (a keyframe first, asked for at once)
        until the returned tap is stopped."""
        if self._closed:
            raise RuntimeError("SharedVideo is closed")
        tap = PacketTap(self, deliver)
        self._tracks.add(tap)
        self.source.set_active(True)
        self.request_keyframe()
        return tap

    def _release(self, track: FanoutTrack) -> None:
        self._tracks.discard(track)
        if not self._tracks:
            self.source.set_active(False)

    def attach(self, sender: Any) -> None:
        """Route ``sender``'s RTCP PLI/FIR to :meth:`request_keyframe`."""
        aiortc_hooks.on_keyframe_request(sender, self.request_keyframe)

    def request_keyframe(self) -> None:
        """Ask for an IDR; requests are coalesced and spaced by ``min_keyframe_spacing``."""
        self.stats.keyframes_requested += 1
        self._key_wanted = True
        if self._key_due():
            self._force_keyframe()
        elif self._key_timer is None and not self._closed:
            due = self._last_key + self.min_keyframe_spacing - time.monotonic()
            self._key_timer = asyncio.get_running_loop().call_later(due, self._key_time)

    def reconfigure(self, tier: TierLike) -> None:
        """Switch size/bitrate (a quality tier); the encoder gets it with the next packet, starting with a keyframe."""
        fps = getattr(tier, "fps", self.fps) or self.fps
        wanted = (tier.width, tier.height, tier.bitrate, fps)
        current = (self.width, self.height, self.bitrate, self.fps)
        self._pending_tier = None if wanted == current else wanted

    async def close(self) -> None:
        """Stop encoding, end every track, release the source. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._key_timer is not None:
            self._key_timer.cancel()
            self._key_timer = None
        await stop_task(self._task)
        for track in list(self._tracks):
            track.stop()
        await self.source.close()
        self._set_state("closed")

    def _set_state(self, state: str) -> None:
        log.info("%s: shared video %s -> %s", self._name, self.state, state)
        self.state = state

    def _key_due(self) -> bool:
        return time.monotonic() - self._last_key >= self.min_keyframe_spacing

    def _force_keyframe(self) -> None:
        self._last_key = time.monotonic()
        self.source.request_keyframe()

    def _key_time(self) -> None:
        """A keyframe request that came too soon after the last IDR: due now."""
        self._key_timer = None
        if self._key_wanted and not self._closed:
            if self._key_due():
                self._force_keyframe()
            else:  # an IDR came meanwhile and a newer request is waiting behind it
                self._key_timer = asyncio.get_running_loop().call_later(
                    self._last_key + self.min_keyframe_spacing - time.monotonic(), self._key_time)

    def _apply_tier(self, *, configure: bool = True) -> None:
        assert self._pending_tier is not None
        width, height, bitrate, fps = self._pending_tier
        self._pending_tier = None
        log.info("%s: video tier %dx%d@%d %d bit/s", self._name, width, height, fps, bitrate)
        self.width, self.height, self.bitrate, self.fps = width, height, bitrate, fps
        self.stats.reconfigures += 1
        if configure:
            self.source.configure(width, height, fps, bitrate)

    async def _watch(self) -> None:
        """Wait for the encoder to stop by itself; say why in ``state`` and ``error``."""
        try:
            await self.source.ended()
            log.info("%s: video source ended", self._name)
        except (OSError, av.error.FFmpegError) as exc:  # DeviceError is an OSError
            self.error = str(exc)
            log.error("%s: video stopped: %s", self._name, exc)
        finally:
            if not self._closed:
                self._set_state("failed" if self.error else "stopped")

    def _on_packet(self, packet: av.Packet) -> None:
        """The encoder's output (on the loop): re-ask for a keyframe still missing, fan out, apply a tier."""
        self.stats.frames_encoded += 1
        if self._key_wanted and not packet.is_keyframe and self._key_due():
            self._force_keyframe()  # asked before, but the encoder's picture was not an IDR
        self._deliver(packet)
        if self._pending_tier is not None:
            self._apply_tier()

    def _deliver(self, packet: av.Packet) -> None:
        self.stats.bytes_out += packet.size
        if packet.is_keyframe:
            self.stats.keyframes += 1
            self._key_wanted = False
            self._last_key = time.monotonic()
        for track in list(self._tracks):
            if track.push(packet):
                self.stats.overflow_drops += 1


def gated_video_track(factory: Any, open_: bool) -> Any:
    """A per-peer video track that camera privacy can close without ending the peer's sender.

    Open, it passes through a track from ``factory`` (the shared encoder's per-peer
    track, whose first packet is a keyframe). Closed, it releases that track — so the
    encoder stops when no peer wants video — and its ``recv()`` simply waits, so
    aiortc's sender sends nothing and keeps running until the gate opens again.
    """
    class GatedVideoTrack(MediaStreamTrack):
        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self._open = asyncio.Event()
            self._inner: Any = None
            if open_:
                self._open.set()

        def prime(self) -> None:
            """Start the shared encoder's keyframe for this peer now (ICE is up, DTLS is next),
            so the first picture is waiting when the sender starts reading."""
            if self._open.is_set() and self._inner is None and self.readyState == "live":
                self._inner = factory()

        def set_open(self, on: bool) -> None:
            if on:
                self._open.set()
                return
            self._open.clear()
            inner, self._inner = self._inner, None
            if inner is not None:
                inner.stop()

        async def recv(self) -> Any:
            while True:
                await self._open.wait()
                if self.readyState != "live":
                    raise MediaStreamError
                if self._inner is None:
                    self._inner = factory()
                inner = self._inner
                try:
                    return await inner.recv()
                except MediaStreamError:
                    if inner is self._inner or self.readyState != "live":
                        raise  # the source ended, not the privacy switch
                    continue

        def stop(self) -> None:
            super().stop()
            inner, self._inner = self._inner, None
            if inner is not None:
                inner.stop()
            self._open.set()  # release a waiting recv() so the sender can end

    return GatedVideoTrack()
