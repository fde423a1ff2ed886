"""The unit's output stage: volume and a peak limiter that never lets the speaker signal clip."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.audio import speech
from appliance.audio.limiter import BLOCK, OutputLimiter, limit

CEILING = 10 ** (-1 / 20)  # -1 dBFS


def test_peaks_never_pass_the_ceiling_even_for_an_overflowing_int32_mix(far_talk: np.ndarray) -> None:
    limiter = OutputLimiter(volume_db=12.0)
    mix = (far_talk * 32768 * 3).astype(np.int32)  # three loud peers summed, far past int16
    frames = [limiter.process(mix[k : k + 480]) for k in range(0, len(mix) - 479, 480)]
    out = np.concatenate(frames)
    assert out.dtype == np.int16
    assert np.abs(out).max() <= CEILING * 32768
    assert limiter.gain_db < -10.0


def test_quiet_signal_passes_untouched_one_millisecond_late(far_talk: np.ndarray) -> None:
    quiet = speech.to_int16(far_talk * 0.5)  # peaks about -8 dBFS
    limiter = OutputLimiter()
    out = np.concatenate([limiter.process(quiet[k : k + 480]) for k in range(0, 4800, 480)])
    assert np.array_equal(out[BLOCK:], quiet[: 4800 - BLOCK]) and not out[:BLOCK].any()
    assert limiter.gain_db == 0.0


def test_limiting_is_a_smooth_gain_not_clipping() -> None:
    t = np.arange(speech.RATE) / speech.RATE
    tone = 0.9 * np.sin(2 * np.pi * 440 * t)
    out = limit(tone, volume_db=12.0)
    assert np.abs(out).max() <= CEILING + 1 / 32768
    # a gain that is steady over a sustained tone scales the sine: its shape stays (no flat tops)
    steady = out[speech.RATE // 2 :]
    gain = np.abs(steady).max() / 0.9
    assert np.max(np.abs(steady - gain * tone[speech.RATE // 2 :])) < 0.01
    # and it recovers: after a loud burst, a quiet passage comes back to full level
    burst = np.concatenate([tone[: speech.RATE // 4] * 4, 0.1 * np.sin(2 * np.pi * 440 * t[: speech.RATE])])
    after = limit(burst)[-speech.RATE // 4 :]
    assert np.abs(after).max() == pytest.approx(0.1, abs=0.002)


def test_volume_and_ceiling() -> None:
    x = 0.01 * np.sin(2 * np.pi * 1000 * np.arange(4800) / speech.RATE)
    assert np.abs(limit(x, volume_db=6.0)).max() == pytest.approx(0.01 * 10 ** (6 / 20), rel=0.01)
    with pytest.raises(ValueError, match="at most 0 dBFS"):
        OutputLimiter(ceiling_dbfs=1.0)
    with pytest.raises(ValueError, match="whole milliseconds"):
        OutputLimiter().process(np.zeros(100, np.int16))


def test_same_input_gives_identical_output(far_talk: np.ndarray) -> None:
    assert np.array_equal(limit(far_talk, volume_db=12.0), limit(far_talk, volume_db=12.0))
