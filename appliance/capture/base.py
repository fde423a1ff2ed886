"""Ports for the unit's media devices: the small interfaces every adapter implements.

Everything the mesh needs from a camera, microphone or speaker goes through four small
interfaces:

* :class:`VideoSource` — raw ``yuv420p`` :class:`av.VideoFrame`\\ s, paced at ``fps``
  (the test pattern, a V4L2 webcam or a file through PyAV).
* :class:`EncodedVideoSource` — a source that encodes by itself (the Pi camera's hardware
  H.264 encoder) and yields :class:`av.Packet`\\ s with the keyframe flag set.
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


class EncodedVideoSource(abc.ABC):
    """A source that delivers H.264 access units already encoded (Annex B, SPS/PPS on IDR)."""

    width: int
    height: int
    fps: int
    bitrate: int

    @abc.abstractmethod
    async def start(self) -> None:
        """Open the camera and start its encoder."""

    @abc.abstractmethod
    async def read(self) -> av.Packet:
        """The next access unit: ``pts``/``time_base`` set, ``is_keyframe`` on IDRs."""

    @abc.abstractmethod
    def force_keyframe(self) -> None:
        """Make the next access unit an IDR (safe to call often; cheap)."""

    def reconfigure(self, width: int, height: int, fps: int, bitrate: int) -> None:
        """Change size, rate and bitrate; the first packet after it is a keyframe."""
        self.width, self.height, self.fps, self.bitrate = width, height, fps, bitrate

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop the encoder and release the camera. Idempotent."""


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
