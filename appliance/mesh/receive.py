"""Receiving one remote participant: decoded video kept newest-only, audio handed to the mixer.

Small pictures are decoded right on the event loop as aiortc completes them
(:class:`DecodeRoute`; a thread hand-off would cost more than the decode), big ones
on aiortc's decoder thread behind a bounded backlog. A :class:`VideoReceiver` takes
each decoded frame and keeps only the newest one (with its decode time and, for
test-pattern senders, the capture stamp read from its pixels), so a display that
draws at its own pace never sees a backlog. Remote Opus audio skips aiortc's decoder
thread too: :func:`inline_audio` hands each payload to the mixer on the loop as it
arrives. Apart from decoding, everything here costs a few microseconds per frame.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from appliance.mesh.budget import LoopBudget

log = logging.getLogger(__name__)

StampReader = Callable[[Any], Any]

#: Encoded frames allowed to wait for the decoder (about 200 ms at 30 fps) before the
#: receiver skips ahead to a fresh keyframe instead of decoding stale pictures.
MAX_DECODE_BACKLOG = 6
#: At most one keyframe request per this many seconds from one receiver: keyframes are
#: the expensive pictures, and an overloaded receiver must not make its senders worse.
KEYFRAME_ASK_INTERVAL = 1.0


def h264_keyframe(data: bytes) -> bool:
    """True when an Annex B access unit holds an IDR slice (NAL type 5) or an SPS (7)."""
    at = data.find(b"\x00\x00\x01")
    while at != -1 and at + 3 < len(data):
        if data[at + 3] & 0x1F in (5, 7):
            return True
        at = data.find(b"\x00\x00\x01", at + 3)
    return False


class DecodeBacklog(queue.Queue):  # type: ignore[type-arg]
    """aiortc's queue of encoded frames for one receiver's decoder thread, kept short.

    aiortc decodes on a thread fed by an unbounded queue; when the machine cannot
    decode as fast as frames arrive, pictures would wait there and latency grow
    without end. This queue keeps at most :data:`MAX_DECODE_BACKLOG` frames: beyond
    that it drops the backlog, asks the sender for a keyframe (through the receiver's
    own decode-error signal, which makes aiortc send an RTCP PLI) and drops inter
    frames until the keyframe arrives. A keyframe arriving behind a backlog replaces it.
    """

    def __init__(self, ask_keyframe: Callable[[], None], max_backlog: int = MAX_DECODE_BACKLOG) -> None:
        super().__init__()
        self.ask_keyframe = ask_keyframe
        self.max_backlog = max_backlog
        self.dropped = 0
        self.skips = 0
        self._waiting_for_key = False
        self._asked_at = float("-inf")

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:  # the receiver is stopping: always deliver the end marker
            return super().put(item, block, timeout)
        frame = item[1]
        key = h264_keyframe(bytes(frame.data[:4096])) if item[0].mimeType.lower() == "video/h264" else False
        with self.mutex:
            backlog = len(self.queue)
            if key:
                self._waiting_for_key = False
                if backlog >= 2:
                    self.dropped += backlog
                    self.queue.clear()
            elif self._waiting_for_key:
                self.dropped += 1
            elif backlog >= self.max_backlog:
                self.dropped += backlog + 1
                self.skips += 1
                self.queue.clear()
                self._waiting_for_key = True
        if not key and self._waiting_for_key:
            self._ask()
            return None
        return super().put(item, block, timeout)

    def _ask(self) -> None:
        """Ask the sender for a keyframe, at most once per :data:`KEYFRAME_ASK_INTERVAL`."""
        now = time.monotonic()
        if now - self._asked_at >= KEYFRAME_ASK_INTERVAL:
            self._asked_at = now
            self.ask_keyframe()


#: How long a missing packet may hold back the pictures behind it (NACK/RTX has had its
#: chance by then on a LAN) before the receiver skips the gap and asks for a keyframe.
MAX_GAP_WAIT = 0.25


def gap_skipping_jitter_buffer(capacity: int = 512, max_wait: float = MAX_GAP_WAIT) -> Any:
    """aiortc's video jitter buffer, except that a lost packet stalls it for ``max_wait`` at most.

    aiortc's buffer waits at a gap until 512 packets have piled up behind it — seconds of
    video — and scans the whole buffer for every packet meanwhile. This one, once the gap
    is older than ``max_wait``, drops the incomplete picture(s), resumes at the next
    picture that starts after the gap and flags a PLI so the decoder gets a keyframe.
    """
    from aiortc.jitterbuffer import JitterBuffer

    class GapSkippingJitterBuffer(JitterBuffer):
        def __init__(self) -> None:
            super().__init__(capacity=capacity, is_video=True)
            self.stalled_since: float | None = None
            self.gaps_skipped = 0

        def add(self, packet: Any) -> tuple[bool, Any]:
            pli, frame = super().add(packet)
            if frame is not None or self._origin is None:
                self.stalled_since = None
                return pli, frame
            gap = self._gap_before(packet.sequence_number)
            if gap is None:  # a picture still arriving (a big keyframe), not a loss
                self.stalled_since = None
                return pli, frame
            now = time.monotonic()
            if self.stalled_since is None:
                self.stalled_since = now
            elif now - self.stalled_since >= max_wait and self._skip(gap):
                self.stalled_since = None
                self.gaps_skipped += 1
                pli = True
                frame = self._remove_frame(packet.sequence_number)
            return pli, frame

        def _slot(self, count: int) -> Any:
            return self._packets[(self._origin + count) % self._capacity]

        def _gap_before(self, newest: int) -> int | None:
            """Offset from the origin of the first missing packet older than ``newest``."""
            span = (newest - self._origin) & 0xFFFF
            if span >= self._capacity:
                return None
            for count in range(span):
                if self._slot(count) is None:
                    return count
            return None

        def _skip(self, gap: int) -> bool:
            """Resume at the first picture that neither ends nor starts at the gap."""
            before = self._slot(gap - 1).timestamp if gap > 0 and self._slot(gap - 1) is not None else None
            after = None
            for count in range(gap + 1, self._capacity):
                p = self._slot(count)
                if p is None:
                    continue
                if after is None:
                    after = p.timestamp
                if p.timestamp not in (before, after):
                    self.remove(count)
                    return True
            return False

    return GapSkippingJitterBuffer()


def _log_once(owner: Any, message: str, *args: Any, exc_info: bool = False) -> None:
    """Log a failure on a per-packet path once per owner, not once per packet."""
    if not getattr(owner, "_logged_failure", False):
        owner._logged_failure = True
        log.warning(message, *args, exc_info=exc_info)


#: A stream whose pictures decode in less than this many CPU ms (smoothed) is decoded on
#: the event loop; slower ones go to aiortc's decoder thread (see :mod:`appliance.mesh.budget`).
INLINE_DECODE_MS = 3.0
#: Pictures bigger than this (640×480) always go to the decoder thread, from the first one.
INLINE_DECODE_PIXELS = 640 * 480


class DecodeRoute(DecodeBacklog):
    """Where one video receiver's pictures are decoded: on the loop while that is cheap,
    on aiortc's decoder thread (behind the bounded backlog) once it is not.

    Handing a picture to a thread and the decoded frame back costs two wake-ups and a
    fight for the GIL — more than decoding a small (320×240, 640×480) picture. So each
    completed picture is decoded right where aiortc's RTP handler completes it, by a
    single-threaded decoder, timed, and the frame goes straight to :meth:`connect`'s
    callback. When the smoothed decode cost exceeds ``budget_ms`` (big pictures would
    stall the loop), the stream moves to the thread for good, restarting there at a
    fresh keyframe.
    """

    def __init__(self, ask_keyframe: Callable[[], None], *, budget_ms: float = INLINE_DECODE_MS, **kwargs: Any) -> None:
        super().__init__(ask_keyframe, **kwargs)
        self.budget = LoopBudget(budget_ms)
        self.inline = True
        self.decoded = 0
        self.errors = 0
        self._deliver: Callable[[Any], None] | None = None
        self._decoder: Any = None
        self._codec_name: str | None = None

    def connect(self, deliver: Callable[[Any], None] | None) -> None:
        self._deliver = deliver
        if deliver is None:  # the link is gone: let the decoder go with it
            self._decoder, self._codec_name = None, None

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None or not self.inline:
            return super().put(item, block, timeout)
        codec, encoded = item
        if codec.name != self._codec_name:
            from aiortc.codecs import get_decoder

            self._decoder, self._codec_name = get_decoder(codec), codec.name
            context = getattr(self._decoder, "codec", None)
            if context is not None and not context.is_open:
                context.thread_count = 1  # no helper threads: their wake-ups are what inline saves
        # This runs inside aiortc's RTP handler: an exception here would end the peer's
        # transport, so nothing may escape — a bad picture is dropped, never the link.
        self.budget.start()
        try:
            frames = self._decoder.decode(encoded)
        except Exception as exc:  # lost picture data: keep the decoder, ask for a keyframe
            import av

            if not isinstance(exc, av.FFmpegError):
                _log_once(self, "video decoder failed on a picture: %r", exc)
            self.errors += 1
            self._ask()
            return None
        too_slow = self.budget.stop()
        for frame in frames:
            self.decoded += 1
            if frame.width * frame.height > INLINE_DECODE_PIXELS:
                too_slow = True  # a big picture (a browser's HD camera): off the loop at once
            if self._deliver is not None:
                try:
                    self._deliver(frame)
                except Exception:  # the receiver's problem; the next picture is tried again
                    self.errors += 1
                    _log_once(self, "a decoded picture could not be delivered", exc_info=True)
        if too_slow:
            log.info("video decode takes %.1f ms a picture: moving it off the event loop", self.budget.ms)
            self.inline = False
            self._decoder = None
            self._waiting_for_key = True  # the thread's decoder starts at a keyframe
            self._ask()
        return None


def bound_decode_backlog(receiver: Any) -> DecodeRoute | None:
    """Give an aiortc video receiver a :class:`DecodeRoute` and a gap-skipping jitter buffer.

    Call it before negotiation starts the receiver.

    Reaches into aiortc 1.16's receiver (pinned in pyproject.toml); if its internals
    differ, the receiver keeps aiortc's own queue and a warning says so.
    """
    qname, ename = "_RTCRtpReceiver__decoder_queue", "_RTCRtpReceiver__decoder_error"
    current = getattr(receiver, qname, None)
    error = getattr(receiver, ename, None)
    if not isinstance(current, queue.Queue) or error is None or not hasattr(error, "set"):
        log.warning("aiortc receiver internals changed; decode backlog is not bounded")
        return None
    if getattr(receiver, "_RTCRtpReceiver__decoder_thread", None) is not None:
        return None  # already decoding: too late to swap the queue
    backlog = DecodeRoute(error.set)
    setattr(receiver, qname, backlog)
    jname = "_RTCRtpReceiver__jitter_buffer"
    if getattr(receiver, "_RTCRtpReceiver__kind", None) == "video" and getattr(receiver, jname, None) is not None:
        setattr(receiver, jname, gap_skipping_jitter_buffer())
    return backlog


class AudioInlet(queue.Queue):  # type: ignore[type-arg]
    """An aiortc audio receiver's decoder queue that hands Opus payloads straight to the mixer.

    aiortc decodes remote audio on a thread per receiver and hops every decoded 20 ms
    frame back to the loop; with five peers that is hundreds of thread hand-offs a
    second, each a fight for the GIL. This queue is fed on the loop (by aiortc's RTP
    handler) and passes each Opus payload to :meth:`connect`'s callback right there —
    the mixer decodes it once, straight to 48 kHz mono. Other codecs, and the end
    marker, still go to aiortc's decoder thread. Until a callback is connected the
    payloads are counted and dropped (nothing would play them).
    """

    def __init__(self) -> None:
        super().__init__()
        self._deliver: Callable[[bytes], None] | None = None
        self.frames = 0
        self.errors = 0
        self.last_frame_at: float | None = None

    def connect(self, deliver: Callable[[bytes], None] | None) -> None:
        self._deliver = deliver

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None or item[0].mimeType.lower() != "audio/opus":
            return super().put(item, block, timeout)
        self.frames += 1
        self.last_frame_at = time.monotonic()
        if self._deliver is not None:
            try:  # inside aiortc's RTP handler: an exception would end the peer's transport
                self._deliver(item[1].data)
            except Exception:
                self.errors += 1
                _log_once(self, "a remote audio packet could not be played", exc_info=True)
        return None


class AudioPassThrough:
    """The audio receiver's "jitter buffer": every packet is a whole Opus frame, passed on at once.

    aiortc's audio buffer holds four packets (80 ms) before releasing one; the mixer keeps
    its own, smaller jitter buffer, so here a packet only has to be newer than the last
    one passed on. A packet far behind (the sender restarted its sequence) resynchronises.
    """

    capacity = 16

    def __init__(self) -> None:
        from aiortc.jitterbuffer import JitterFrame

        self._frame = JitterFrame  # imported once here, not on every packet
        self._last: int | None = None
        self.late = 0

    def add(self, packet: Any) -> tuple[bool, Any]:
        seq = packet.sequence_number
        if self._last is not None:
            ahead = (seq - self._last) & 0xFFFF
            if ahead == 0 or (ahead >= 0x8000 and 0x10000 - ahead < MAX_AUDIO_MISORDER):
                self.late += 1  # a duplicate or a straggler: its moment has passed
                return False, None
        self._last = seq
        return False, self._frame(data=packet._data, timestamp=packet.timestamp)


#: Packets an audio packet may trail the newest one before it counts as a sequence restart.
MAX_AUDIO_MISORDER = 100


def inline_audio(receiver: Any) -> AudioInlet | None:
    """Give an aiortc audio receiver an :class:`AudioInlet` and :class:`AudioPassThrough`.

    Call it before negotiation starts the receiver. Like :func:`bound_decode_backlog`
    this reaches into aiortc 1.16's receiver (pinned); if its internals differ, the
    receiver keeps aiortc's own path (decoded frames through the track) and a warning
    says so.
    """
    qname, jname = "_RTCRtpReceiver__decoder_queue", "_RTCRtpReceiver__jitter_buffer"
    if not isinstance(getattr(receiver, qname, None), queue.Queue) or getattr(receiver, jname, None) is None:
        log.warning("aiortc receiver internals changed; remote audio takes aiortc's decoder thread")
        return None
    if getattr(receiver, "_RTCRtpReceiver__decoder_thread", None) is not None:
        return None  # already decoding: too late to swap the queue
    inlet = AudioInlet()
    setattr(receiver, qname, inlet)
    setattr(receiver, jname, AudioPassThrough())
    return inlet


def skip_bitrate_estimate(receiver: Any) -> bool:
    """Stop an aiortc video receiver from estimating the sender's bandwidth (REMB).

    aiortc runs a receive-side bandwidth estimator over every video packet to send REMB
    feedback, which only a sender with its own per-peer encoder can act on. A wallmesh
    unit sends one shared encoding and picks its tier from loss figures
    (:mod:`appliance.mesh.quality`), so REMB sent to a unit is ignored; the estimator is
    a tenth of a loaded unit's loop. Keep it for browsers, which do follow REMB.
    Returns False when aiortc's internals differ (pinned 1.16; the estimator then stays).
    """
    name = "_RTCRtpReceiver__remote_bitrate_estimator"
    if getattr(receiver, name, None) is None:
        return False
    setattr(receiver, name, None)
    return True


def default_stamp_reader() -> StampReader | None:
    """The test pattern's stamp reader, when the capture part provides it."""
    try:
        from appliance.capture.pattern import read_stamp
    except ImportError:
        return None
    return read_stamp


@dataclass
class Latest:
    """The newest decoded frame of a stream."""

    frame: Any = None
    frame_time: float | None = None  # time.monotonic() when it was ready
    stamp: Any = None  # capture stamp read from the pixels, or None


class _Rate:
    """Events per second over a sliding window."""

    def __init__(self, window: float = 1.0) -> None:
        self.window = window
        self.times: collections.deque[float] = collections.deque()

    def tick(self, now: float) -> None:
        self.times.append(now)
        while self.times and now - self.times[0] > self.window:
            self.times.popleft()

    def rate(self, now: float) -> float:
        while self.times and now - self.times[0] > self.window:
            self.times.popleft()
        return len(self.times) / self.window


class VideoReceiver:
    """Drains one remote video track; exposes :attr:`latest`, fps and glass-to-glass latency."""

    def __init__(
        self,
        track: Any,
        *,
        label: str,
        stamp_reader: StampReader | None = None,
        keep: int = 600,
        on_frame: Callable[[], None] | None = None,
    ) -> None:
        self.track = track
        self.label = label
        self.stamp_reader = stamp_reader
        self.on_frame = on_frame  # called on the loop after each new frame (wakes the display)
        self.latest = Latest()
        self.frames = 0
        self.first_frame_at: float | None = None
        self.latencies_ms: collections.deque[float] = collections.deque(maxlen=keep)
        self._rate = _Rate()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._pump(), name=f"video-rx-{self.label}")

    @property
    def fps(self) -> float:
        return self._rate.rate(time.monotonic())

    @property
    def last_frame_age(self) -> float | None:
        t = self.latest.frame_time
        return None if t is None else time.monotonic() - t

    async def _pump(self) -> None:
        from aiortc.mediastreams import MediaStreamError

        while True:
            try:
                frame = await self.track.recv()
            except MediaStreamError:
                return
            self.accept(frame)

    def accept(self, frame: Any) -> None:
        """Take one decoded frame (from the track, or straight from a :class:`DecodeRoute`)."""
        now = time.monotonic()
        stamp = None
        if self.stamp_reader is not None:
            try:
                stamp = self.stamp_reader(frame)
            except (ValueError, IndexError, TypeError):
                stamp = None
            if stamp is not None:
                self.latencies_ms.append((time.time() - stamp.capture_time) * 1000.0)
        self.latest = Latest(frame, now, stamp)
        self.frames += 1
        if self.on_frame is not None:
            self.on_frame()
        if self.first_frame_at is None:
            self.first_frame_at = now
            log.info("rx %s: first video frame %dx%d", self.label, frame.width, frame.height)
        self._rate.tick(now)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.latest = Latest()


class AudioReceiver:
    """One remote audio track on its way to the mixer, counting frames as they pass.

    The mixer pulls from :attr:`track` (a pass-through of the remote track) at its own
    pace; without a mixer, :meth:`start` drains the track so aiortc's queue never grows.
    """

    def __init__(self, track: Any, *, label: str, inlet: AudioInlet | None = None) -> None:
        self.remote = track
        self.label = label
        self.inlet = inlet
        self.decoded_frames = 0  # frames that came through aiortc's decoder instead
        self.decoded_at: float | None = None
        self.track = _CountingTrack(self)
        self._task: asyncio.Task[None] | None = None

    @property
    def frames(self) -> int:
        return self.decoded_frames + (self.inlet.frames if self.inlet is not None else 0)

    @property
    def last_frame_at(self) -> float | None:
        times = [t for t in (self.decoded_at, self.inlet.last_frame_at if self.inlet else None) if t is not None]
        return max(times) if times else None

    def start(self) -> None:
        """Drain the track here (when nothing else consumes it)."""
        self._task = asyncio.create_task(self._pump(), name=f"audio-rx-{self.label}")

    async def _pump(self) -> None:
        from aiortc.mediastreams import MediaStreamError

        while True:
            try:
                await self.track.recv()
            except MediaStreamError:
                return

    async def close(self) -> None:
        if self.inlet is not None:
            self.inlet.connect(None)
        self.track.stop()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


def _counting_track_class() -> type:
    from aiortc import MediaStreamTrack

    class CountingTrack(MediaStreamTrack):
        kind = "audio"

        def __init__(self, owner: AudioReceiver) -> None:
            super().__init__()
            self.owner = owner

        async def recv(self) -> Any:
            frame = await self.owner.remote.recv()
            self.owner.decoded_frames += 1
            self.owner.decoded_at = time.monotonic()
            return frame

        @property
        def inlet(self) -> AudioInlet | None:
            """Opus payloads pushed on the loop, bypassing :meth:`recv` (see :class:`AudioInlet`)."""
            return self.owner.inlet

    return CountingTrack


def _CountingTrack(owner: AudioReceiver) -> Any:  # noqa: N802 - builds the aiortc track lazily
    global _counting_cls
    if _counting_cls is None:
        _counting_cls = _counting_track_class()
    return _counting_cls(owner)


_counting_cls: Any = None
