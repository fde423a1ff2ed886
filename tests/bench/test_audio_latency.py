"""The audio-delay measurement finds every talk-spurt and times it through a real link."""

from __future__ import annotations

import statistics

from appliance.bench import audio_latency


async def test_audio_delay_is_measured_per_talk_spurt_and_grows_with_the_packet():
    short = await audio_latency.measure(20, 4.0)
    long = await audio_latency.measure(60, 4.0)
    for delays in (short, long):
        assert len(delays) >= 2  # a spurt every 1.6 s, the first within a second of connecting
        assert all(0 < d < 1000 for d in delays), delays
    # 60 ms packets wait 40 ms longer to fill and need a deeper jitter buffer: that must show
    assert statistics.median(long) > statistics.median(short) + 20, (short, long)


def test_onsets_are_found_at_the_first_loud_sample_after_silence():
    import numpy as np

    quiet = np.zeros(480, np.int16)
    spurt = np.concatenate([np.zeros(100, np.int16), np.full(380, 5000, np.int16)])
    assert audio_latency._onset(spurt, quiet_before=True) == 100
    assert audio_latency._onset(spurt, quiet_before=False) is None  # still talking: no new spurt
    assert audio_latency._onset(quiet, quiet_before=True) is None
