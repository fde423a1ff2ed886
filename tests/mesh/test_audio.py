"""Audio: one microphone for all peers, mute at the source, the mixer and its echo reference."""

from __future__ import annotations

import asyncio
import contextlib
import time

import numpy as np
import pytest

from appliance.capture.audioformat import AUDIO_RATE, AUDIO_SAMPLES, frame_samples
from appliance.capture.synthetic import NullAudioSink, SyntheticAudioSource
from appliance.mesh.audio import AudioMixer, EchoReference, SharedAudio, _Remote


@contextlib.asynccontextmanager
async def running_mixer(buffer_ms: int = 60):
    sink = NullAudioSink(buffer_ms=buffer_ms)
    mixer = AudioMixer(sink)
    await mixer.start()
    try:
        yield sink, mixer
    finally:
        await mixer.close()


def _peak_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float32) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / AUDIO_RATE)[int(np.argmax(spectrum))])


async def test_mute_closes_the_microphone_and_sends_only_silence():
    mic = SyntheticAudioSource(sender=1, amplitude=0.5)
    shared = SharedAudio(mic, encode_once=False)  # raw frames, to look at the samples
    await shared.start()
    a, b = shared.track(), shared.track()
    try:
        live = [frame_samples(await asyncio.wait_for(a.recv(), 1)) for _ in range(20)]
        await asyncio.wait_for(b.recv(), 1)
        assert max(np.abs(s).max() for s in live) > 1000
        assert mic.started
        shared.set_muted(True)
        await asyncio.sleep(0.05)
        while a._queue:  # frames captured before the mute may already be queued
            a._queue.popleft()
        reads_before = mic.frames_read
        muted = [await asyncio.wait_for(a.recv(), 1) for _ in range(20)]
        assert all(not frame_samples(f).any() for f in muted)
        assert not mic.started and mic.frames_read == reads_before  # the device itself is closed
        assert shared.level == 0.0
        pts = [f.pts for f in muted]
        assert pts == list(range(pts[0], pts[0] + 20 * AUDIO_SAMPLES, AUDIO_SAMPLES))
        shared.set_muted(False)
        await asyncio.sleep(0.05)
        back = [frame_samples(await asyncio.wait_for(a.recv(), 1)) for _ in range(20)]
        assert mic.started and max(np.abs(s).max() for s in back) > 1000
    finally:
        await shared.close()
        await shared.close()
    assert not mic.started


async def test_mixer_mixes_peers_reports_levels_and_keeps_an_aligned_reference():
    sources = {"alice": SyntheticAudioSource(sender=0, amplitude=0.2), "bob": SyntheticAudioSource(sender=4, amplitude=0.2)}
    shared = {peer: SharedAudio(src) for peer, src in sources.items()}
    sink = NullAudioSink(buffer_ms=60)
    mixer = AudioMixer(sink)
    await mixer.start()
    for peer, audio in shared.items():
        await audio.start()
        mixer.add(peer, audio.track())
    heard = []
    mixer.on_mix(lambda samples, t: heard.append((t, samples.copy())))
    try:
        await asyncio.sleep(1.0)
        # the synthetic voices pause 0.4 s in every 1.6 s: wait (capped) for both to be talking
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not all(level > 0.01 for level in mixer.levels().values()):
            await asyncio.sleep(0.02)
        levels = mixer.levels()
        assert set(levels) == {"alice", "bob"} and all(level > 0.01 for level in levels.values())
        mix = np.concatenate([s for _, s in heard[-40:]])
        spectrum = np.abs(np.fft.rfft(mix.astype(np.float32)))
        freqs = np.fft.rfftfreq(len(mix), 1 / AUDIO_RATE)
        for src in sources.values():
            near = spectrum[np.abs(freqs - src.frequency) < 15].max()
            assert near > 20 * np.median(spectrum)  # both voices are in the mix
        # the reference is exactly what the speaker was given, stamped with when it plays
        played = [p[:, 0] for p in list(sink.played)[-10:]]
        sent = [samples for _, samples in heard]
        starts = [i for i in range(len(sent) - 9) if np.array_equal(sent[i], played[0])]
        assert any(all(np.array_equal(sent[i + k], played[k]) for k in range(10)) for i in starts)
        t_last, last = mixer.reference.latest()
        assert np.array_equal(last, heard[-1][1]) and t_last == heard[-1][0]
        assert time.monotonic() - 0.5 < t_last < time.monotonic() + 0.2
        window = mixer.reference.read(heard[-5][0], 3 * AUDIO_SAMPLES)
        assert np.array_equal(window, np.concatenate([heard[-5][1], heard[-4][1], heard[-3][1]]))
        # a muted peer goes quiet; a removed one is gone
        shared["bob"].set_muted(True)
        await asyncio.sleep(0.8)
        alice, bob = [], []
        for _ in range(34):  # one whole talk-and-pause cycle of the synthetic voices
            alice.append(mixer.levels()["alice"])
            bob.append(mixer.levels()["bob"])
            await asyncio.sleep(0.05)
        assert max(bob) < 0.001 < max(alice)
        mixer.remove("bob")
        assert mixer.peers == ["alice"]
        assert sink.frames_played > 50 and sink.delay <= 0.07
    finally:
        await mixer.close()
        for audio in shared.values():
            await audio.close()


async def hears_tone(mixer: AudioMixer, peer: str, mic: SyntheticAudioSource) -> None:
    """Wait until ``peer`` is heard, then check the last second of the mix is ``mic``'s tone."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and mixer.levels().get(peer, 0) < 0.02:
        await asyncio.sleep(0.05)
    assert mixer.levels()[peer] >= 0.02
    await asyncio.sleep(1.0)
    mix = mixer.reference.read(time.monotonic() - 1.0, AUDIO_RATE)
    assert abs(_peak_hz(mix) - mic.frequency) < 10


@pytest.fixture
async def tone_link(new_pc):
    """A synthetic microphone shared onto peer connection ``tx``; ``rx`` and a mixer to hear it."""
    mic = SyntheticAudioSource(sender=3, amplitude=0.3)
    shared = SharedAudio(mic)
    await shared.start()
    mixer = AudioMixer(NullAudioSink())
    await mixer.start()
    tx, rx = new_pc(), new_pc()
    tx.addTrack(shared.track())
    yield mic, mixer, tx, rx
    await mixer.close()
    await shared.close()


async def test_audio_crosses_real_peer_connections_as_opus(tone_link, connect_pair):
    mic, mixer, tx, rx = tone_link
    rx.on("track", lambda track: mixer.add("far", track) if track.kind == "audio" else None)
    await connect_pair(tx, rx)
    assert "opus" in tx.localDescription.sdp.lower()
    await hears_tone(mixer, "far", mic)


async def test_starting_muted_releases_a_microphone_opened_beforehand():
    mic = SyntheticAudioSource(sender=1)
    await mic.start()  # the daemon opens devices early so absent ones fail at start-up
    shared = SharedAudio(mic, muted=True, encode_once=False)
    await shared.start()
    track = shared.track()
    try:
        frames = [await asyncio.wait_for(track.recv(), 1) for _ in range(5)]
        assert not mic.started and mic.frames_read == 0
        assert all(not frame_samples(f).any() for f in frames)
    finally:
        await shared.close()


async def test_opus_is_encoded_once_for_every_peer():
    import av

    mic = SyntheticAudioSource(sender=5, amplitude=0.3)
    shared = SharedAudio(mic)
    await shared.start()
    tracks = [shared.track() for _ in range(3)]
    try:
        async def take(track):
            return [await asyncio.wait_for(track.recv(), 1) for _ in range(25)]

        packets = await asyncio.gather(*(take(t) for t in tracks))
        assert all(isinstance(p, av.Packet) for p in packets[0])
        assert all(a is b is c for a, b, c in zip(*packets))  # the very same packets for each peer
        pts = [p.pts for p in packets[0]]
        assert pts == list(range(pts[0], pts[0] + 25 * 960, 960))  # 20 ms each, on the 48 kHz clock
        decoder = av.CodecContext.create("opus", "r")
        decoder.sample_rate, decoder.layout = AUDIO_RATE, "stereo"
        decoded = np.concatenate([f.to_ndarray()[0] for p in packets[0] for f in decoder.decode(p)])
        assert abs(_peak_hz((decoded[4800:] * 32767).astype(np.int16)) - mic.frequency) < 15
        for t in tracks[1:]:
            t.stop()
        shared.set_muted(True)
        after = [await asyncio.wait_for(tracks[0].recv(), 1) for _ in range(30)]  # 600 ms, decoded in order
        tail = np.concatenate([f.to_ndarray()[0] for p in after for f in decoder.decode(p)])[-AUDIO_RATE // 4 :]
        level = np.abs(tail).max()
        assert level < 0.01 and not mic.started
    finally:
        await shared.close()


def test_echo_reference_read_places_frames_by_play_time():
    ref = EchoReference()
    t0 = 100.0
    a = np.full(AUDIO_SAMPLES, 1, np.int16)
    b = np.full(AUDIO_SAMPLES, 2, np.int16)
    ref.add(a, t0)
    ref.add(b, t0 + 0.02)  # a 10 ms gap (an underrun) between them
    out = ref.read(t0 + 0.005, 3 * AUDIO_SAMPLES)
    half = AUDIO_SAMPLES // 2
    assert (out[:half] == 1).all()
    assert (out[half : half + AUDIO_SAMPLES] == 0).all()
    assert (out[half + AUDIO_SAMPLES : half + 2 * AUDIO_SAMPLES] == 2).all()
    assert (out[half + 2 * AUDIO_SAMPLES :] == 0).all()
    assert not ref.read(t0 - 1, 10).any()


async def test_a_failing_microphone_degrades_to_silence():
    from appliance.capture.alsa import AlsaMicrophone

    pytest.importorskip("alsaaudio", reason="pyalsaaudio is installed by scripts/setup (extra 'alsa')")
    shared = SharedAudio(AlsaMicrophone("hw:9,0"), encode_once=False)
    await shared.start()
    track = shared.track()
    try:
        frames = [await asyncio.wait_for(track.recv(), 1) for _ in range(5)]
        assert shared.error is not None and "audio.input_device" in shared.error
        assert all(not frame_samples(f).any() for f in frames)
    finally:
        await shared.close()


async def test_mixer_and_shared_audio_stay_flat_over_two_hundred_peers():
    shared = SharedAudio(SyntheticAudioSource(sender=2))
    await shared.start()
    mixer = AudioMixer(NullAudioSink())
    await mixer.start()
    try:
        baseline = len(asyncio.all_tasks())
        for i in range(200):
            track = shared.track()
            mixer.add(f"peer-{i}", track)
            await asyncio.sleep(0)
            mixer.remove(f"peer-{i}")
            track.stop()
        await asyncio.sleep(0.05)
        assert mixer.peers == [] and not shared._tracks
        assert len(asyncio.all_tasks()) <= baseline
    finally:
        await mixer.close()
        await shared.close()


async def test_mixer_survives_garbage_from_a_peer_and_a_broken_listener():
    import av
    from aiortc import MediaStreamTrack

    class HostilePeerTrack(MediaStreamTrack):
        """A remote sender's audio: a corrupt and an empty Opus packet first, then real ones."""

        kind = "audio"

        def __init__(self, real):
            super().__init__()
            self._real = real
            self._junk = [av.Packet(b"\xff" * 5), av.Packet(b"")]

        async def recv(self):
            return self._junk.pop(0) if self._junk else await self._real.recv()

    shared = SharedAudio(SyntheticAudioSource(sender=6, amplitude=0.3))
    await shared.start()
    mixer = AudioMixer(NullAudioSink())
    await mixer.start()
    heard = []

    def broken(samples, t):
        raise RuntimeError("echo canceller bug")

    mixer.on_mix(broken)
    mixer.on_mix(lambda samples, t: heard.append(samples))
    mixer.add("hostile", HostilePeerTrack(shared.track()))
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and mixer.levels().get("hostile", 0) < 0.02:
            await asyncio.sleep(0.05)
        assert mixer.levels()["hostile"] >= 0.02  # the real audio after the junk is played
        assert mixer._remotes["hostile"].bad_packets == 2
        mixed = mixer.frames_mixed
        await asyncio.sleep(0.2)
        assert mixer.frames_mixed > mixed and len(heard) > 10  # the mixer outlived its broken listener
    finally:
        await mixer.close()
        await shared.close()
    assert all(t.done() for t in asyncio.all_tasks() if "audio-in" in t.get_name())


async def test_remote_opus_reaches_the_mixer_on_the_loop_without_a_decoder_thread(tone_link, connect_pair):
    from appliance.mesh.aiortc_hooks import install_inline_audio
    from appliance.mesh.receive import AudioReceiver

    mic, mixer, tx, rx = tone_link
    inlet = install_inline_audio(rx.addTransceiver("audio", direction="recvonly").receiver)  # before negotiation
    assert inlet is not None
    receivers = []

    def on_track(track):
        receivers.append(AudioReceiver(track, label="far", inlet=inlet))
        mixer.add("far", receivers[0].track)

    rx.on("track", on_track)
    try:
        await connect_pair(rx, tx)
        await hears_tone(mixer, "far", mic)
        rx_audio = receivers[0]
        assert rx_audio.inlet.frames > 40 and rx_audio.decoded_frames == 0  # all of it came inline
        assert rx_audio.frames == rx_audio.inlet.frames and rx_audio.last_frame_at is not None
        mixer.remove("far")  # the inlet lets go of the mixer: payloads are counted, not played
        n = rx_audio.inlet.frames
        await asyncio.sleep(0.2)
        assert rx_audio.inlet.frames > n and "far" not in mixer.levels()
    finally:
        for r in receivers:
            await r.close()


def test_audio_pass_through_keeps_order_drops_stragglers_and_follows_a_restart():
    from aiortc.rtp import RtpPacket

    from appliance.mesh.aiortc_hooks import AudioPassThrough

    def packet(seq):
        p = RtpPacket(payload_type=111, sequence_number=seq, timestamp=seq * 960)
        p._data = bytes([seq % 256])
        return p

    buf = AudioPassThrough()
    out = [buf.add(packet(s))[1] for s in (65534, 65535, 0, 2, 1, 2, 3)]
    got = [None if f is None else f.data[0] for f in out]
    # every packet newer than the last passes at once (across the wrap); the late 1 and the repeated 2 do not
    assert got == [254, 255, 0, 2, None, None, 3]
    assert buf.late == 2
    assert buf.add(packet(40_000))[1] is not None  # a jump ahead is just newer
    assert buf.add(packet(1000))[1] is not None  # far behind: the sender restarted, follow it
    assert buf.add(packet(1001))[1].timestamp == 1001 * 960


def test_audio_inlet_passes_the_end_marker_and_other_codecs_to_aiortcs_thread():
    from aiortc.jitterbuffer import JitterFrame
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    from appliance.mesh.aiortc_hooks import AudioInlet

    opus = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
    pcmu = RTCRtpCodecParameters(mimeType="audio/PCMU", clockRate=8000, payloadType=0)
    inlet = AudioInlet()
    got = []
    inlet.put((opus, JitterFrame(b"a", 0)))  # nobody connected: counted, dropped
    inlet.connect(got.append)
    inlet.put((opus, JitterFrame(b"b", 960)))
    inlet.put((pcmu, JitterFrame(b"c", 160)))
    inlet.put(None)
    assert got == [b"b"] and inlet.frames == 2

    def broken(payload):
        raise RuntimeError("mixer bug")

    inlet.connect(broken)  # inside aiortc's RTP handler: an escaping error would end the link
    inlet.put((opus, JitterFrame(b"d", 1920)))
    assert inlet.errors == 1 and inlet.frames == 3
    assert inlet.get_nowait()[1].data == b"c" and inlet.get_nowait() is None


def test_bigger_meshes_send_longer_audio_packets():
    from appliance.mesh.audio import PACKET_MS, auto_packet_ms

    chosen = [auto_packet_ms(n) for n in range(0, 9)]
    assert chosen == [20, 20, 20, 20, 40, 40, 40, 40, 40]
    assert all(ms in PACKET_MS for ms in chosen)
    # what it means for a unit with five peers: half the audio packets of 20 ms ones, each way
    assert 5 * 1000 / auto_packet_ms(5) == 125
    # from 40 ms it takes a room of three to go back: no flapping around four participants
    assert [auto_packet_ms(n, 40) for n in (4, 3, 2)] == [40, 40, 20]


async def test_packet_length_changes_mid_call_without_a_gap_on_the_clock():
    mic = SyntheticAudioSource(sender=4, amplitude=0.3)
    shared = SharedAudio(mic)
    await shared.start()
    track = shared.track()
    remote = _Remote(AUDIO_RATE * 80 // 1000, AUDIO_RATE * 30 // 1000)
    try:
        first = [await asyncio.wait_for(track.recv(), 1) for _ in range(5)]
        shared.set_packet_ms(60)
        assert shared.packet_ms == 60
        later = [await asyncio.wait_for(track.recv(), 1) for _ in range(8)]
        packets = first + later
        pts = [p.pts for p in packets]
        durations = [b - a for a, b in zip(pts, pts[1:])]
        assert durations[:4] == [960] * 4 and durations[-5:] == [2880] * 5  # 20 ms, then 60 ms
        assert all(d in (960, 2880) for d in durations)  # no audio skipped or repeated at the switch
        for p in packets:
            remote.feed_opus(bytes(p))
        assert remote.bad_packets == 0 and remote.packet == 2880
        # a 60 ms packet must fit on top of what the buffer holds before it starts playing
        assert remote.prebuffer >= 2880 and remote.max_samples >= remote.prebuffer + 2880
    finally:
        await shared.close()


async def test_the_unit_picks_audio_packets_by_mesh_size_unless_configured():
    from appliance.unit import config
    from appliance.unit.media import UnitMedia

    # (participants, packet ms) in the order the room changes; 4 participants = 3 remote peers
    for setting, sizes in ((0, [(2, 20), (4, 20), (5, 40), (6, 40), (4, 40), (3, 20)]), (60, [(2, 60), (6, 60)])):
        conf = config.cfg.build(
            config.UnitConfig,
            {"video": {"width": 320, "height": 240}, "quality": {"adaptive": False}, "audio": {"packet_ms": setting}},
            "<test>",
        )
        media = UnitMedia(conf, sender=1, name="unit")
        await media.start()
        try:
            for participants, ms in sizes:
                media.apply_quality(participants, None)
                assert media.status()["audio_packet_ms"] == ms, (setting, participants)
        finally:
            await media.close()


async def test_volume_scales_what_the_speaker_plays_and_the_echo_reference_alike():
    source = SyntheticAudioSource(sender=2, amplitude=0.4)
    shared = SharedAudio(source, encode_once=False)
    sink = NullAudioSink(buffer_ms=60, keep=2000)
    mixer = AudioMixer(sink)
    mixes: list[np.ndarray] = []
    mixer.on_mix(lambda samples, t: mixes.append(samples.copy()))
    await mixer.start()
    await shared.start()
    mixer.add("far", shared.track())
    try:
        await asyncio.sleep(1.0)
        mixer.set_volume(0.25)
        start = len(mixes)
        await asyncio.sleep(1.0)
        quiet = [m for m in mixes[start + 1 :] if m.any()]  # the limiter's 1 ms look-ahead still holds loud audio in the first
        loud = [m for m in mixes[:start] if m.any()]
        assert quiet and loud
        ratio = max(np.abs(m).max() for m in quiet) / max(np.abs(m).max() for m in loud)
        assert 0.2 < ratio < 0.3
        latest = mixer.reference.latest()
        assert latest is not None and np.array_equal(latest[1], mixes[-1])  # the reference is the scaled mix
        played = list(sink.played)
        assert any(np.array_equal(p[:, 0], quiet[-3]) for p in played[-10:])  # ... and so is what the speaker played
    finally:
        await mixer.close()
        await shared.close()


async def test_a_room_speaker_and_microphone_share_one_room_and_the_microphone_hears_the_echo():
    from appliance.audio.room import ROOMS
    from appliance.capture import registry
    from appliance.capture.audioformat import audio_frame
    from appliance.capture.roomsim import RoomSource, RoomSpeaker, SimulatedRoom
    from appliance.unit import config as unit_config

    audio = unit_config.load(None, {"audio": {"source": "room", "sink": "room", "room": "small", "talker": False}}).audio
    room = SimulatedRoom("small", talker=False, noise=False)
    mic = registry.open_audio_source(audio, room=room)
    speaker = registry.open_audio_sink(audio, room=room)
    assert isinstance(mic, RoomSource) and isinstance(speaker, RoomSpeaker) and mic.room is speaker.room is room
    truth = []
    room.listen(lambda slot, when, played, heard, near: truth.append((slot, when, played.copy(), heard.copy())))
    await speaker.start()
    await mic.start()
    try:
        click = np.zeros(AUDIO_SAMPLES, np.int16)
        click[0] = 20000
        await asyncio.sleep(0.05)
        play_at = time.monotonic() + speaker.delay  # when a frame written now starts to play
        speaker.write(audio_frame(click))
        frames = []
        for _ in range(20):
            frame = await asyncio.wait_for(mic.read(), 1)
            frames.append((mic.capture_time, frame_samples(frame)[:, 0]))
        loudest = max(frames, key=lambda f: np.abs(f[1]).max())
        echo_at = loudest[0] + int(np.argmax(np.abs(loudest[1]))) / AUDIO_RATE
        assert abs((echo_at - play_at) - ROOMS['small'].delay_ms / 1000) < 0.002  # the room's 40 ms, on one clock
        assert any(np.array_equal(p, click) for _, _, p, _ in truth)
    finally:
        await mic.close()
        await speaker.close()
    assert room._thread is None  # the last user closed the room


async def test_the_microphone_chain_moves_to_a_thread_keeps_order_and_resets_there():
    from appliance.audio.chain import CaptureChain
    from appliance.audio.processing import Passthrough
    from appliance.mesh.microphone import MicrophoneChain

    class Counting(Passthrough):
        resets = 0

        def reset(self) -> None:
            self.resets += 1

    processor = Counting()
    chain = MicrophoneChain(CaptureChain(processor, EchoReference()), budget_ms=0.0)  # "too slow": off the loop
    outs = []
    for k in range(40):
        frame = np.full(AUDIO_SAMPLES, k, np.int16)
        out = chain.process(frame, k * 0.01)
        if out is None:
            out = await chain.take(1.0)
        outs.append(int(out[0]))
        if k == 20:
            chain.reset()
    assert not chain.inline and outs == list(range(40)) and chain.dropped == 0
    assert processor.resets == 1 and chain.resets == 1
    chain.close()


def _play(remote: _Remote, ticks: int, *, packet: int = 960, every: int = 2, signal=None, start: int = 0):
    """Drive a jitter buffer like a link and a mixer: a ``packet``-sample packet arrives every
    ``every`` 10 ms ticks, one frame is taken each tick; returns what was played and the
    spare audio left after each take."""
    played, spare = [], []
    at = start
    for tick in range(ticks):
        if tick % every == 0:
            chunk = signal[at : at + packet] if signal is not None else np.full(packet, 1000, dtype=np.int16)
            at += packet
            remote.feed_samples(chunk)
        played.append(remote.take())
        spare.append(len(remote.buffer))
    return np.concatenate(played), spare, at


def test_the_jitter_buffer_sheds_what_a_steady_link_never_needs():
    remote = _Remote(AUDIO_RATE * 80 // 1000, AUDIO_RATE * 30 // 1000)
    _, spare, _ = _play(remote, 300)
    # it starts with a packet plus a margin in hand: 20 ms left over at the lowest
    assert min(spare[5:50]) == 960
    # a steady link then costs three 5 ms cuts, down to the cushion, and never an underrun
    assert remote.cut == 3 and remote.underruns == 0
    assert min(spare[-100:]) == remote.CUSHION and max(spare[-100:]) == remote.CUSHION + 480
    _, spare, _ = _play(remote, 500)
    assert remote.cut == 3 and remote.underruns == 0


def test_a_fast_sender_cannot_build_up_the_delay():
    remote = _Remote(AUDIO_RATE * 80 // 1000, AUDIO_RATE * 30 // 1000)
    # 2 % fast: an extra 10 ms every 50 packets; before, that filled the buffer to its bound
    for tick in range(5000):
        if tick % 2 == 0:
            remote.feed_samples(np.full(960 + (480 if tick % 100 == 0 else 0), 1000, dtype=np.int16))
        remote.take()
    assert remote.dropped == 0 and remote.underruns == 0
    assert remote.cut >= 90  # 5 ms a cut
    assert len(remote.buffer) <= 960 + 480 + remote.CUSHION


def test_a_cut_is_a_cross_fade_not_a_click():
    t = np.arange(AUDIO_RATE * 3)
    tone = (8000 * np.sin(2 * np.pi * 220 * t / AUDIO_RATE)).astype(np.int16)
    remote = _Remote(AUDIO_RATE * 80 // 1000, AUDIO_RATE * 30 // 1000)
    played, _, _ = _play(remote, 250, signal=tone)
    assert remote.cut == 3
    steps = np.abs(np.diff(played.astype(np.int32)))
    smooth = int(np.abs(np.diff(tone.astype(np.int32))).max())
    assert steps[AUDIO_SAMPLES * 3 :].max() <= 1.5 * smooth  # no jump at the cut


def test_underruns_widen_the_cushion_and_a_calm_link_narrows_it():
    remote = _Remote(AUDIO_RATE * 80 // 1000, AUDIO_RATE * 30 // 1000)
    _play(remote, 100)
    for _ in range(3):  # three gaps of 40 ms: the sender's packets stall
        for _ in range(4):
            remote.take()
        _play(remote, 20)
    assert remote.underruns == 3 and remote.cushion == 4 * remote.CUSHION
    _play(remote, remote.CALM * 3 + 10)
    assert remote.cushion == remote.CUSHION


def test_a_burst_after_a_stall_is_shed_faster_than_a_slow_drift():
    remote = _Remote(AUDIO_RATE * 80 // 1000, AUDIO_RATE * 30 // 1000)
    _play(remote, 200)
    cut = remote.cut
    remote.feed_samples(np.full(2400, 1000, dtype=np.int16))  # 50 ms arrive at once
    _, spare, _ = _play(remote, 60)  # 0.6 s
    assert remote.dropped == 0
    assert remote.cut - cut >= 3  # three cuts where one window allows one
    _, spare, _ = _play(remote, 250)
    assert max(spare[-10:]) <= remote.CUSHION + 480 and remote.underruns == 0  # back where the steady link had it


async def test_a_stall_that_ran_the_speaker_dry_does_not_leave_its_length_in_the_speaker_buffer():
    async with running_mixer(buffer_ms=200) as (sink, _mixer):
        await asyncio.sleep(0.3)
        before = sink.delay
        for _ in range(3):
            time.sleep(0.08)  # the loop held for 80 ms: the speaker plays out what it had, then nothing
            await asyncio.sleep(0.2)
        # catching up on the missed frames afterwards would only queue them behind the gap
        assert sink.delay <= before + 0.02


async def _waits_in_speaker(mixer: AudioMixer, seconds: float) -> list[float]:
    """How long each frame mixed within ``seconds`` waits in the speaker before it plays, by
    the speaker's own clock (just after the write, a frame written then would wait a period more),
    and that the mixer's stamps say the same."""
    waits: list[float] = []
    misstamped: list[float] = []

    def heard(samples: np.ndarray, play_time: float) -> None:
        wait = mixer.sink.delay - 0.01
        waits.append(wait)
        if abs(play_time - time.monotonic() - wait) >= 0.002:
            misstamped.append(play_time - time.monotonic() - wait)

    mixer.on_mix(heard)
    await asyncio.sleep(seconds)
    # asserted here, not in the listener: the mixer drops a listener that raises
    assert not misstamped, f"stamps off from when the frames really play: {misstamped[:5]}"
    return waits


async def test_the_mixer_writes_just_before_the_speaker_takes_a_frame():
    from appliance.mesh.audio import WRITE_LEAD

    async with running_mixer() as (_sink, mixer):
        waits = await _waits_in_speaker(mixer, 1.0)
    # not up to a whole period behind the speaker's own take (the mixer's tick used to fall
    # right after it, so every frame waited ~10 ms in the speaker for nothing)
    assert len(waits) > 50 and float(np.median(waits)) <= WRITE_LEAD + 0.002


async def test_a_write_that_missed_its_take_does_not_stay_as_delay():
    from appliance.mesh.audio import SHED_WINDOW, WRITE_LEAD

    async with running_mixer() as (sink, mixer):
        await asyncio.sleep(0.3)
        for _ in range(3):
            await asyncio.sleep(0.1)
            # hold the loop from just before the mixer's write until just past the speaker's take:
            # the write is late, by less than a period
            await asyncio.sleep(max(0.0, sink.next_take - WRITE_LEAD - 0.002 - time.monotonic()))
            time.sleep(WRITE_LEAD + 0.004)
        # a shed needs a window of punctual ticks; on a loaded machine other stalls can use
        # windows up, so the frames held are looked at window by window, a few windows at most
        for _ in range(5):
            waits = await _waits_in_speaker(mixer, SHED_WINDOW * 0.01 + 0.5)
            if mixer.speaker_frames_shed >= 1 and float(np.median(waits[-20:])) <= WRITE_LEAD + 0.002:
                break
    assert mixer.speaker_frames_shed >= 1
    assert float(np.median(waits[-20:])) <= WRITE_LEAD + 0.002
