"""Encode once, send N-1 times: one H.264 encoder per unit, its packets fanned out to every peer.

aiortc's :class:`~aiortc.RTCRtpSender` accepts a track whose ``recv()`` returns encoded
:class:`av.Packet`\\ s and then only packetizes them into RTP; it would otherwise run one
encoder per peer. :class:`SharedVideo` owns the single encoder — libx264 through PyAV
(ultrafast, zerolatency, slice threads, constrained baseline, no B-frames, SPS/PPS repeated
before every IDR; pictures up to 640×480 are encoded by one thread right on the event
loop, where a hand-off would cost as much as the encode) fed by a raw
:class:`~appliance.capture.base.VideoSource`, or the Pi's hardware encoder behind an
:class:`~appliance.capture.base.EncodedVideoSource` — and hands each peer a
:class:`FanoutTrack`.

Use::

    video = SharedVideo(source, width=640, height=480, fps=30, bitrate=500_000)
    await video.start()
    sender = pc.addTrack(video.track())   # one new track per peer
    video.attach(sender)                  # the peer's PLI/FIR → one coalesced keyframe
    video.reconfigure(tier)               # quality policy; applied at the next keyframe
    await video.close()

Guarantees: a new track's first packet is a keyframe, and one is produced at once for it;
keyframe requests are coalesced (any number within ``min_keyframe_spacing`` → one IDR); a
slow peer never gets stale packets queued — when its short queue overflows it drops the
backlog and resumes at the next keyframe, which it requests. With no peer attached nothing
is encoded.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from appliance.capture.base import VIDEO_TIME_BASE, EncodedVideoSource, VideoSource, stop_task
from appliance.mesh.budget import LoopBudget
from appliance.mesh.keyframes import attach_keyframe_requests, check_aiortc

log = logging.getLogger(__name__)

#: Pictures up to this size (640×480) are encoded by one x264 thread on the event loop,
#: as long as that costs less than ``INLINE_ENCODE_MS`` of CPU a picture (smoothed);
#: bigger ones go to a worker thread with x264's slice threads.
INLINE_ENCODE_PIXELS = 640 * 480
INLINE_ENCODE_MS = 4.0


class TierLike(Protocol):
    width: int
    height: int
    bitrate: int


@dataclass
class FanoutStats:
    """What the shared encoder has done (read by status and benchmarks)."""

    frames_in: int = 0
    frames_encoded: int = 0
    keyframes: int = 0
    keyframes_requested: int = 0
    bytes_out: int = 0
    encode_seconds: float = 0.0
    last_encode_ms: float = 0.0
    reconfigures: int = 0
    overflow_drops: int = 0


def x264_context(width: int, height: int, fps: int, bitrate: int, *, keyframe_interval: float = 5.0, threads: int = 0) -> Any:
    """A libx264 encoder context set up for WebRTC (see the module docstring)."""
    keyint = max(1, int(keyframe_interval * fps))
    kbps = max(50, bitrate // 1000)
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = VIDEO_TIME_BASE
    ctx.framerate = fps
    ctx.bit_rate = bitrate
    ctx.thread_count = threads
    ctx.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "profile": "baseline",  # x264's baseline is constrained baseline (42e0xx)
        "forced-idr": "1",
        "x264-params": (
            f"repeat-headers=1:bframes=0:keyint={keyint}:min-keyint={keyint}:scenecut=0"
            f":sliced-threads=1:vbv-maxrate={kbps}:vbv-bufsize={max(kbps // 2, 50)}"
        ),
    }
    return ctx


class X264Encoder:
    """One libx264 encoder in the shape WebRTC needs; not thread-safe, called on one thread."""

    def __init__(self, width: int, height: int, fps: int, bitrate: int, *, keyframe_interval: float = 5.0, threads: int = 0) -> None:
        self.width, self.height, self.fps, self.bitrate = width, height, fps, bitrate
        self._ctx = x264_context(width, height, fps, bitrate, keyframe_interval=keyframe_interval, threads=threads)

    def encode(self, frame: av.VideoFrame, keyframe: bool) -> list[av.Packet]:
        if frame.width != self.width or frame.height != self.height or frame.format.name != "yuv420p":
            pts, tb = frame.pts, frame.time_base
            frame = frame.reformat(width=self.width, height=self.height, format="yuv420p")
            frame.pts = pts
            if tb is not None:
                frame.time_base = tb
        frame.pict_type = av.video.frame.PictureType.I if keyframe else av.video.frame.PictureType.NONE
        packets = self._ctx.encode(frame)
        for packet in packets:
            packet.time_base = VIDEO_TIME_BASE
        return packets


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
            self._owner._tracks.discard(self)
            self._owner = None
        self._queue.clear()
        self._wake.set()


class SharedVideo:
    """The unit's one video encoder and its per-peer tracks (see the module docstring)."""

    def __init__(
        self,
        source: VideoSource | EncodedVideoSource,
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
    ) -> None:
        check_aiortc()
        self.source = source
        self.width, self.height, self.fps, self.bitrate = width, height, fps, bitrate
        self.keyframe_interval = keyframe_interval
        self.min_keyframe_spacing = min_keyframe_spacing
        self.stats = FanoutStats()
        self._name = name
        self._max_queue = max_queue
        self._threads = threads
        self._tracks: set[FanoutTrack] = set()
        self._encoder: X264Encoder | None = None
        self._inline = False  # encoding on the event loop (small pictures; see appliance.mesh.budget)
        self._budget = LoopBudget(INLINE_ENCODE_MS)
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self._key_wanted = False
        self._last_key = float("-inf")
        self._pending_tier: tuple[int, int, int, int] | None = None  # width, height, bitrate, fps
        self._closed = False
        self.state = "new"
        self.error: str | None = None  # why the encoder loop stopped, for status

    @property
    def encoded_source(self) -> bool:
        return isinstance(self.source, EncodedVideoSource)

    @property
    def peers(self) -> int:
        return len(self._tracks)

    async def start(self) -> None:
        if self._task is not None:
            return
        if self.encoded_source:
            self.source.reconfigure(self.width, self.height, self.fps, self.bitrate)  # type: ignore[call-arg]
        else:
            self.source.reconfigure(self.width, self.height, self.fps)  # type: ignore[call-arg]
        await self.source.start()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="wallmesh-x264")
        self._task = asyncio.create_task(self._run(), name=f"{self._name}-shared-video")
        self._set_state("running")

    def track(self) -> FanoutTrack:
        """A new per-peer track; a keyframe is requested for it at once."""
        if self._closed:
            raise RuntimeError("SharedVideo is closed")
        track = FanoutTrack(self, self._max_queue)
        self._tracks.add(track)
        self.request_keyframe()
        return track

    def attach(self, sender: Any) -> None:
        """Route ``sender``'s RTCP PLI/FIR to :meth:`request_keyframe`."""
        attach_keyframe_requests(sender, self.request_keyframe)

    def request_keyframe(self) -> None:
        """Ask for an IDR; requests are coalesced and spaced by ``min_keyframe_spacing``."""
        self.stats.keyframes_requested += 1
        self._key_wanted = True
        if self.encoded_source and self._key_due():
            self._force_source_keyframe()

    def reconfigure(self, tier: TierLike) -> None:
        """Switch size/bitrate (a quality tier); applied at the next frame with a keyframe."""
        fps = getattr(tier, "fps", self.fps) or self.fps
        wanted = (tier.width, tier.height, tier.bitrate, fps)
        current = (self.width, self.height, self.bitrate, self.fps)
        self._pending_tier = None if wanted == current else wanted

    async def close(self) -> None:
        """Stop encoding, end every track, release the source. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await stop_task(self._task)
        for track in list(self._tracks):
            track.stop()
        await self.source.close()
        executor, self._executor = self._executor, None
        if executor is not None:  # an encode still running in it finishes off the loop's thread
            await asyncio.to_thread(executor.shutdown, True)
        self._encoder = None
        self._set_state("closed")

    def _set_state(self, state: str) -> None:
        log.info("%s: shared video %s -> %s", self._name, self.state, state)
        self.state = state

    def _key_due(self) -> bool:
        return time.monotonic() - self._last_key >= self.min_keyframe_spacing

    def _force_source_keyframe(self) -> None:
        self._last_key = time.monotonic()
        self.source.force_keyframe()  # type: ignore[union-attr]

    def _apply_tier(self) -> None:
        assert self._pending_tier is not None
        width, height, bitrate, fps = self._pending_tier
        self._pending_tier = None
        log.info("%s: video tier %dx%d@%d %d bit/s", self._name, width, height, fps, bitrate)
        self.width, self.height, self.bitrate, self.fps = width, height, bitrate, fps
        self.stats.reconfigures += 1
        if self.encoded_source:
            self.source.reconfigure(width, height, fps, bitrate)  # type: ignore[call-arg]
        else:
            self.source.reconfigure(width, height, fps)  # type: ignore[call-arg]
            self._encoder = None  # a fresh encoder starts with an IDR

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                if self.encoded_source:
                    if self._pending_tier is not None:
                        self._apply_tier()
                    packet = await self.source.read()
                    if self._key_wanted and not packet.is_keyframe and self._key_due():
                        self._force_source_keyframe()
                    self._deliver([packet])
                    continue
                frame = await self.source.read()
                self.stats.frames_in += 1
                if not self._tracks:
                    continue
                if self._pending_tier is not None:
                    self._apply_tier()
                if self._encoder is None:
                    small = self.width * self.height <= INLINE_ENCODE_PIXELS
                    threads = self._threads or (1 if small else 0)
                    self._encoder = X264Encoder(
                        self.width, self.height, self.fps, self.bitrate,
                        keyframe_interval=self.keyframe_interval, threads=threads,
                    )
                    self._key_wanted = True
                    self._last_key = float("-inf")
                    # a small picture encodes on the loop while that stays cheap; only with one
                    # x264 thread, whose cost the loop thread's CPU clock sees in full
                    self._inline = small and threads == 1
                    self._budget = LoopBudget(INLINE_ENCODE_MS)
                force = self._key_wanted and self._key_due()
                if force:
                    self._last_key = time.monotonic()
                started = time.perf_counter()
                if self._inline:
                    self._budget.start()
                    packets = self._encoder.encode(frame, force)
                    if self._budget.stop():
                        log.info("%s: encoding takes %.1f ms a picture: moving it off the event loop", self._name, self._budget.ms)
                        self._inline = False
                else:
                    packets = await loop.run_in_executor(self._executor, self._encoder.encode, frame, force)
                spent = time.perf_counter() - started
                self.stats.frames_encoded += 1
                self.stats.encode_seconds += spent
                self.stats.last_encode_ms = spent * 1000
                self._deliver(packets)
        except MediaStreamError:
            log.info("%s: video source ended", self._name)
        except (OSError, av.error.FFmpegError) as exc:  # DeviceError is an OSError
            self.error = str(exc)
            log.error("%s: video stopped: %s", self._name, exc)
        finally:
            if not self._closed:
                self._set_state("failed" if self.error else "stopped")

    def _deliver(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            self.stats.bytes_out += packet.size
            if packet.is_keyframe:
                self.stats.keyframes += 1
                self._key_wanted = False
                self._last_key = time.monotonic()
            for track in list(self._tracks):
                if track.push(packet):
                    self.stats.overflow_drops += 1
