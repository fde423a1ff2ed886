"""The adapter table: names resolve lazily to classes that implement their port."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from appliance.capture import base, registry
from appliance.capture.settings import AudioSettings, VideoSettings
from appliance.config import loads
from appliance.errors import ConfigError

TABLES = [
    (registry.VIDEO_SOURCES, (base.VideoSource, base.EncodedVideoSource)),
    (registry.AUDIO_SOURCES, (base.AudioSource,)),
    (registry.AUDIO_SINKS, (base.AudioSink,)),
]


@pytest.mark.parametrize(("table", "ports"), TABLES, ids=["video", "audio-source", "audio-sink"])
def test_every_registered_adapter_resolves_to_a_class_of_its_port(table, ports):
    for name, adapter in table.items():
        cls = adapter.load()
        assert isinstance(cls, type) and issubclass(cls, ports), (name, adapter.target)


def test_importing_the_registry_and_settings_loads_no_adapter():
    code = (
        "import json, sys; import appliance.capture.registry, appliance.capture.settings;"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('appliance.capture.') or m.split('.')[0] in"
        " ('av', 'alsaaudio', 'picamera2'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(done.stdout) == ["appliance.capture.registry", "appliance.capture.settings"]


def test_config_choices_are_the_registered_names():
    for name in registry.VIDEO_SOURCES:
        assert loads(VideoSettings, f'type = "{name}"').type == name
    for name in registry.AUDIO_SOURCES:
        assert loads(AudioSettings, f'source = "{name}"').source == name
    for name in registry.AUDIO_SINKS:
        assert loads(AudioSettings, f'sink = "{name}"').sink == name
    with pytest.raises(ConfigError, match="sink"):
        loads(AudioSettings, 'sink = "bluetooth"')


def test_unknown_names_say_the_key_and_what_is_allowed():
    class Odd:
        type = "webcam"
        source = "telepathy"
        sink = "bluetooth"

    with pytest.raises(ConfigError) as err:
        registry.open_video_source(Odd(), prefix="camera")
    assert err.value.key == "camera.type"
    assert "'webcam'" in str(err.value) and "allowed: pattern, v4l2, file, picamera" in str(err.value)
    with pytest.raises(ConfigError) as err:
        registry.open_audio_source(Odd())
    assert err.value.key == "audio.source" and "allowed: synthetic, alsa" in str(err.value)
    with pytest.raises(ConfigError) as err:
        registry.open_audio_sink(Odd())
    assert err.value.key == "audio.sink" and "allowed: null, alsa" in str(err.value)


def test_settings_become_the_chosen_adapters_constructor_arguments():
    camera = registry.open_video_source(VideoSettings(type="picamera", width=1280, height=720, fps=25, bitrate=1_500_000))
    assert type(camera).__name__ == "PiCameraSource"
    assert (camera.width, camera.height, camera.fps, camera.bitrate) == (1280, 720, 25, 1_500_000)
    webcam = registry.open_video_source(VideoSettings(type="v4l2", input_format="mjpeg"), prefix="cam")
    assert (webcam.kind, webcam.device, webcam.key) == ("v4l2", "/dev/video0", "cam.device")
    speaker = registry.open_audio_sink(AudioSettings(sink="alsa", output_device="hw:1,0", buffer_ms=40))
    assert (speaker.device, speaker.key, speaker._buffer.maxlen) == ("hw:1,0", "audio.output_device", 4)


def test_a_malformed_target_is_refused_plainly():
    with pytest.raises(ValueError, match="module:Class"):
        registry.resolve("appliance.capture.pattern.PatternSource")
    assert registry.resolve("appliance.capture.pattern:PatternSource").__name__ == "PatternSource"
