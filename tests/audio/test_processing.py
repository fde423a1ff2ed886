"""The processing port: bindings load by name, a missing one says so plainly."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from appliance.audio.processing import FRAME, Passthrough, ProcessingUnavailable, Processor, load_processor
from appliance.errors import WallmeshError


@pytest.mark.parametrize("name", ["webrtc", "livekit", "off"])
def test_each_binding_loads_and_processes_a_frame(name: str) -> None:
    proc = load_processor(name)
    assert isinstance(proc, Processor) and proc.name == name
    tone = (3000 * np.sin(np.arange(FRAME) * 2 * np.pi * 440 / 48000)).astype(np.int16)
    for _ in range(20):
        proc.process_reverse(np.zeros(FRAME, np.int16))
        out = proc.process_capture(tone)
    assert out.dtype == np.int16 and out.shape == (FRAME,)
    assert np.abs(out).max() > 100  # no reference playing: the tone is not cancelled
    proc.set_stream_delay_ms(30)
    proc.reset()


def test_binding_whose_package_is_missing_raises_the_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pywebrtc_audio", None)  # import pywebrtc_audio now fails
    monkeypatch.delitem(sys.modules, "appliance.audio.webrtc_apm", raising=False)
    with pytest.raises(ProcessingUnavailable) as info:
        load_processor("webrtc")
    assert isinstance(info.value, WallmeshError) and isinstance(info.value, ImportError)
    assert str(info.value).startswith("audio processing 'webrtc' is not available: pywebrtc_audio cannot be imported")
    assert "Traceback" not in str(info.value)


def test_binding_that_fails_to_start_raises_the_typed_error() -> None:
    with pytest.raises(ProcessingUnavailable, match="'livekit' is not available"):
        load_processor("livekit", module="appliance.audio.no_such_binding")


def test_unknown_binding_name_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="webrtc, livekit, off"):
        load_processor("speex")


def test_frames_must_be_10_ms() -> None:
    with pytest.raises(ValueError, match="480 samples, not 160"):
        load_processor("webrtc").process_capture(np.zeros(160, np.int16))


def test_processing_off_passes_the_microphone_through() -> None:
    frame = np.arange(FRAME, dtype=np.int16)
    out = Passthrough().process_capture(frame)
    assert np.array_equal(out, frame) and out is not frame


def test_default_tuning_sends_the_talker_at_the_level_captured() -> None:
    """No adaptive gain by default: AGC2 lifts residual echo with the talker (docs/room-audio.md).
    With ``gain=True`` this quiet talker comes out about 12 dB louder."""
    from appliance.audio import speech

    talk = speech.talk("en-us", 3.0)
    quiet = speech.to_int16(0.01 * talk / np.abs(talk).max())  # peaks at -40 dBFS
    proc = load_processor("webrtc")
    out = []
    for k in range(0, len(quiet) - FRAME + 1, FRAME):
        proc.process_reverse(np.zeros(FRAME, np.int16))
        out.append(proc.process_capture(quiet[k : k + FRAME]))
    assert proc.gain_db is None
    assert np.abs(np.concatenate(out)).max() <= 1.25 * np.abs(quiet).max()
