"""Software H.264: libx264 through PyAV, fed by any raw camera (test pattern, V4L2, a file).

Where there is no hardware encoder, :class:`SoftwareH264` is the unit's
:class:`~appliance.capture.base.EncodedVideoSource`: it reads raw ``yuv420p`` frames from a
:class:`~appliance.capture.base.VideoSource` and encodes each one once, for every peer.
libx264 is set up for WebRTC (ultrafast, zerolatency, slice threads, constrained baseline,
no B-frames, SPS/PPS repeated before every IDR, an IDR every ``keyframe_interval`` seconds
as a safety net, VBV capped at the tier's bitrate).

Pictures up to 640×480 are encoded by one x264 thread right on the event loop, where a
hand-off to a thread would cost as much as the encode (see :mod:`appliance.mesh.budget`),
for as long as that stays under ``INLINE_ENCODE_MS`` of CPU a picture; bigger or costlier
ones go to the encoder's own thread. While no one takes the packets
(:meth:`SoftwareH264.set_active`) the camera keeps running and nothing is encoded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fractions
import logging
from dataclasses import dataclass
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError

from appliance.capture.base import VIDEO_TIME_BASE, EncodedVideoSource, PacketOutput, VideoSource, stop_task
from appliance.mesh.budget import LoopBudget

log = logging.getLogger(__name__)

#: Pictures up to this size (640×480) are encoded by one x264 thread on the event loop,
#: as long as that costs less than ``INLINE_ENCODE_MS`` of CPU a picture (smoothed);
#: bigger ones go to a worker thread with x264's slice threads.
INLINE_ENCODE_PIXELS = 640 * 480
INLINE_ENCODE_MS = 4.0


def x264_context(width: int, height: int, fps: int, bitrate: int, *, keyframe_interval: float = 5.0, threads: int = 0) -> Any:
    """A libx264 encoder context set up for WebRTC (see the module docstring)."""
    keyint = max(1, int(keyframe_interval * fps))
    kbps = max(50, bitrate // 1000)
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = VIDEO_TIME_BASE
    ctx.framerate = fractions.Fraction(fps)
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


@dataclass
class EncoderStats:
    """What the software encoder has done (read by benchmarks and tests)."""

    frames_in: int = 0
    frames_encoded: int = 0


class SoftwareH264(EncodedVideoSource):
    """A raw camera encoded once by libx264, as an :class:`~appliance.capture.base.EncodedVideoSource`."""

    def __init__(
        self,
        camera: VideoSource,
        *,
        bitrate: int = 500_000,
        keyframe_interval: float = 5.0,
        threads: int = 0,
        name: str = "unit",
        may_inline: bool = True,
    ) -> None:
        """``may_inline=False`` keeps encoding off the event loop whatever the picture size (a
        unit whose loop serves media workers wants its loop free, not the hand-off saved)."""
        self.camera = camera
        self.may_inline = may_inline
        self.width, self.height, self.fps, self.bitrate = camera.width, camera.height, camera.fps, bitrate
        self.keyframe_interval = keyframe_interval
        self.stats = EncoderStats()
        self._threads = threads
        self._name = name
        self._output: PacketOutput | None = None
        self._encoder: X264Encoder | None = None
        self._force = False
        self._active = False
        self._inline = False  # encoding on the event loop (small pictures; see appliance.mesh.budget)
        self._budget = LoopBudget(INLINE_ENCODE_MS)
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def inline(self) -> bool:
        """Whether pictures are encoded on the event loop right now."""
        return self._inline

    async def start(self, output: PacketOutput) -> None:
        if self._task is not None:
            return
        await self.camera.start()
        self._output = output
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="wallmesh-x264")
        self._task = asyncio.create_task(self._run(), name=f"{self._name}-x264")

    async def ended(self) -> None:
        task = self._task
        if task is None:
            return
        await asyncio.wait({task})
        if not task.cancelled():
            task.result()

    def request_keyframe(self) -> None:
        self._force = True

    def configure(self, width: int, height: int, fps: int, bitrate: int) -> None:
        """Ask the camera for the new size and rate; a fresh encoder (starting with an IDR) takes the next frame."""
        super().configure(width, height, fps, bitrate)
        self.camera.reconfigure(width, height, fps)
        self._encoder = None

    def set_active(self, active: bool) -> None:
        self._active = active

    async def close(self) -> None:
        await stop_task(self._task)
        self._task = None
        self._output = None
        await self.camera.close()
        executor, self._executor = self._executor, None
        if executor is not None:  # an encode still running in it finishes off the loop's thread
            await asyncio.to_thread(executor.shutdown, True)
        self._encoder = None

    def _new_encoder(self) -> X264Encoder:
        small = self.width * self.height <= INLINE_ENCODE_PIXELS
        threads = self._threads or (1 if small else 0)
        self._encoder = X264Encoder(
            self.width, self.height, self.fps, self.bitrate, keyframe_interval=self.keyframe_interval, threads=threads,
        )
        self._force = True
        # a small picture encodes on the loop while that stays cheap; only with one x264
        # thread, whose cost the loop thread's CPU clock sees in full
        self._inline = small and threads == 1 and self.may_inline
        self._budget = LoopBudget(INLINE_ENCODE_MS)
        return self._encoder

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                frame = await self.camera.read()
                self.stats.frames_in += 1
                if not self._active:
                    continue
                encoder = self._encoder or self._new_encoder()
                force, self._force = self._force, False
                if self._inline:
                    self._budget.start()
                    packets = encoder.encode(frame, force)
                    if self._budget.stop():
                        log.info("%s: encoding takes %.1f ms a picture: moving it off the event loop", self._name, self._budget.ms)
                        self._inline = False
                else:
                    packets = await loop.run_in_executor(self._executor, encoder.encode, frame, force)
                self.stats.frames_encoded += 1
                output = self._output
                if output is not None:
                    for packet in packets:
                        output(packet)
        except MediaStreamError:
            log.info("%s: camera ended", self._name)
