"""The unit's own media, as the mesh sees it: shared video, microphone, speaker.

:class:`UnitMedia` is the composition of the capture and fan-out parts for one
unit: it opens the configured camera behind one shared encoder, the microphone
and the speaker, hands every peer connection its own tracks, feeds remote audio
to the mixer, applies the quality policy to the shared encoder and implements
mute (no microphone content leaves) and camera privacy (no video leaves). The microphone goes through the capture chain
(``[audio] processing``: echo cancellation against the mixer's reference, noise
suppression, gain) unless processing is off or left to the device; a ``room`` source
and sink share one :class:`~appliance.capture.roomsim.SimulatedRoom`.
Devices are opened in :meth:`start`; an absent one raises
:class:`~appliance.errors.DeviceError` naming the config key.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

from appliance.capture import base, registry
from appliance.errors import DeviceError
from appliance.mesh.fanout import gated_video_track
from appliance.unit.config import UnitConfig
from appliance.wall.status import AudioProcessingStatus, MediaStatus

log = logging.getLogger(__name__)


class UnitMedia:
    """Implements :class:`appliance.mesh.peer.LocalMedia` for a unit daemon."""

    def __init__(
        self, conf: UnitConfig, *, sender: int, name: str, load_processor: Callable[..., Any] | None = None, room: Any = None
    ) -> None:
        self.conf = conf
        self._load_processor = load_processor  # the processing binding's loader (default: appliance.audio.processing)
        self.room: Any = room  # the simulated room a 'room' source and sink share (made from [audio] when None)
        self.processing: Any = None  # the microphone's capture chain (MicrophoneChain), None when not processing
        self.processing_error: str | None = None
        self.error: str | None = None  # why a device did not open at the last start(), None once all are open
        self.sender = sender
        self.name = name
        self.video: Any = None
        self.mic: Any = None
        self.sink: Any = None
        self.mixer: Any = None
        self.audio_out: Any = None  # per-peer microphone tracks come from here
        self.policy: Any = None
        self.muted = False
        self.camera = True
        self.tier: Any = None
        self._tee: SelfViewTee | None = None
        self._gates: weakref.WeakSet[Any] = weakref.WeakSet()

    async def start(self) -> None:
        """Open every device; an absent one raises DeviceError and is named in :attr:`error`
        (close, then start again to retry: a camera plugged back in is opened afresh)."""
        try:
            await self._open()
        except DeviceError as exc:
            self.error = str(exc)
            raise
        self.error = None

    async def _open(self) -> None:
        from appliance.mesh.fanout import SharedVideo

        v = self.conf.video
        source = registry.open_video_source(v, sender=self.sender, prefix="video")
        if isinstance(source, base.VideoSource):
            source = self._tee = SelfViewTee(source)
        from appliance.mesh.workers import worker_count

        # with media workers the loop carries every worker's traffic: the encoder keeps off it
        inline = worker_count(self.conf.media.workers) <= 1
        self.video = SharedVideo(source, width=v.width, height=v.height, fps=v.fps, bitrate=v.bitrate, name=self.name,
                                 inline_encode=inline)
        await self.video.start()
        from appliance.mesh.audio import AudioMixer, SharedAudio

        a = self.conf.audio
        if self.room is None:
            self.room = registry.simulated_room(a, name=self.name)
        self.mic = registry.open_audio_source(a, sender=self.sender, prefix="audio", room=self.room)
        self.sink = registry.open_audio_sink(a, prefix="audio", room=self.room)
        # open the devices now, so an absent one is named (with its config key) at start
        await self.mic.start()
        self.mixer = AudioMixer(self.sink, name=self.name)
        self.processing = self._capture_chain(self.mixer.reference)
        self.audio_out = SharedAudio(
            self.mic, muted=self.muted, packet_ms=a.packet_ms or 20, name=self.name, processing=self.processing
        )
        await self.audio_out.start()
        await self.mixer.start()
        if self.conf.quality.adaptive:
            from appliance.mesh.quality import QualityPolicy, tier_named

            q = self.conf.quality
            self.policy = QualityPolicy(upload_budget=q.upload_kbps * 1000, max_tier=tier_named(q.max_tier))

    def _capture_chain(self, reference: Any) -> Any:
        """The microphone's processing, or None: ``processing`` off, done by the device, or a
        binding that cannot load (said once in the log and in ``/status``; the call goes on)."""
        a = self.conf.audio
        if a.processing != "webrtc":
            log.info("%s: microphone processing %s", self.name,
                     "off" if a.processing == "off" else "left to the device (it cancels its own echo)")
            return None
        from appliance.audio.chain import CaptureChain
        from appliance.audio.processing import ProcessingUnavailable
        from appliance.mesh.microphone import MicrophoneChain

        if self._load_processor is None:
            from appliance.audio.processing import load_processor as loader
        else:
            loader = self._load_processor
        try:
            processor = loader(a.binding)
        except ProcessingUnavailable as exc:
            self.processing_error = str(exc)
            log.warning("%s: %s; the microphone is sent without echo cancellation (audio.binding = %r)",
                        self.name, exc, a.binding)
            return None
        log.info("%s: microphone processing %s (echo cancellation, noise suppression, gain), device delay %d ms",
                 self.name, a.binding, a.device_delay_ms)
        return MicrophoneChain(CaptureChain(processor, reference, delay_ms=a.device_delay_ms), name=self.name)

    def processing_status(self) -> AudioProcessingStatus:
        """``media.audio_processing`` in ``GET /status``."""
        a = self.conf.audio
        chain = self.processing
        return {
            "mode": a.processing,
            "binding": a.binding if a.processing == "webrtc" else None,
            "active": chain is not None,
            "error": self.processing_error,
            "cpu_ms_per_frame": round(chain.cpu_ms_per_frame, 3) if chain is not None else None,
            "dropped": chain.dropped if chain is not None else 0,
            "inline": chain.inline if chain is not None else None,
            "resets": chain.resets if chain is not None else 0,
            "device_delay_ms": a.device_delay_ms,
        }

    # -- LocalMedia ------------------------------------------------------------------------

    def video_track(self) -> Any | None:
        if self.video is None:
            return None
        gate = gated_video_track(self.video.track, self.camera)
        self._gates.add(gate)
        return gate

    def audio_track(self) -> Any | None:
        if self.audio_out is None:
            return None
        return self.audio_out.track()

    def bind_video_sender(self, sender: Any) -> None:
        if self.video is not None:
            self.video.attach(sender)

    def add_remote_audio(self, key: str, track: Any) -> bool:
        if self.mixer is None:
            return False
        self.mixer.add(key, track)
        return True

    def remove_remote_audio(self, key: str) -> None:
        if self.mixer is not None:
            self.mixer.remove(key)

    # -- controls --------------------------------------------------------------------------

    def set_muted(self, muted: bool) -> None:
        self.muted = muted
        if self.audio_out is not None and hasattr(self.audio_out, "set_muted"):
            self.audio_out.set_muted(muted)

    def set_camera(self, on: bool) -> None:
        """Camera privacy: with the camera off no peer gets video and nothing is encoded."""
        self.camera = on
        for gate in list(self._gates):
            gate.set_open(on)

    def apply_quality(self, peers: int, worst_loss: float | None) -> None:
        """Fit the media to the mesh: audio packet length (when automatic) for ``peers``
        participants, and the quality policy's video tier for that size and the loss."""
        if self.audio_out is not None and not self.conf.audio.packet_ms:
            from appliance.mesh.audio import auto_packet_ms

            self.audio_out.set_packet_ms(auto_packet_ms(peers - 1, self.audio_out.packet_ms or 20))
        if self.policy is None or self.video is None:
            return
        tier = self.policy.update(peers, worst_loss or 0.0, time.monotonic())
        if tier != self.tier:
            log.info("%s: quality tier %s (%dx%d, %d bit/s) for %d participants", self.name, tier.name,
                     tier.width, tier.height, tier.bitrate, peers)
            self.tier = tier
            self.video.reconfigure(tier)

    def self_view(self) -> tuple[Any, float] | None:
        """The newest raw camera frame and when it was captured (None for a hardware-encoded camera)."""
        if self._tee is None or self._tee.latest is None:
            return None
        return self._tee.latest

    def status(self) -> MediaStatus:
        """The ``media`` part of ``GET /status``."""
        stats = getattr(self.video, "stats", None)
        return {
            "encoder": None
            if stats is None
            else {
                "width": self.video.width,
                "height": self.video.height,
                "bitrate": self.video.bitrate,
                "frames": stats.frames_encoded,
                "keyframes": stats.keyframes,
            },
            "audio_packet_ms": getattr(self.audio_out, "packet_ms", None),
            "audio_processing": self.processing_status(),
            "error": self.error,
        }

    async def close(self) -> None:
        """Close every part that was made (idempotent; :meth:`start` may follow to reopen)."""
        parts = (self.video, self.audio_out, self.mixer, self.mic, self.sink)
        self.video = self.audio_out = self.mixer = self.mic = self.sink = None
        self.processing = self._tee = None
        for part in parts:
            if part is None:
                continue
            try:
                await part.close()
            except Exception as exc:  # noqa: BLE001 - closing everything matters more than one error
                log.warning("%s: closing %s failed: %s", self.name, type(part).__name__, exc)


class SelfViewTee(base.VideoSource):
    """A raw camera source that also keeps its newest frame for the self-view tile."""

    def __init__(self, inner: base.VideoSource) -> None:
        self.inner = inner
        self.width, self.height, self.fps = inner.width, inner.height, inner.fps
        self.latest: tuple[Any, float] | None = None

    async def start(self) -> None:
        await self.inner.start()

    async def read(self) -> Any:
        frame = await self.inner.read()
        self.latest = (frame, time.monotonic())
        return frame

    def reconfigure(self, width: int, height: int, fps: int) -> None:
        self.inner.reconfigure(width, height, fps)
        self.width, self.height, self.fps = self.inner.width, self.inner.height, self.inner.fps

    async def close(self) -> None:
        self.latest = None
        await self.inner.close()
