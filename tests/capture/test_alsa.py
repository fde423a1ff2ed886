"""ALSA microphone and speaker against ALSA's own null and file plugins."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

pytest.importorskip("alsaaudio", reason="pyalsaaudio is installed by scripts/setup (extra 'alsa')")

from appliance.capture.alsa import AlsaMicrophone, AlsaSpeaker  # noqa: E402
from appliance.capture.audioformat import AUDIO_SAMPLES, audio_frame  # noqa: E402
from appliance.errors import DeviceError  # noqa: E402


async def test_microphone_reads_paced_frames_from_the_null_device():
    mic = AlsaMicrophone("null")
    await mic.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    frames = [await asyncio.wait_for(mic.read(), 2) for _ in range(20)]
    elapsed = loop.time() - started
    await mic.close()
    await mic.close()
    assert all(f.samples == AUDIO_SAMPLES and f.sample_rate == 48000 for f in frames)
    assert 0.1 < elapsed < 2.0  # about 10 ms each, not as fast as the null device returns
    assert [f.pts for f in frames] == [i * AUDIO_SAMPLES for i in range(20)]
    assert not mic.started


async def test_a_microphone_that_goes_away_fails_read_instead_of_hanging_it():
    mic = AlsaMicrophone("null")
    await mic.start()
    await asyncio.wait_for(mic.read(), 2)
    mic._pcm.close()  # what an unplugged USB microphone looks like to the capture thread
    with pytest.raises(DeviceError) as err:
        for _ in range(100):  # frames already queued come first
            await asyncio.wait_for(mic.read(), 5)
    assert err.value.key == "audio.input_device" and "closed" in str(err.value)
    with pytest.raises(DeviceError):  # and it stays failed, never a silent hang
        await asyncio.wait_for(mic.read(), 5)
    await mic.close()
    assert not mic.started


async def test_speaker_writes_exactly_what_it_was_given(tmp_path):
    out = tmp_path / "speaker.raw"
    speaker = AlsaSpeaker(f"file:FILE={out},FORMAT=raw", buffer_ms=200)
    await speaker.start()
    rng = np.random.default_rng(1)
    sent = [rng.integers(-20000, 20000, AUDIO_SAMPLES, dtype=np.int16) for _ in range(10)]
    for samples in sent:
        speaker.write(audio_frame(samples))
    assert speaker.delay > 0
    for _ in range(100):
        if speaker.frames_played == 10:
            break
        await asyncio.sleep(0.02)
    await speaker.close()
    played = np.fromfile(out, dtype="<i2")
    joined = np.concatenate(sent)
    start = int(np.flatnonzero(played)[0])  # leading silence, if the thread ran before the first write
    assert np.array_equal(played[start : start + len(joined)], joined)


async def test_speaker_buffer_is_bounded_and_drops_the_oldest():
    speaker = AlsaSpeaker("null", buffer_ms=30)
    frames = [audio_frame(np.full(AUDIO_SAMPLES, i, np.int16)) for i in range(10)]
    for frame in frames:  # not started: nothing drains
        speaker.write(frame)
    assert speaker.frames_dropped == 7
    assert speaker.delay <= 0.05
    await speaker.close()


@pytest.mark.hardware
async def test_real_default_devices_capture_and_play():
    """On a unit: the configured default ALSA devices open, capture at 48 kHz and play."""
    mic, speaker = AlsaMicrophone("default"), AlsaSpeaker("default")
    await mic.start()
    await speaker.start()
    try:
        for _ in range(50):
            speaker.write(await asyncio.wait_for(mic.read(), 1))
        assert speaker.frames_dropped < 10
    finally:
        await mic.close()
        await speaker.close()
