"""Receiving one remote participant: decoded video kept newest-only, audio handed to the mixer.

Small pictures are decoded right on the event loop as aiortc completes them
(:class:`~appliance.mesh.aiortc_hooks.DecodeRoute`; a thread hand-off would cost more
than the decode), big ones on aiortc's decoder thread behind a bounded backlog. A
:class:`VideoReceiver` takes each decoded frame and keeps only the newest one (with its
decode time and, for test-pattern senders, the capture stamp read from its pixels), so
a display that draws at its own pace never sees a backlog. Remote Opus audio skips
aiortc's decoder thread too: an :class:`~appliance.mesh.aiortc_hooks.AudioInlet` hands
each payload to the mixer on the loop as it arrives. What replaces aiortc's own queues
and buffers lives in :mod:`appliance.mesh.aiortc_hooks`; apart from decoding, everything
here costs a few microseconds per frame.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from typing import Any

from aiortc.mediastreams import MediaStreamError

from appliance.mesh.aiortc_hooks import AudioInlet, CountingTrack

log = logging.getLogger(__name__)

StampReader = Callable[[Any], Any]


def default_stamp_reader() -> StampReader | None:
    """The test pattern's stamp reader, when the capture part provides it."""
    try:
        from appliance.capture.pattern import read_stamp
    except ImportError:
        return None
    return read_stamp


class Latest:
    """The newest decoded frame of a stream.

    A picture still in a media worker's shared memory is copied out only when :attr:`frame`
    is first read (by the display): a unit that draws fewer pictures than it receives, or
    none (headless), does not copy the rest. Should the worker have overwritten it by then,
    the stream's previous picture stands in.
    """

    __slots__ = ("_frame", "_load", "frame_time", "stamp")

    def __init__(self, frame: Any = None, frame_time: float | None = None, stamp: Any = None,
                 load: Callable[[], Any] | None = None) -> None:
        self._frame = frame
        self._load = load
        self.frame_time = frame_time  # time.monotonic() when it was ready
        self.stamp = stamp  # capture stamp read from the pixels, or None

    @property
    def frame(self) -> Any:
        if self._load is not None:
            load, self._load = self._load, None
            picture = load()
            if picture is not None:
                self._frame = picture
        return self._frame

    @property
    def held(self) -> Any:
        """The picture :attr:`frame` gives now, without copying one out of a worker's memory."""
        return self._frame


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


#: A gap between two pictures longer than this is a freeze the room notices (at 15 fps a
#: picture comes every 67 ms).
FREEZE_S = 0.2


class VideoReceiver:
    """Drains one remote video track; exposes :attr:`latest`, fps, glass-to-glass latency
    and the recent freezes (gaps between pictures of over :data:`FREEZE_S`)."""

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
        self.freezes: collections.deque[tuple[float, float]] = collections.deque(maxlen=32)  # (monotonic end, seconds)
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
        while True:
            try:
                frame = await self.track.recv()
            except MediaStreamError:
                return
            self.accept(frame)

    def accept(self, frame: Any) -> None:
        """Take one decoded frame (from the track, or straight from a ``DecodeRoute``)."""
        stamp = None
        if self.stamp_reader is not None:
            try:
                stamp = self.stamp_reader(frame)
            except (ValueError, IndexError, TypeError):
                stamp = None
        self.take(frame, stamp, frame.width, frame.height)

    def take(self, frame: Any, stamp: Any, width: int, height: int, load: Callable[[], Any] | None = None) -> None:
        """Take one picture whose stamp is already read; with ``load`` (and ``frame`` None) the
        picture is copied out by ``load()`` when it is first drawn, the previous one until then."""
        now = time.monotonic()
        if frame is None and load is not None:
            frame = self.latest.held
        if stamp is not None:
            self.latencies_ms.append((time.time() - stamp.capture_time) * 1000.0)
        before = self.latest.frame_time
        if before is not None and now - before > FREEZE_S:
            self.freezes.append((now, now - before))
        self.latest = Latest(frame, now, stamp, load)
        self.frames += 1
        if self.on_frame is not None:
            self.on_frame()
        if self.first_frame_at is None:
            self.first_frame_at = now
            log.info("rx %s: first video frame %dx%d", self.label, width, height)
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
        self.track = CountingTrack(self)
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
