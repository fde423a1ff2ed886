"""Choosing sources by config type; absent devices fail naming the device and the config key."""

from __future__ import annotations

import asyncio
import fractions

import av
import numpy as np
import pytest

from appliance.capture.audioformat import AUDIO_SAMPLES, audio_frame
from appliance.capture.registry import open_audio_sink, open_audio_source, open_video_source
from appliance.capture.pattern import PatternSource, read_stamp
from appliance.capture.settings import AudioSettings, VideoSettings
from appliance.config import loads
from appliance.errors import ConfigError, DeviceError


def test_settings_validate_like_every_config_section():
    assert VideoSettings().type == "pattern"
    with pytest.raises(ConfigError, match="type"):
        loads(VideoSettings, 'type = "webcam"')
    assert loads(AudioSettings, 'sink = "alsa"\noutput_device = "hw:1,0"').output_device == "hw:1,0"


async def test_pattern_is_the_default_video_source():
    source = open_video_source(None, sender=12)
    assert isinstance(source, PatternSource)
    await source.start()
    frame = await source.read()
    await source.close()
    assert read_stamp(frame).sender == 12


async def test_absent_v4l2_camera_names_device_and_key():
    source = open_video_source(VideoSettings(type="v4l2", device="/dev/video77"))
    with pytest.raises(DeviceError) as err:
        await source.start()
    assert err.value.device == "/dev/video77" and err.value.key == "video.device"
    assert "/dev/video77" in str(err.value) and "video.device" in str(err.value)


async def test_unreadable_video_file_names_the_key(tmp_path):
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(DeviceError, match="video.device"):
        await open_video_source(VideoSettings(type="file", device=str(bad))).start()


async def test_file_source_plays_a_real_clip_in_a_loop(tmp_path):
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        pattern = PatternSource(width=320, height=240)
        await pattern.start()
        for i in range(10):
            frame = await pattern.read()
            frame.pts, frame.time_base = i, fractions.Fraction(1, 30)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    source = open_video_source(VideoSettings(type="file", device=str(path)))
    await source.start()
    frames = [await asyncio.wait_for(source.read(), 5) for _ in range(15)]  # more than the clip: it loops
    await source.close()
    await source.close()
    assert all(f.format.name == "yuv420p" and (f.width, f.height) == (320, 240) for f in frames)
    assert sum(read_stamp(f) is not None for f in frames) >= 12
    assert [f.pts for f in frames] == sorted(f.pts for f in frames)


async def test_absent_alsa_devices_name_their_keys():
    mic = open_audio_source(AudioSettings(source="alsa", input_device="hw:9,0"))
    with pytest.raises(DeviceError) as err:
        await mic.start()
    assert err.value.key == "audio.input_device" and "hw:9,0" in str(err.value)
    speaker = open_audio_sink(AudioSettings(sink="alsa", output_device="hw:9,0"))
    with pytest.raises(DeviceError, match="audio.output_device"):
        await speaker.start()


async def test_synthetic_microphone_gives_paced_10ms_frames_and_restarts():
    mic = open_audio_source(None, sender=2)
    await mic.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    frames = [await mic.read() for _ in range(30)]
    elapsed = loop.time() - started
    await mic.close()
    await mic.start()
    again = await mic.read()
    await mic.close()
    assert 0.2 < elapsed < 2.0  # paced at 10 ms a frame (generous: the machine is shared)
    assert all(f.samples == AUDIO_SAMPLES and f.sample_rate == 48000 and f.format.name == "s16" for f in frames)
    assert [f.pts for f in frames] == [i * AUDIO_SAMPLES for i in range(30)]
    assert np.abs(frames[5].to_ndarray()).max() > 1000  # a tone, not silence
    assert again.pts == 30 * AUDIO_SAMPLES


def test_unknown_types_are_config_errors():
    class Odd:
        type = "webcam"
        source = "telepathy"
        sink = "bluetooth"

    with pytest.raises(ConfigError, match="video.type"):
        open_video_source(Odd())
    with pytest.raises(ConfigError, match="audio.source"):
        open_audio_source(Odd())
    with pytest.raises(ConfigError, match="audio.sink"):
        open_audio_sink(Odd())


@pytest.mark.hardware
async def test_real_webcam_delivers_frames():
    """On a machine with a USB webcam at /dev/video0."""
    source = open_video_source(VideoSettings(type="v4l2", device="/dev/video0", input_format="mjpeg"))
    await source.start()
    try:
        frames = [await asyncio.wait_for(source.read(), 5) for _ in range(10)]
        assert all(f.format.name == "yuv420p" for f in frames)
    finally:
        await source.close()


async def test_null_speaker_plays_one_frame_every_10ms_from_a_bounded_buffer(monkeypatch):
    from appliance.capture import synthetic

    clock = [1000.0]
    monkeypatch.setattr(synthetic.time, "monotonic", lambda: clock[0])
    sink = synthetic.NullAudioSink(buffer_ms=60)
    await sink.start()

    def frame(value):
        return audio_frame(np.full(AUDIO_SAMPLES, value, np.int16))

    for v in (1, 2, 3):
        sink.write(frame(v))
    clock[0] += 0.025  # two periods: two frames played, one waiting
    # a frame written now plays after the waiting one, at the boundary 15 ms from now
    assert sink.frames_played == 2 and abs(sink.delay - 0.015) < 1e-9
    clock[0] += 0.1  # ten periods, one frame to play: the rest are gaps, not debt
    assert sink.frames_played == 3 and abs(sink.delay - 0.005) < 1e-9  # just the wait for the next boundary
    for v in range(10, 18):  # a burst beyond the 60 ms buffer drops the oldest
        sink.write(frame(v))
    assert sink.frames_dropped == 2 and abs(sink.delay - 0.065) < 1e-9
    clock[0] += 0.06
    assert [int(p[0, 0]) for p in sink.played] == [1, 2, 3, 12, 13, 14, 15, 16, 17]
