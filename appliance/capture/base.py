"""Ports for the unit's media devices: the small interfaces every adapter implements.

Everything the mesh needs from a camera, microphone or speaker goes through four small
interfaces:

* :class:`VideoSource` — raw ``yuv420p`` :class:`av.VideoFrame`\\ s, paced at ``fps``
  (the test pattern, a V4L2 webcam or a file through PyAV).
* :class:`EncodedVideoSource` — H.264 access units as :class:`av.Packet`\\ s, pushed to one
  consumer (the Pi camera's hardware encoder, or libx264 fed by a :class:`VideoSource`).
* :class:`AudioSource` — 10 ms frames of 48 kHz signed 16-bit audio (mono by default).
* :class:`AudioSink` — takes 10 ms frames and plays them from a small bounded buffer.

Adapters (``pattern``, ``v4l2``, ``picamera``, ``alsa``, ``synthetic``) import this module;
it imports none of them: :mod:`appliance.capture.registry` names them by config ``type`` and
imports the chosen one only when it is opened. The audio format every port speaks (48 kHz
s16, 10 ms frames) is :mod:`appliance.capture.audioformat`.

Sources may be started again after ``close()``; ``close()`` is idempotent.
"""

from __future__ import annotations

import abc
import asyncio
import fractions
import logging
import threading
from collections.abc import Callable
from typing import Any

import av

log = logging.getLogger(__name__)

#: RTP's video clock; every raw frame a source yields carries pts in this time base.
VIDEO_CLOCK = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)


class VideoSource(abc.ABC):
    """A camera-like source of raw frames."""

    width: int
    height: int
    fps: int

    @abc.abstractmethod
    async def start(self) -> None:
        """Open the device; raise :class:`~appliance.errors.DeviceError` when it is absent."""

    @abc.abstractmethod
    async def read(self) -> av.VideoFrame:
        """The next frame (``yuv420p``, pts in :data:`VIDEO_TIME_BASE`), waiting for it."""

    def reconfigure(self, width: int, height: int, fps: int) -> None:
        """Ask for a new size and rate; sources that cannot comply keep their own.

        Consumers must not assume the next frame has the new size: the shared encoder scales
        whatever arrives to the size it encodes.
        """
        self.width, self.height, self.fps = width, height, fps

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the device. Idempotent."""


#: Where an :class:`EncodedVideoSource` hands each access unit, on the event loop's thread.
PacketOutput = Callable[[av.Packet], None]


class EncodedVideoSource(abc.ABC):
    """A camera whose pictures come out H.264-encoded: the one port the shared fan-out reads.

    As with picamera2's encoders and their ``Output``, the encoder pushes: between
    :meth:`start` and :meth:`close` every access unit (Annex B, SPS/PPS before each IDR)
    goes to the one ``output`` given to :meth:`start`, on the event loop's thread, as an
    :class:`av.Packet` with ``pts``/``time_base`` (:data:`VIDEO_TIME_BASE`) set and
    ``is_keyframe`` on IDRs. Implementations: :class:`~appliance.capture.x264.SoftwareH264`
    (libx264, fed by any :class:`VideoSource`) and
    :class:`~appliance.capture.picamera.PiCameraSource` (the Pi's hardware encoder).
    """

    width: int
    height: int
    fps: int
    bitrate: int

    @abc.abstractmethod
    async def start(self, output: PacketOutput) -> None:
        """Open the camera and start encoding into ``output``; :class:`~appliance.errors.DeviceError` when absent."""

    @abc.abstractmethod
    async def ended(self) -> None:
        """Wait until the stream stops by itself: return when the camera ran out, raise what stopped it."""

    @abc.abstractmethod
    def request_keyframe(self) -> None:
        """Make the next access unit an IDR. Cheap; the caller coalesces requests."""

    def configure(self, width: int, height: int, fps: int, bitrate: int) -> None:
        """Encode at this size, rate and bitrate (a quality tier); the first packet after a change is an IDR."""
        self.width, self.height, self.fps, self.bitrate = width, height, fps, bitrate

    def set_active(self, active: bool) -> None:  # noqa: B027 - a working no-op: an encoder that costs nothing idle keeps it
        """Whether anyone takes the packets now; an encoder that costs CPU encodes nothing while not."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop encoding and release the camera. Idempotent; :meth:`start` may follow."""


class AudioSource(abc.ABC):
    """A microphone-like source of 10 ms, 48 kHz, s16 frames."""

    channels: int = 1

    @abc.abstractmethod
    async def start(self) -> None:
        """Open the device; may be called again after :meth:`close`."""

    @abc.abstractmethod
    async def read(self) -> av.AudioFrame:
        """The next 10 ms frame (``s16``, pts in samples), waiting for it."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the device. Idempotent."""


class AudioSink(abc.ABC):
    """A speaker-like sink with a small bounded buffer; :meth:`write` never blocks."""

    channels: int = 1

    @abc.abstractmethod
    async def start(self) -> None:
        """Open the device."""

    @abc.abstractmethod
    def write(self, frame: av.AudioFrame) -> None:
        """Queue a 10 ms frame; when the buffer is full the oldest queued audio is dropped."""

    @property
    @abc.abstractmethod
    def delay(self) -> float:
        """Seconds of audio queued ahead of the speaker (for echo-reference alignment)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop playing and release the device. Idempotent."""


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel a source's or a consumer's background task and wait until it has ended.

    For ``close()`` methods: unlike ``await task`` inside ``except CancelledError``, a
    cancellation of the caller itself still propagates; what the task died of is logged,
    not raised, since closing must not fail over it.
    """
    if task is None:
        return
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled() and task.exception() is not None:
        log.error("task %s had failed: %r", task.get_name(), task.exception())


async def stop_thread(thread: threading.Thread | None, stop: threading.Event, timeout: float = 2.0) -> bool:
    """Ask a device thread to stop and wait for it off the loop; False if there was none.

    For the ``close()`` of adapters whose blocking device I/O (ALSA, V4L2) runs on a
    thread: the device itself is closed by the caller after this returns.
    """
    if thread is None:
        return False
    stop.set()
    await asyncio.to_thread(thread.join, timeout)
    return True
