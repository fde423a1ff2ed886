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
from typing import Any

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
    live: list[tuple[np.ndarray, float, np.ndarray]] = field(default_factory=list)  # (mic, capture time, out)
    mixed: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (play time, mix) as the mixer stamped it
    processing: Any = None  # the unit's capture chain, kept past the call (closing the media lets go of it)
    status: dict = field(default_factory=dict)  # the unit's media status as the call ended

    def reference(self):
        """The speaker mix as the unit stamped it, the way its echo reference holds it."""
        from appliance.mesh.audio import EchoReference

        reference = EchoReference(seconds=3600)
        for when, mix in self.mixed:
            reference.add(mix, when)
        return reference

    def mic_energy(self, t1: float, t2: float) -> float:
        return _energy([mic for _, when, _, mic, _ in self.truth if t1 <= when < t2])

    def received_energy(self, t1: float, t2: float, lag: float = 0.1) -> float:
        return _energy([s for when, s in self.received if t1 + lag <= when < t2 + lag])

    def start(self) -> float:
        return self.truth[0][1]


def record_far_end(far_pc: RTCPeerConnection, call: Call) -> list[asyncio.Task]:
    """Record what the far end decodes (into ``call.received``); the returned tasks read it."""
    readers: list[asyncio.Task] = []

    async def read_remote(track) -> None:
        while True:
            frame = await track.recv()
            call.received.append((time.monotonic(), frame_samples(frame)[:, 0].copy()))

    @far_pc.on("track")
    def far_track(track) -> None:
        if track.kind == "audio":
            readers.append(asyncio.create_task(read_remote(track)))

    return readers


def _energy(frames: list[np.ndarray]) -> float:
    x = np.concatenate(frames).astype(np.float64) if frames else np.zeros(1)
    return float(np.mean(x**2))


def db(ratio: float) -> float:
    return 10 * np.log10(max(ratio, 1e-20))


def far_speech() -> np.ndarray:
    x = speech.talk("en-us", 12.0)
    return x * (0.1 / np.sqrt(np.mean(x[np.abs(x) > 1e-3] ** 2)))  # -20 dBFS while talking


async def open_unit(room: SimulatedRoom | None, audio: dict | None, loader) -> Call:
    """The unit's media, opened as the daemon composes it, with the room and the mix recorded."""
    conf = unit_config.load(None, {"audio": {"source": "room", "sink": "room", **(audio or {})}, "quality": {"adaptive": False}})
    call = Call(UnitMedia(conf, sender=1, name="unit-a", load_processor=loader, room=room), room)
    if room is not None:
        room.listen(lambda *slot: call.truth.append(slot))
    await call.media.start()
    call.media.mixer.on_mix(lambda mix, when: call.mixed.append((when, mix.copy())))
    return call


async def run_call(
    seconds: float,
    *,
    room: SimulatedRoom | None,
    audio: dict | None = None,
    loader=None,
    far: np.ndarray | None = None,
    during=None,
    workers: int = 1,
) -> Call:
    """One call between a unit (its own media, as the daemon composes it) and a plain aiortc far
    end. With ``workers`` > 1 the unit's side of the link is a real media worker process, as a
    unit with ``[media] workers`` runs it: the audio crosses the worker both ways."""
    if workers > 1:
        return await _run_worker_call(seconds, room=room, audio=audio, far=far)
    call = await open_unit(room, audio, loader)
    media = call.media
    if media.processing is not None:
        media.processing.tap(lambda mic, when, out: call.live.append((mic, when, out)))
    unit_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    far_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    readers = record_far_end(far_pc, call)

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
        call.processing, call.status = media.processing, dict(media.status())
        await media.close()
        await unit_pc.close()
        await far_pc.close()
    return call


async def _run_worker_call(seconds: float, *, room: SimulatedRoom | None, audio: dict | None, far: np.ndarray | None) -> Call:
    from appliance.mesh.ice import IcePolicy
    from appliance.mesh.workers.pool import WorkerPool

    call = await open_unit(room, audio, None)
    media = call.media
    pool = WorkerPool(2, media, name="unit-a")
    await pool.start()
    far_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    readers = record_far_end(far_pc, call)
    answered = asyncio.Event()

    async def from_unit(to: str, data: dict) -> bool:
        sdp = data.get("sdp")
        if sdp and sdp["type"] == "answer":
            from aiortc import RTCSessionDescription

            await far_pc.setRemoteDescription(RTCSessionDescription(sdp=sdp["sdp"], type="answer"))
            answered.set()
        return True

    peer = pool.peer(local_id="a", remote_id="far", name="far", kind="user",
                     policy=IcePolicy(addresses=("127.0.0.1",), resolve_mdns=False), media=media,
                     send_signal=from_unit, on_change=lambda p: None, stamp_reader=None, on_frame=None)
    try:
        far_pc.addTransceiver("video", direction="recvonly")  # a peer's offer has both (a unit's link expects it)
        prefer_opus(far_pc.addTransceiver(SpeechTrack(far if far is not None else far_speech()), direction="sendrecv"))
        await far_pc.setLocalDescription(await far_pc.createOffer())
        await peer.handle_signal({"sdp": {"type": "offer", "sdp": far_pc.localDescription.sdp}})
        await asyncio.wait_for(answered.wait(), 20)
        await asyncio.sleep(seconds)
    finally:
        for task in readers:
            task.cancel()
        call.processing, call.status = media.processing, dict(media.status())
        await peer.close()
        await pool.close()
        await media.close()
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


@pytest.mark.parametrize("workers", [1, 2], ids=["workers1", "workers2"])
async def test_the_far_end_hears_the_echo_at_least_30_db_below_the_microphone(ice, workers):
    call = await run_call(14.0, room=echo_room(), workers=workers)
    t0 = call.start()
    mic, heard = call.mic_energy(t0 + 7, t0 + 13), call.received_energy(t0 + 7, t0 + 13)
    assert db(mic) > 50, "the microphone must hear the loudspeaker (the far speech reached the room)"
    erle = db(mic / heard)
    print(f"echo: mic {db(mic):.1f} dB, received {db(heard):.1f} dB, {erle:.1f} dB below")
    assert erle >= 30
    status = call.status["audio_processing"]
    assert status["active"] and status["mode"] == "webrtc" and status["binding"] == "webrtc" and status["error"] is None
    assert status["cpu_ms_per_frame"] > 0 and status["dropped"] == 0


async def test_with_processing_off_the_echo_reaches_the_far_end(ice):
    call = await run_call(8.0, room=echo_room(), audio={"processing": "off"})
    t0 = call.start()
    mic, heard = call.mic_energy(t0 + 3, t0 + 7), call.received_energy(t0 + 3, t0 + 7)
    print(f"no processing: mic {db(mic):.1f} dB, received {db(heard):.1f} dB")
    assert db(mic) > 50
    assert abs(db(mic / heard)) < 6  # the echo goes out as loud as the microphone heard it
    assert call.processing is None and call.status["audio_processing"]["active"] is False


def best_correlation(sent: np.ndarray, heard: np.ndarray, max_lag: int) -> tuple[float, int]:
    """Peak normalised correlation of ``heard`` against ``sent`` over lags 0..max_lag samples."""
    from scipy.signal import fftconvolve

    n = min(len(sent), len(heard) - max_lag)
    a = sent[:n].astype(np.float64)
    b = heard[: n + max_lag].astype(np.float64)
    xc = fftconvolve(b, a[::-1], mode="valid")[: max_lag + 1]
    energy = np.sqrt(np.convolve(b**2, np.ones(n), mode="valid")[: max_lag + 1] * np.sum(a**2))
    lag = int(np.argmax(xc / np.maximum(energy, 1e-9)))
    return float(xc[lag] / max(energy[lag], 1e-9)), lag


@pytest.mark.parametrize("workers", [1, 2], ids=["workers1", "workers2"])
async def test_in_double_talk_the_near_end_talker_reaches_the_far_end(ice, workers):
    room = SimulatedRoom("small", talker=True, noise=True, talk_s=10.0, pause_s=4.0, name="unit-a")
    call = await run_call(10.0, room=room, workers=workers)
    t0 = call.start()
    near = np.concatenate([n for _, when, _, _, n in call.truth if t0 + 4 <= when < t0 + 9])
    echo_and_all = np.concatenate([m for _, when, _, m, _ in call.truth if t0 + 4 <= when < t0 + 9])
    heard = np.concatenate([s for when, s in call.received if t0 + 4 <= when < t0 + 9.6])
    corr, lag = best_correlation(near, heard, AUDIO_RATE // 2)
    echo = echo_and_all.astype(np.float64) - near  # the loudspeaker's part of the microphone (and the fan)
    heard_here = heard[lag : lag + len(near)].astype(np.float64)
    echo_in_heard = float(np.dot(echo, heard_here) / np.sqrt(np.dot(echo, echo) * np.dot(heard_here, heard_here)))
    echo_in_mic = float(np.dot(echo, echo_and_all) / np.sqrt(np.dot(echo, echo) * np.dot(echo_and_all.astype(np.float64), echo_and_all)))
    talker_db, heard_db = db(_energy([near])), db(_energy([heard_here]))
    print(f"double talk: talker {talker_db:.1f} dB, received {heard_db:.1f} dB; talker correlation {corr:.2f} at "
          f"{1000 * lag / AUDIO_RATE:.0f} ms; echo correlation {echo_in_heard:.2f} (raw microphone {echo_in_mic:.2f})")
    assert corr > 0.5  # the talker is what the far end hears
    assert abs(echo_in_heard) < 0.1 < echo_in_mic  # ... and not the echo that was on top of it in the room
    assert heard_db > talker_db - 6  # the talker is not much quieter than in the room


async def test_a_speakerphone_that_cancels_its_own_echo_gets_no_processing(ice):
    call = await run_call(3.0, room=echo_room(), audio={"processing": "device", "device_delay_ms": 40})
    assert call.processing is None and not call.live
    status = call.status["audio_processing"]
    assert status == {
        "mode": "device", "binding": None, "active": False, "error": None, "cpu_ms_per_frame": None,
        "dropped": 0, "inline": None, "resets": 0, "device_delay_ms": 40,
    }
    t0 = call.start()
    assert abs(db(call.mic_energy(t0 + 1, t0 + 2.5) / call.received_energy(t0 + 1, t0 + 2.5))) < 6  # sent as captured


async def test_a_binding_that_cannot_load_leaves_the_call_running_unprocessed(ice, caplog):
    def broken(name, config=None):
        return load_processor(name, config, module="appliance.audio.no_such_binding")

    caplog.set_level("WARNING")
    call = await run_call(4.0, room=echo_room(), loader=broken)
    status = call.status["audio_processing"]
    assert status["mode"] == "webrtc" and status["active"] is False
    assert "appliance.audio.no_such_binding" in status["error"] and "not available" in status["error"]
    warnings = [r for r in caplog.records if "without echo cancellation" in r.getMessage()]
    assert len(warnings) == 1
    t0 = call.start()
    assert db(call.received_energy(t0 + 1.5, t0 + 3.5)) > 50  # the call went on: the far end hears the (echo) microphone


def contiguous(items: list[tuple[np.ndarray, float, np.ndarray]]) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """The live frames up to the first gap in their capture times."""
    span = items[:1]
    for item in items[1:]:
        if abs(item[1] - span[-1][1] - 0.01) > 1e-6:
            break
        span.append(item)
    return span


def stamps_match_the_room(call: Call) -> float:
    """Share of the speaker's non-silent frames the room played in the slot the mixer stamped."""
    assert call.room is not None and call.room.t0 is not None
    played = {slot: p for slot, _, p, _, _ in call.truth}
    loud = [(when, mix) for when, mix in call.mixed if mix.any()]
    hits = sum(np.array_equal(played.get(round((when - call.room.t0) / 0.01), np.zeros(0)), mix) for when, mix in loud)
    return hits / max(1, len(loud))


@pytest.mark.parametrize("where", ["inline", "thread"])
async def test_the_live_chain_and_wallmesh_audio_process_agree_bit_for_bit(ice, tmp_path, monkeypatch, where):
    # either path, forced: which one the budget picks depends on the machine (and its load)
    monkeypatch.setattr("appliance.mesh.microphone.INLINE_BUDGET_MS", 100.0 if where == "inline" else 0.0)
    room = SimulatedRoom("small", talker=True, noise=True, talk_s=3.0, pause_s=1.0, name="unit-a")
    call = await run_call(6.0, room=room, audio={"device_delay_ms": 60})
    chain = call.processing
    print(f"chain {chain.budget.ms:.3f} ms a frame timed on the loop, {chain.cpu_ms_per_frame:.3f} ms overall; "
          f"speaker glitches at slots {room.glitches}; stamps match the room for {100 * stamps_match_the_room(call):.1f}%")
    assert chain.inline is (where == "inline")
    # the mixer's play-out stamps are when the room really played each frame (the reference is the truth)
    assert stamps_match_the_room(call) > 0.9
    span = contiguous(call.live)
    assert len(span) >= 400, f"only {len(span)} contiguous frames"
    reference = call.reference()
    mic = np.concatenate([m for m, _, _ in span])
    far = np.concatenate([reference.read(when, FRAME) for _, when, _ in span])  # what played as each frame was captured
    assert not reference.read(span[0][1] - 0.04, 4 * FRAME).any()  # silence before: offline starts from silence too
    assert far.std() > 1000, "the far end's speech must have played in the room"
    truth = {when: m for _, when, _, m, _ in call.truth}
    assert all(np.array_equal(truth[when], m) for m, when, _ in span)  # the chain got the microphone as captured
    speech.write_wav(tmp_path / "far.wav", far)
    speech.write_wav(tmp_path / "mic.wav", mic)
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "appliance.cli", "audio", "process", "--far", str(tmp_path / "far.wav"),
         "--mic", str(tmp_path / "mic.wav"), "--out", str(tmp_path / "out.wav"), "--delay-ms", "60"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    offline, _ = speech.read_wav(tmp_path / "out.wav")
    live = np.concatenate([out for _, _, out in span])
    offline = speech.to_int16(offline)
    assert len(offline) == len(live)
    assert db(_energy([mic.astype(np.int32) - live]) / _energy([mic])) > -10  # the chain changed it (echo removed) ...
    same = offline == live
    assert same.all(), f"first difference at sample {int(np.argmin(same))} of {len(live)}"  # ... the same work


async def test_mute_closes_the_microphone_and_unmute_restarts_the_canceller(ice):
    from appliance.audio.chain import CaptureChain

    room = SimulatedRoom("small", talker=True, noise=True, talk_s=3.0, pause_s=1.0, name="unit-a")
    seen: dict[str, object] = {}

    async def during(call: Call) -> None:
        await asyncio.sleep(3.0)
        call.media.set_muted(True)
        await asyncio.sleep(0.3)
        seen["mic_open_while_muted"] = call.media.mic.started
        seen["frames_at_mute"] = len(call.live)
        await asyncio.sleep(0.7)
        seen["frames_while_muted"] = len(call.live) - seen["frames_at_mute"]
        call.media.set_muted(False)
        await asyncio.sleep(3.0)

    call = await run_call(0, room=room, during=during)
    assert seen["mic_open_while_muted"] is False  # the device itself was released
    assert seen["frames_while_muted"] == 0
    assert call.processing.resets == 1
    times = [when for _, when, _ in call.live]
    gap = int(np.argmax(np.diff(times) > 0.05)) + 1
    before, after = call.live[:gap], call.live[gap:]
    assert len(after) > 200 and times[gap] - times[gap - 1] > 0.9

    def offline(items) -> np.ndarray:
        chain = CaptureChain(load_processor("webrtc"), call.reference())
        return np.concatenate([chain.process(mic, when) for mic, when, _ in items])

    # after the unmute the live output is what a fresh canceller makes of those frames ...
    n = 100 * FRAME  # the first second
    live_after = np.concatenate([out for _, _, out in after])[:n]
    assert np.array_equal(offline(after)[:n], live_after)
    # ... and a canceller that had kept its state from before the mute would have answered differently
    stale = offline(before + after)[len(before) * FRAME :][:n]
    assert not np.array_equal(stale, live_after)
