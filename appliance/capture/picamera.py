"""The Raspberry Pi camera through picamera2, encoded by the Pi's hardware H.264 encoder.

On a Pi the unit does not encode in software at all: libcamera fills YUV420 buffers, the
VideoCore's V4L2 H.264 encoder compresses them, and picamera2 hands each access unit to an
``Output`` via ``outputframe(frame, keyframe, timestamp, ...)`` — on the encoder's own
thread. :class:`PiCameraSource` subclasses that ``Output`` and passes each chunk to the
event loop with ``loop.call_soon_threadsafe``, where it goes as an :class:`av.Packet` to
the output of the :class:`~appliance.capture.base.EncodedVideoSource` port — the shared
fan-out (:mod:`appliance.mesh.fanout`), which sends it to every peer unchanged. Nothing is
queued on the way: the fan-out's per-peer queues are the only buffers.

The encoder is set up for WebRTC: constrained baseline (no B-frames), SPS/PPS repeated
before every IDR (``repeat=True``), an IDR period (``iperiod``) as a safety net, and
``force_key_frame()`` whenever a peer joins or reports loss. Changing the size (a quality
tier) restarts recording, since the hardware encoder's size is fixed while it records.

picamera2 is imported here only, and only when ``start()`` runs without injected classes,
so the package imports anywhere. Tests inject a fake camera/encoder/Output that honour
picamera2's API (the one hardware edge that cannot exist off a Pi).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import av

from appliance.capture.base import VIDEO_CLOCK, VIDEO_TIME_BASE, EncodedVideoSource, PacketOutput
from appliance.errors import DeviceError

log = logging.getLogger(__name__)


def _output_class(base: type, deliver: Any) -> type:
    """A picamera2 ``Output`` subclass whose frames go to ``deliver`` (encoder thread)."""

    class LoopOutput(base):
        def outputframe(self, frame: Any, keyframe: bool = True, timestamp: int | None = None, packet: Any = None, audio: bool = False) -> None:
            if audio:
                return
            deliver(bytes(frame), bool(keyframe), timestamp)

    return LoopOutput


class PiCameraSource(EncodedVideoSource):
    """Pi camera + hardware H.264 as an :class:`EncodedVideoSource`."""

    def __init__(
        self,
        *,
        width: int = 640,
        height: int = 480,
        fps: int = 30,
        bitrate: int = 500_000,
        keyframe_interval: float = 5.0,
        key: str = "video.type",
        camera_class: Any = None,
        encoder_class: Any = None,
        output_class: Any = None,
    ) -> None:
        self.width, self.height, self.fps, self.bitrate = width, height, fps, bitrate
        self.keyframe_interval = keyframe_interval
        self.key = key
        self._classes = (camera_class, encoder_class, output_class)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deliver: PacketOutput | None = None  # the port's consumer, on the loop
        self._ended: asyncio.Future[None] | None = None
        self._camera: Any = None
        self._encoder: Any = None
        self._output: Any = None
        self._restart: asyncio.Task[None] | None = None

    def _resolve(self) -> tuple[Any, Any, Any]:
        camera_class, encoder_class, output_class = self._classes
        if camera_class is None or encoder_class is None or output_class is None:
            try:
                from picamera2 import Picamera2
                from picamera2.encoders import H264Encoder
                from picamera2.outputs import Output
            except ImportError as exc:
                raise DeviceError(
                    "picamera", self.key, "picamera2 is not installed (only on Raspberry Pi OS: apt install python3-picamera2)"
                ) from exc
            camera_class = camera_class or Picamera2
            encoder_class = encoder_class or H264Encoder
            output_class = output_class or Output
        return camera_class, encoder_class, output_class

    def _open(self) -> None:
        """Blocking: open and configure the camera, start recording (run on a thread)."""
        camera_class, encoder_class, output_class = self._resolve()
        try:
            camera = camera_class()
        except (IndexError, RuntimeError, OSError) as exc:
            raise DeviceError("picamera", self.key, f"no camera found: {exc}") from exc
        try:
            config = camera.create_video_configuration(
                main={"size": (self.width, self.height), "format": "YUV420"},
                controls={"FrameRate": self.fps},
            )
            camera.configure(config)
            settings = {"bitrate": self.bitrate, "repeat": True, "iperiod": max(1, int(self.keyframe_interval * self.fps))}
            try:
                encoder = encoder_class(**settings, framerate=self.fps, profile="constrained baseline")
            except TypeError:  # picamera2 before 0.3.17 has no profile/framerate arguments
                log.warning("this picamera2 cannot select the H.264 profile; upgrade it for constrained baseline")
                encoder = encoder_class(**settings)
            output = _output_class(output_class, self._from_encoder)()
            camera.start_recording(encoder, output)
        except Exception as exc:  # the camera is open: release it, whatever went wrong after that
            camera.close()
            raise DeviceError("picamera", self.key, f"cannot start recording at {self.width}x{self.height}@{self.fps}: {exc}") from exc
        self._camera, self._encoder, self._output = camera, encoder, output

    def _stop(self) -> None:
        camera, self._camera = self._camera, None
        self._encoder = self._output = None
        if camera is not None:
            try:
                camera.stop_recording()
            finally:
                camera.close()

    async def start(self, output: PacketOutput) -> None:
        if self._camera is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._deliver = output
        self._ended = self._loop.create_future()
        await asyncio.to_thread(self._open)
        log.info("pi camera recording %dx%d@%d %d bit/s", self.width, self.height, self.fps, self.bitrate)

    def _from_encoder(self, data: bytes, keyframe: bool, timestamp: int | None) -> None:
        """Encoder thread → loop."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            loop.call_soon_threadsafe(self._put, data, keyframe, timestamp)

    def _put(self, data: bytes, keyframe: bool, timestamp: int | None) -> None:
        """On the loop: one access unit to the port's consumer."""
        deliver = self._deliver
        if deliver is None:  # closed meanwhile
            return
        packet = av.Packet(data)
        packet.is_keyframe = keyframe
        micros = timestamp if timestamp is not None else int(time.monotonic() * 1_000_000)
        packet.pts = micros * VIDEO_CLOCK // 1_000_000
        packet.time_base = VIDEO_TIME_BASE
        deliver(packet)

    async def ended(self) -> None:
        ended = self._ended
        if ended is not None:
            await asyncio.wait({ended})
            ended.result()  # a camera that would not restart: DeviceError

    def request_keyframe(self) -> None:
        if self._encoder is not None:
            self._encoder.force_key_frame()

    def configure(self, width: int, height: int, fps: int, bitrate: int) -> None:
        changed = (width, height, fps, bitrate) != (self.width, self.height, self.fps, self.bitrate)
        super().configure(width, height, fps, bitrate)
        restarting = self._restart is not None and not self._restart.done()
        if changed and self._camera is not None and not restarting:
            self._restart = asyncio.get_running_loop().create_task(self._restart_recording(), name="picamera-restart")
        # while a restart runs, it picks up the newest settings before it finishes

    async def _restart_recording(self) -> None:
        """The hardware encoder's size is fixed while recording: stop, reconfigure, start (IDR first).

        One restart at a time (two would open the camera twice); settings changed while it
        ran are applied by another round. A camera that will not start again ends the
        stream: :meth:`ended` raises :class:`DeviceError`.
        """
        while True:
            wanted = (self.width, self.height, self.fps, self.bitrate)
            await asyncio.to_thread(self._stop)
            try:
                await asyncio.to_thread(self._open)
            except DeviceError as exc:
                log.error("pi camera: restart failed: %s", exc)
                if self._ended is not None and not self._ended.done():
                    self._ended.set_exception(DeviceError("picamera", self.key, f"camera stopped: {exc.problem}"))
                return
            log.info("pi camera now %dx%d@%d %d bit/s", self.width, self.height, self.fps, self.bitrate)
            if wanted == (self.width, self.height, self.fps, self.bitrate):
                return

    async def close(self) -> None:
        if self._restart is not None:
            await asyncio.gather(self._restart, return_exceptions=True)
            self._restart = None
        self._deliver = None
        if self._camera is not None:
            await asyncio.to_thread(self._stop)
            log.info("pi camera closed")
        ended, self._ended = self._ended, None
        if ended is not None and not ended.done():
            ended.set_result(None)
        elif ended is not None:
            ended.exception()  # reported by ended() or the restart's log; not again at garbage collection
