"""The unit's live capture chain in a call: a unit in a simulated room, a real remote peer.

The unit is the daemon's own media composition (:class:`UnitMedia`: ``room`` microphone
and speaker sharing one :class:`SimulatedRoom`, the mixer, the capture chain with the real
``pywebrtc-audio`` binding, the shared Opus encoder). The far end is a plain aiortc peer
over a real loopback link: it plays espeak-ng speech to the unit, and decodes what the
unit sends with aiortc's own Opus decoder — so every figure below is taken from audio
that crossed the link, never inside the unit. The room reports the truth (what the
speaker played in each 10 ms slot, the raw microphone, the talker's part of it).
"""

from __future__ import annotations

import asyncio
import fractions
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection

from appliance.audio import speech
from appliance.audio.processing import load_processor
from appliance.capture.audioformat import AUDIO_RATE, frame_samples
from appliance.capture.roomsim import SimulatedRoom
from appliance.mesh.negotiation import prefer_opus
from appliance.unit import config as unit_config
from appliance.unit.media import UnitMedia

pytestmark = pytest.mark.slow

FRAME = AUDIO_RATE // 100


class SpeechTrack(MediaStreamTrack):
    """The far end's microphone: a signal in real-time 20 ms frames."""

    kind = "audio"

    def __init__(self, signal: np.ndarray) -> None:
        super().__init__()
        self.signal = speech.to_int16(signal)
        self._at = 0
        self._start: float | None = None

    async def recv(self):
        import av

        n = AUDIO_RATE // 50
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._at / AUDIO_RATE
        if due > time.monotonic():
            await asyncio.sleep(due - time.monotonic())
        idx = np.arange(self._at, self._at + n) % len(self.signal)
        frame = av.AudioFrame.from_ndarray(self.signal[idx].reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = AUDIO_RATE, self._at, fractions.Fraction(1, AUDIO_RATE)
        self._at += n
        return frame


@dataclass
class Call:
    """What one call recorded: the room's truth and what the far end decoded."""

    media: UnitMedia
    room: SimulatedRoom | None
    truth: list[tuple[int, float, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)
    received: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (arrival time, mono samples)
    live: list[tuple[np.ndarray, float, np.ndarray]] = field(default_factory=list)

    def mic_energy(self, t1: float, t2: float) -> float:
        return _energy([mic for _, when, _, mic, _ in self.truth if t1 <= when < t2])

    def received_energy(self, t1: float, t2: float, lag: float = 0.1) -> float:
        return _energy([s for when, s in self.received if t1 + lag <= when < t2 + lag])

    def start(self) -> float:
        return self.truth[0][1]


def _energy(frames: list[np.ndarray]) -> float:
    x = np.concatenate(frames).astype(np.float64) if frames else np.zeros(1)
    return float(np.mean(x**2))


def db(ratio: float) -> float:
    return 10 * np.log10(max(ratio, 1e-20))


def far_speech() -> np.ndarray:
    x = speech.talk("en-us", 12.0)
    return x * (0.1 / np.sqrt(np.mean(x[np.abs(x) > 1e-3] ** 2)))  # -20 dBFS while talking


async def run_call(
    seconds: float,
    *,
    room: SimulatedRoom | None,
    audio: dict | None = None,
    loader=None,
    far: np.ndarray | None = None,
    during=None,
) -> Call:
    conf = unit_config.load(None, {"audio": {"source": "room", "sink": "room", **(audio or {})}, "quality": {"adaptive": False}})
    media = UnitMedia(conf, sender=1, name="unit-a", load_processor=loader, room=room)
    call = Call(media, room)
    if room is not None:
        room.listen(lambda *slot: call.truth.append(slot))
    await media.start()
    if media.processing is not None:
        media.processing.tap(lambda mic, when, out: call.live.append((mic, when, out)))
    unit_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    far_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    readers: list[asyncio.Task] = []

    async def read_remote(track) -> None:
        while True:
            frame = await track.recv()
            call.received.append((time.monotonic(), frame_samples(frame)[:, 0].copy()))

    @far_pc.on("track")
    def far_track(track) -> None:
        readers.append(asyncio.create_task(read_remote(track)))

    @unit_pc.on("track")
    def unit_track(track) -> None:
        media.add_remote_audio("far", track)

    try:
        prefer_opus(far_pc.addTransceiver(SpeechTrack(far if far is not None else far_speech()), direction="sendrecv"))
        await far_pc.setLocalDescription(await far_pc.createOffer())
        await unit_pc.setRemoteDescription(far_pc.localDescription)
        transceiver = unit_pc.getTransceivers()[0]
        transceiver.sender.replaceTrack(media.audio_track())
        transceiver.direction = "sendrecv"
        await unit_pc.setLocalDescription(await unit_pc.createAnswer())
        await far_pc.setRemoteDescription(unit_pc.localDescription)
        if during is not None:
            await during(call)
        else:
            await asyncio.sleep(seconds)
    finally:
        for task in readers:
            task.cancel()
        await media.close()
        await unit_pc.close()
        await far_pc.close()
    return call


@pytest.fixture
def ice(loopback_ice):
    return None


@pytest.fixture(scope="module")
def loopback_ice():
    from appliance.mesh.ice import IcePolicy, process_default

    with process_default(IcePolicy(addresses=("127.0.0.1",))):
        yield


def echo_room() -> SimulatedRoom:
    return SimulatedRoom("small", talker=False, noise=False, name="unit-a")


async def test_the_far_end_hears_the_echo_at_least_30_db_below_the_microphone(ice):
    call = await run_call(14.0, room=echo_room())
    t0 = call.start()
    mic, heard = call.mic_energy(t0 + 7, t0 + 13), call.received_energy(t0 + 7, t0 + 13)
    assert db(mic) > 50, "the microphone must hear the loudspeaker (the far speech reached the room)"
    erle = db(mic / heard)
    print(f"echo: mic {db(mic):.1f} dB, received {db(heard):.1f} dB, {erle:.1f} dB below")
    assert erle >= 30
    status = call.media.processing_status()
    assert status["active"] and status["mode"] == "webrtc" and status["binding"] == "webrtc" and status["error"] is None
    assert status["cpu_ms_per_frame"] > 0 and status["dropped"] == 0


async def test_with_processing_off_the_echo_reaches_the_far_end(ice):
    call = await run_call(8.0, room=echo_room(), audio={"processing": "off"})
    t0 = call.start()
    mic, heard = call.mic_energy(t0 + 3, t0 + 7), call.received_energy(t0 + 3, t0 + 7)
    print(f"no processing: mic {db(mic):.1f} dB, received {db(heard):.1f} dB")
    assert db(mic) > 50
    assert abs(db(mic / heard)) < 6  # the echo goes out as loud as the microphone heard it
    assert call.media.processing is None and call.media.processing_status()["active"] is False
