"""A V4L2 webcam, or a video file, as a raw :class:`~appliance.capture.base.VideoSource` (PyAV).

PyAV's demuxers block, so a worker thread opens the input (``/dev/videoN`` through
FFmpeg's ``v4l2`` input, or any file FFmpeg reads), decodes and converts each frame to
``yuv420p`` and hands it to the loop with ``loop.call_soon_threadsafe``. Only the newest
frame is kept: a camera frame that waited is a stale frame. Files are played at their own
frame rate and loop at the end, which makes a recorded clip usable as a unit's camera.
Frames get fresh pts on the 90 kHz clock from the time they were captured.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from typing import Any

import av

from appliance.capture.base import VIDEO_CLOCK, VIDEO_TIME_BASE, VideoSource, stop_thread
from appliance.errors import DeviceError

log = logging.getLogger(__name__)


class AvVideoSource(VideoSource):
    """``kind`` is ``"v4l2"`` (a camera device) or ``"file"`` (looped at its own rate)."""

    def __init__(
        self, kind: str, device: str, *, width: int = 640, height: int = 480, fps: int = 30,
        input_format: str = "", key: str = "video.device",
    ) -> None:
        if kind not in ("v4l2", "file"):
            raise ValueError(f"unknown kind {kind!r}")
        self.kind, self.device, self.key = kind, device, key
        self.input_format = input_format
        self.width, self.height, self.fps = width, height, fps
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._latest: asyncio.Queue[av.VideoFrame | None] | None = None
        self._start = 0.0
        self._error: BaseException | None = None

    def _open(self) -> Any:
        if self.kind == "v4l2":
            if not os.path.exists(self.device):
                raise DeviceError(self.device, self.key, "no such camera device (is the webcam plugged in?)")
            options = {"video_size": f"{self.width}x{self.height}", "framerate": str(self.fps)}
            if self.input_format:
                options["input_format"] = self.input_format
            try:
                return av.open(self.device, format="v4l2", options=options)
            except (av.error.FFmpegError, OSError) as exc:
                raise DeviceError(self.device, self.key, f"cannot open the camera: {exc}") from exc
        try:
            container = av.open(self.device)
        except (av.error.FFmpegError, OSError) as exc:
            raise DeviceError(self.device, self.key, f"cannot open the video file: {exc}") from exc
        if not container.streams.video:
            container.close()
            raise DeviceError(self.device, self.key, "the file has no video stream")
        return container

    async def start(self) -> None:
        if self._thread is not None:
            return
        container = await asyncio.to_thread(self._open)
        self._latest = asyncio.Queue(1)
        self._stop = threading.Event()
        self._error = None
        self._start = time.monotonic()
        loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._work, args=(loop, container, self._latest, self._stop), name=f"{self.kind}-capture", daemon=True)
        self._thread.start()
        log.info("%s source %s open", self.kind, self.device)

    def _work(self, loop: asyncio.AbstractEventLoop, container: Any, latest: asyncio.Queue[av.VideoFrame | None], stop: threading.Event) -> None:
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = float(stream.average_rate or self.fps) if self.kind == "file" else 0.0
            next_due = time.monotonic()
            while not stop.is_set():
                for frame in container.decode(stream):
                    if stop.is_set():
                        return
                    if rate:
                        next_due += 1 / rate
                        delay = next_due - time.monotonic()
                        if delay > 0:
                            stop.wait(delay)
                        elif delay < -0.5:
                            next_due = time.monotonic()
                    yuv = frame.reformat(format="yuv420p") if frame.format.name != "yuv420p" else frame
                    try:
                        loop.call_soon_threadsafe(self._offer, latest, yuv)
                    except RuntimeError:
                        return
                if self.kind != "file":  # a camera has no end: it was unplugged or its driver gave up
                    if not stop.is_set():
                        raise EOFError("the camera stopped sending frames")
                    return
                container.seek(0)
        except Exception as exc:  # noqa: BLE001 - the device vanished mid-stream: surface it to read()
            self._error = exc
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._offer, latest, None)
        finally:
            container.close()

    def _offer(self, latest: asyncio.Queue[av.VideoFrame | None], frame: av.VideoFrame | None) -> None:
        if latest.full():
            latest.get_nowait()  # keep only the newest frame
        latest.put_nowait(frame)

    async def read(self) -> av.VideoFrame:
        if self._latest is None:
            await self.start()
        assert self._latest is not None
        frame = await self._latest.get()
        if frame is None:
            raise DeviceError(self.device, self.key, f"capture stopped: {self._error}")
        frame.pts = int((time.monotonic() - self._start) * VIDEO_CLOCK)
        frame.time_base = VIDEO_TIME_BASE
        return frame

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if not await stop_thread(thread, self._stop):
            return
        self._latest = None
        log.info("%s source %s closed", self.kind, self.device)
