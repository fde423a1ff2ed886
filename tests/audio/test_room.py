"""The room simulator does what it claims: its echo delay, streaming = offline, espeak-ng speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from appliance.audio import room, speech


def _lag_ms(reference: np.ndarray, signal: np.ndarray) -> float:
    from scipy.signal import correlate

    xc = correlate(signal, reference, mode="full", method="fft")[len(reference) - 1 :]
    return float(np.argmax(np.abs(xc[: speech.RATE // 2])) * 1000 / speech.RATE)


@pytest.mark.parametrize("name, delay_ms", [("small", 40.0), ("large", 120.0)])
def test_echo_arrives_after_the_stated_delay(name: str, delay_ms: float, far_talk: np.ndarray) -> None:
    model = room.build(name)
    assert model.room.delay_ms == delay_ms
    echo = model.simulate(far_talk[: 3 * speech.RATE], noise=False).echo
    assert _lag_ms(far_talk[: 3 * speech.RATE], echo) == pytest.approx(delay_ms, abs=0.05)


def test_delay_jumps_by_30_ms_mid_call(far_talk: np.ndarray) -> None:
    model = room.build("jump")
    echo = model.simulate(far_talk, noise=False).echo
    cut = int(model.room.jump_at_s * speech.RATE)
    assert _lag_ms(far_talk[: cut - speech.RATE // 2], echo[: cut - speech.RATE // 2]) == pytest.approx(50.0, abs=0.05)
    assert _lag_ms(far_talk[cut:], echo[cut:]) == pytest.approx(80.0, abs=0.05)


def test_large_room_reverberates_about_0_6_s() -> None:
    h = room.build("large").speaker_rir
    decay = 10 * np.log10(np.cumsum(h[::-1] ** 2)[::-1] / np.sum(h**2))  # Schroeder integral
    t5, t35 = np.searchsorted(-decay, 5), np.searchsorted(-decay, 35)
    rt60 = 2 * (t35 - t5) / speech.RATE  # T30 extrapolated to 60 dB
    assert 0.45 < rt60 < 0.8


def test_clipping_room_drives_the_loudspeaker_into_saturation(far_talk: np.ndarray) -> None:
    model = room.build("clipping")
    played = model.play(far_talk)  # the unit's output stage: +12 dB, limited at -1 dBFS
    assert np.abs(played).max() <= 10 ** (-1 / 20) + 1 / 32768
    active = np.abs(far_talk) > 1e-3
    assert 20 * np.log10(np.sqrt(np.mean(played[active] ** 2)) / 0.1) > 6  # much louder than the other rooms
    driven = model.loudspeaker(played)
    loud = np.abs(played) > 0.7
    assert np.mean(loud) > 0.01
    compression = 20 * np.log10(np.abs(played[loud]) / np.abs(driven[loud]))
    assert compression.mean() > 1.0  # the loudspeaker saturates on the peaks
    assert np.array_equal(room.build("small").play(far_talk), room.build("small").play(far_talk))


def test_streaming_microphone_hears_what_the_offline_simulation_hears(far_talk: np.ndarray, near_talk: np.ndarray) -> None:
    model = room.build("drift")
    far, near = far_talk[: 4 * speech.RATE], near_talk[2 * speech.RATE : 6 * speech.RATE]
    offline = model.simulate(far, near).mic_int16()
    mic = model.microphone(near)
    frames = [mic.read(speech.to_int16(far[k : k + room.FRAME]) / 32768.0) for k in range(0, len(far), room.FRAME)]
    streamed = np.concatenate(frames)
    assert np.max(np.abs(streamed.astype(int) - offline.astype(int))) <= 1


def test_speech_is_spoken_once_then_read_from_the_cache(tmp_path: Path) -> None:
    first = speech.speak("Testing the wall unit.", "de", cache=tmp_path)
    files = list(tmp_path.glob("*.wav"))
    assert len(files) == 1
    again = speech.speak("Testing the wall unit.", "de", cache=tmp_path)
    assert np.array_equal(first, again) and list(tmp_path.glob("*.wav")) == files
    assert 0.5 < len(first) / speech.RATE < 3.0 and np.abs(first).max() > 0.1
    assert not np.array_equal(first[: len(first) // 2], speech.speak("Testing the wall unit.", "en-us", cache=tmp_path)[: len(first) // 2])
