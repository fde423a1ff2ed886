"""Mouth-to-speaker audio delay through a real peer connection, for each Opus packet length.

One process, two aiortc peer connections over loopback, the unit's own parts on both
ends: the synthetic microphone read in 10 ms frames, :class:`SharedAudio` (Opus once,
``packet_ms`` packets), the receiving side's inline Opus path into :class:`AudioMixer`,
and a null speaker with the unit's 60 ms buffer. The microphone's talk-spurts start
at known samples; a spurt's first loud sample is timed when the microphone hands its
frame over (that sample was captured ``(frame length - position) / rate`` earlier) and
again in the mix, at the time the mixer says it reaches the speaker. The difference is
the delay a listener hears, acoustic paths aside: the microphone period, packetization,
the codec, the network hop, the jitter buffer and the speaker buffer.

``audio_mouth_to_ear_20ms_p50_ms`` runs it as two units: the link goes both ways and the
sender's microphone goes through the unit's real capture chain (echo cancellation
against its own speaker's mix, noise suppression, gain) before the encoder.

``aiortc_path`` runs the same with aiortc's own receive path (a decoder thread, and a
jitter buffer that holds four packets) for comparison.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import numpy as np

from appliance.bench.report import Result
from appliance.capture.audioformat import AUDIO_RATE
from appliance.capture.base import AudioSource

#: A sample this loud (of 32767) after a silent frame starts a talk-spurt.
ONSET_LEVEL = 1000


def _onset(samples: np.ndarray, quiet_before: bool) -> int | None:
    """Index of a talk-spurt's first loud sample in ``samples``, if one starts here."""
    if not quiet_before:
        return None
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) >= ONSET_LEVEL)
    return int(loud[0]) if loud.size else None


class _OnsetTap(AudioSource):
    """The microphone, passed through; notes when each talk-spurt's first sample was captured."""

    def __init__(self, inner: AudioSource) -> None:
        self.inner = inner
        self.channels = inner.channels
        self.onsets: list[float] = []
        self._quiet = True

    @property
    def capture_time(self) -> float | None:
        return getattr(self.inner, "capture_time", None)

    async def start(self) -> None:
        await self.inner.start()

    async def read(self) -> Any:
        frame = await self.inner.read()
        handed_over = time.monotonic()
        samples = frame.to_ndarray().reshape(-1)
        at = _onset(samples, self._quiet)
        if at is not None:
            self.onsets.append(handed_over - (len(samples) - at) / AUDIO_RATE)
        self._quiet = bool(np.abs(samples.astype(np.int32)).max() < ONSET_LEVEL)
        return frame

    async def close(self) -> None:
        await self.inner.close()


async def measure(packet_ms: int, seconds: float, *, inline: bool = True, processing: bool = False) -> list[float]:
    """Delays (ms) of the talk-spurts heard within ``seconds``.

    With ``processing`` the sending side is a whole unit's audio: its microphone goes through
    the unit's capture chain (:class:`~appliance.mesh.microphone.MicrophoneChain`, the real
    ``webrtc`` binding) against the echo reference of its own mixer, which plays what the
    other side sends back over the same (now two-way) link."""
    from aiortc import RTCConfiguration, RTCPeerConnection

    from appliance.capture.synthetic import NullAudioSink, SyntheticAudioSource
    from appliance.mesh.aiortc_hooks import install_inline_audio
    from appliance.mesh.audio import AudioMixer, SharedAudio
    from appliance.mesh.ice import IcePolicy, process_default
    from appliance.mesh.negotiation import prefer_opus
    from appliance.mesh.receive import AudioReceiver

    mic = _OnsetTap(SyntheticAudioSource(sender=1, amplitude=0.3))
    chain = tx_mixer = back = None
    if processing:
        from appliance.audio.chain import CaptureChain
        from appliance.audio.processing import load_processor
        from appliance.mesh.microphone import MicrophoneChain

        tx_mixer = AudioMixer(NullAudioSink(buffer_ms=60), name="bench-tx")
        chain = MicrophoneChain(CaptureChain(load_processor("webrtc"), tx_mixer.reference), name="bench-tx")
        back = SharedAudio(SyntheticAudioSource(sender=2, amplitude=0.3), packet_ms=packet_ms, name="bench-rx")
    shared = SharedAudio(mic, packet_ms=packet_ms, processing=chain)
    mixer = AudioMixer(NullAudioSink(buffer_ms=60))
    heard: list[float] = []
    quiet = [True]

    def listen(samples: np.ndarray, play_time: float) -> None:
        at = _onset(samples, quiet[0])
        if at is not None:
            heard.append(play_time + at / AUDIO_RATE)
        quiet[0] = bool(np.abs(samples.astype(np.int32)).max() < ONSET_LEVEL)

    mixer.on_mix(listen)
    receivers: list[AudioReceiver] = []
    with process_default(IcePolicy(addresses=("127.0.0.1",))):
        tx, rx = RTCPeerConnection(RTCConfiguration(iceServers=[])), RTCPeerConnection(RTCConfiguration(iceServers=[]))
        try:
            two_way = back is not None
            transceiver = rx.addTransceiver(back.track() if back is not None else "audio", direction="sendrecv" if two_way else "recvonly")
            prefer_opus(transceiver)
            inlet = install_inline_audio(transceiver.receiver) if inline else None

            @rx.on("track")
            def on_track(track: Any) -> None:
                receivers.append(AudioReceiver(track, label="bench", inlet=inlet))
                mixer.add("far", receivers[-1].track)

            @tx.on("track")
            def on_back(track: Any) -> None:
                if tx_mixer is not None:
                    tx_mixer.add("back", track)

            await mixer.start()
            await shared.start()
            for part in (tx_mixer, back):
                if part is not None:
                    await part.start()
            await rx.setLocalDescription(await rx.createOffer())
            await tx.setRemoteDescription(rx.localDescription)
            sender = tx.getTransceivers()[0]
            sender.sender.replaceTrack(shared.track())
            sender.direction = "sendrecv" if two_way else "sendonly"
            await tx.setLocalDescription(await tx.createAnswer())
            await rx.setRemoteDescription(tx.localDescription)
            await asyncio.sleep(seconds)
        finally:
            for receiver in receivers:
                await receiver.close()
            await mixer.close()
            await shared.close()
            for part in (tx_mixer, back):
                if part is not None:
                    await part.close()
            await tx.close()
            await rx.close()
    delays = []
    if processing:
        # noise suppression may dip a steady tone mid-spurt, which reads as another onset:
        # pair each spurt spoken with the first onset heard after it (before the next spurt)
        for k, spoken_at in enumerate(mic.onsets):
            until = mic.onsets[k + 1] if k + 1 < len(mic.onsets) else float("inf")
            after = [t for t in heard if spoken_at <= t < until]
            if after:
                delays.append((after[0] - spoken_at) * 1000)
        return delays
    for played in heard:
        spoken = [t for t in mic.onsets if t <= played]
        if spoken:
            delays.append((played - spoken[-1]) * 1000)
    return delays


def run(quick: bool) -> list[Result]:
    seconds = 5.0 if quick else 12.0
    results = []
    for name, packet_ms, inline in (
        ("audio_delay_20ms_p50", 20, True),
        ("audio_delay_40ms_p50", 40, True),
        ("audio_delay_60ms_p50", 60, True),
        ("audio_delay_20ms_aiortc_path_p50", 20, False),
    ):
        delays = asyncio.run(measure(packet_ms, seconds, inline=inline))
        how = "aiortc's decoder thread and 4-packet jitter buffer" if not inline else "the unit's inline Opus path"
        results.append(
            Result(
                name,
                round(statistics.median(delays), 1) if delays else None,
                "ms",
                f"{packet_ms} ms Opus packets, {how}: microphone sample -> speaker, median of {len(delays)} "
                f"talk-spurt onsets {[round(d) for d in delays]}",
            )
        )
    delays = asyncio.run(measure(20, seconds, processing=True))
    results.append(
        Result(
            "audio_mouth_to_ear_20ms_p50_ms",
            round(statistics.median(delays), 1) if delays else None,
            "ms",
            "two units' audio over a two-way link, 20 ms Opus packets, the sender's microphone through its capture "
            "chain (webrtc binding: echo cancellation against its own speaker's mix, noise suppression, gain): "
            f"microphone sample -> speaker, median of {len(delays)} talk-spurt onsets {[round(d) for d in delays]}; bar 70 ms",
        )
    )
    return results
