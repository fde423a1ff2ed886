"""Microphone and speaker through ALSA (pyalsaaudio), each on its own thread.

ALSA reads and writes block for a period (10 ms here, 480 frames at 48 kHz s16), so each
device gets a worker thread; the microphone hands frames to the event loop with
``loop.call_soon_threadsafe`` into a short queue, and the speaker thread takes frames from
a small bounded buffer that the loop fills without ever blocking (oldest audio dropped on
overflow — stale audio is worse than a gap). The device name comes from config
(``audio.input_device`` / ``audio.output_device``); a missing device raises
:class:`~appliance.errors.DeviceError` naming that key.

Each microphone frame is stamped with the ``time.monotonic()`` of its first sample
(``capture_time``): the time the read returned, less the frames read and those the card
still holds (``avail()``, its input delay), so the echo canceller can find what the speaker
played meanwhile on the same clock as the mixer's play-out stamps.

Virtual devices (ALSA's ``null``, or ``file:FILE=...``) return at once instead of at the
sound card's pace, so both threads also keep to a 10 ms schedule of their own; on real
hardware the device's own blocking sets the pace and that schedule never waits.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from typing import Any

import av
import numpy as np

from appliance.capture.audioformat import AUDIO_FRAME_MS, AUDIO_RATE, AUDIO_SAMPLES, audio_frame, frame_samples
from appliance.capture.base import AudioSink, AudioSource, stop_thread
from appliance.errors import DeviceError

log = logging.getLogger(__name__)

PERIOD = AUDIO_FRAME_MS / 1000


def _open(kind: str, device: str, key: str, channels: int) -> Any:
    try:
        import alsaaudio
    except ImportError as exc:
        raise DeviceError(device, key, "pyalsaaudio is not installed (pip install 'wallmesh[alsa]')") from exc
    mode = alsaaudio.PCM_CAPTURE if kind == "capture" else alsaaudio.PCM_PLAYBACK
    try:
        return alsaaudio.PCM(
            mode, device=device, channels=channels, rate=AUDIO_RATE,
            format=alsaaudio.PCM_FORMAT_S16_LE, periodsize=AUDIO_SAMPLES, periods=4,
        )
    except alsaaudio.ALSAAudioError as exc:
        raise DeviceError(device, key, f"cannot open ALSA {kind} device: {str(exc).splitlines()[0]}") from exc


def _input_queued(pcm: Any) -> int:
    """Frames the capture device holds beyond what was just read (its input delay), 0 if unknown."""
    try:
        return max(0, int(pcm.avail()))
    except Exception:  # noqa: BLE001 - called on the capture thread: a failing avail() (old pyalsaaudio, odd state) must cost a figure, not the thread
        return 0


class _Pacer:
    def __init__(self) -> None:
        self.next = time.monotonic()

    def wait(self, stop: threading.Event) -> None:
        self.next += PERIOD
        delay = self.next - time.monotonic()
        if delay > 0:
            stop.wait(delay)
        elif delay < -0.2:
            self.next = time.monotonic()


class AlsaMicrophone(AudioSource):
    """ALSA capture → 10 ms ``s16`` frames on the loop."""

    def __init__(self, device: str = "default", *, key: str = "audio.input_device", channels: int = 1, queue_frames: int = 10) -> None:
        self.device, self.key, self.channels = device, key, channels
        self._queue_frames = queue_frames
        self._queue: asyncio.Queue[tuple[np.ndarray, float] | None] | None = None
        self.capture_time: float | None = None  # time.monotonic() of the last frame's first sample
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._pcm: Any = None
        self._pts = 0
        self._error = ""
        self.overruns = 0

    @property
    def started(self) -> bool:
        return self._thread is not None

    async def start(self) -> None:
        if self._thread is not None:
            return
        self._pcm = await asyncio.to_thread(_open, "capture", self.device, self.key, self.channels)
        self._queue = asyncio.Queue(self._queue_frames)
        self._stop = threading.Event()
        self._error = ""
        loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._work, args=(loop, self._pcm, self._queue, self._stop), name="alsa-mic", daemon=True)
        self._thread.start()
        log.info("microphone %s open", self.device)

    def _work(self, loop: asyncio.AbstractEventLoop, pcm: Any, queue: asyncio.Queue[tuple[np.ndarray, float] | None], stop: threading.Event) -> None:
        pacer = _Pacer()
        pending = b""
        pending_time = 0.0  # capture time of pending's first sample
        width = 2 * self.channels
        need = AUDIO_SAMPLES * width
        while not stop.is_set():
            try:
                length, data = pcm.read()
                returned = time.monotonic()
            except Exception as exc:  # noqa: BLE001 - whatever the read raises, the thread ends the stream and tells read()
                log.warning("microphone %s: read failed: %s", self.device, exc)
                self._error = str(exc) or type(exc).__name__
                with contextlib.suppress(RuntimeError):  # loop closed
                    loop.call_soon_threadsafe(self._put, queue, None)
                return
            if length < 0:
                self.overruns += 1
                continue
            if not pending:
                # the read's first sample was captured before everything read and still queued
                pending_time = returned - (len(data) // width + _input_queued(pcm)) / AUDIO_RATE
            pending += data
            while len(pending) >= need:
                chunk, pending = pending[:need], pending[need:]
                samples = np.frombuffer(chunk, dtype="<i2").reshape(-1, self.channels).copy()
                stamped = (samples, pending_time)
                pending_time += AUDIO_SAMPLES / AUDIO_RATE
                try:
                    loop.call_soon_threadsafe(self._put, queue, stamped)
                except RuntimeError:  # loop closed
                    return
            pacer.wait(stop)

    def _put(self, queue: asyncio.Queue[tuple[np.ndarray, float] | None], samples: tuple[np.ndarray, float] | None) -> None:
        """On the loop: queue a frame (or ``None``: the device failed), dropping the oldest when full."""
        if queue.full():
            queue.get_nowait()
            self.overruns += 1
        queue.put_nowait(samples)

    async def read(self) -> av.AudioFrame:
        if self._queue is None:
            await self.start()
        assert self._queue is not None
        item = await self._queue.get()
        if item is None:  # the capture thread lost the device; later reads fail the same way
            self._queue.put_nowait(None)
            raise DeviceError(self.device, self.key, f"microphone stopped: {self._error}")
        samples, self.capture_time = item
        frame = audio_frame(samples if self.channels > 1 else samples[:, 0], self._pts)
        self._pts += AUDIO_SAMPLES
        return frame

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if not await stop_thread(thread, self._stop):
            return
        pcm, self._pcm = self._pcm, None
        if pcm is not None:
            pcm.close()
        self._queue = None
        log.info("microphone %s closed", self.device)


class AlsaSpeaker(AudioSink):
    """10 ms ``s16`` frames → ALSA playback, from a buffer of at most ``buffer_ms``."""

    def __init__(self, device: str = "default", *, key: str = "audio.output_device", channels: int = 1, buffer_ms: int = 60) -> None:
        self.device, self.key, self.channels = device, key, channels
        self._buffer: collections.deque[bytes] = collections.deque(maxlen=max(1, buffer_ms // AUDIO_FRAME_MS))
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pcm: Any = None
        self.frames_played = 0
        self.frames_dropped = 0
        self.underruns = 0  # times the buffer ran dry while playing (the mixer re-anchors its stamps)
        self._device_queued = PERIOD  # seconds inside the sound card, measured after each write

    async def start(self) -> None:
        if self._thread is not None:
            return
        self._pcm = await asyncio.to_thread(_open, "playback", self.device, self.key, self.channels)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(self._pcm, self._stop), name="alsa-speaker", daemon=True)
        self._thread.start()
        log.info("speaker %s open", self.device)

    def write(self, frame: av.AudioFrame) -> None:
        samples = frame_samples(frame)
        if samples.shape[1] != self.channels:
            samples = np.repeat(samples[:, :1], self.channels, axis=1) if self.channels > 1 else samples[:, :1]
        if len(self._buffer) == self._buffer.maxlen:
            self.frames_dropped += 1
        self._buffer.append(samples.astype("<i2").tobytes())  # deque append/popleft are thread-safe
        self._ready.set()

    @property
    def delay(self) -> float:
        """Our queue plus what the sound card still holds (from ``avail()`` after each write)."""
        return len(self._buffer) * PERIOD + self._device_queued

    def _work(self, pcm: Any, stop: threading.Event) -> None:
        pacer = _Pacer()
        silence = bytes(AUDIO_SAMPLES * 2 * self.channels)
        playing = False
        try:
            device_frames = int(pcm.info()["buffer_size"])
        except Exception:  # noqa: BLE001 - on the speaker thread: older pyalsaaudio has no info(); keep the one-period estimate
            device_frames = 0
        while not stop.is_set():
            try:
                data = self._buffer.popleft()
            except IndexError:
                if playing:
                    self.underruns += 1
                data = silence  # underrun: keep the device fed, never stall it
            playing = data is not silence
            try:
                pcm.write(data)
            except Exception as exc:  # noqa: BLE001 - whatever the write raises, the speaker thread logs it and stops cleanly
                log.warning("speaker %s: write failed: %s", self.device, exc)
                break
            if data is not silence:
                self.frames_played += 1
            if device_frames:
                with contextlib.suppress(Exception):  # avail() fails in some device states; keep the last figure
                    self._device_queued = max(0, device_frames - pcm.avail()) / AUDIO_RATE
            pacer.wait(stop)

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if not await stop_thread(thread, self._stop):
            return
        pcm, self._pcm = self._pcm, None
        if pcm is not None:
            pcm.close()
        log.info("speaker %s closed", self.device)
