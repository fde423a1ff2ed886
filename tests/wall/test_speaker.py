"""The speaking highlight's one rule (voice above a noise floor, with hysteresis), and the mic meter."""

from __future__ import annotations

import numpy as np

from appliance.wall.speaker import ActiveSpeaker, LevelMeter, meter_fraction


def feed(detector, timeline):
    """timeline: [(t, {peer: level})] → the speaker after each reading."""
    return [detector.update(levels, t) for t, levels in timeline]


def every(detector, start, stop, levels, step=0.05):
    """Feed ``levels(t)`` every ``step`` seconds from ``start`` to ``stop``; the speakers named."""
    return [detector.update(levels(t), t) for t in np.arange(start, stop, step)]


def test_needs_sustained_speech():
    d = ActiveSpeaker(threshold=0.05, attack=0.3, release=1.0)
    d.update({"a": 0.0}, -0.1)
    assert feed(d, [(0.0, {"a": 0.2}), (0.1, {"a": 0.2}), (0.2, {"a": 0.0})]) == [None, None, None], "a cough is not speech"
    assert feed(d, [(1.0, {"a": 0.2}), (1.2, {"a": 0.2}), (1.4, {"a": 0.2})])[-1] == "a"


def test_stays_through_short_pauses_then_releases():
    d = ActiveSpeaker(threshold=0.05, attack=0.2, release=1.0)
    feed(d, [(-0.1, {"a": 0.0}), (0.0, {"a": 0.3}), (0.3, {"a": 0.3})])
    assert d.update({"a": 0.0}, 0.8) == "a", "a pause between words"
    assert d.update({"a": 0.0}, 1.5) is None


def test_switches_to_a_clearly_louder_speaker_only():
    d = ActiveSpeaker(threshold=0.05, attack=0.2, release=1.0)
    feed(d, [(-0.1, {"a": 0.0, "b": 0.0}), (0.0, {"a": 0.3, "b": 0.0}), (0.3, {"a": 0.3, "b": 0.0})])
    assert d.current == "a"
    # b talks over a, a little louder: no flip-flop
    assert feed(d, [(0.4, {"a": 0.3, "b": 0.4}), (0.7, {"a": 0.3, "b": 0.4})])[-1] == "a"
    # a stops; b takes over
    assert feed(d, [(1.0, {"a": 0.0, "b": 0.4}), (2.0, {"a": 0.0, "b": 0.4})])[-1] == "b"


def test_peer_that_leaves_is_dropped():
    d = ActiveSpeaker(attack=0.0)
    d.update({"a": 0.0}, -0.1)
    assert d.update({"a": 0.5}, 0.0) == "a"
    assert d.update({"b": 0.0}, 0.1) is None


def spurts(t, level=0.2):
    """Talk: 1.2 s of voice, 0.4 s of silence, like the synthetic microphone."""
    return level if (t % 1.6) < 1.2 else 0.0


def test_one_talker_holds_the_highlight_through_every_pause_without_flicker():
    d = ActiveSpeaker()
    # the mixer's first readings of a new peer are silence (its jitter buffer filling up)
    named = every(d, -0.2, 12.0, lambda t: {"talker": spurts(t) if t >= 0 else 0.0, "quiet": 0.0})
    assert set(named[15:]) == {"talker"}, "the pauses between spurts must not drop the highlight"
    assert "quiet" not in named


def test_steady_fan_noise_or_comfort_noise_does_not_light_a_tile():
    d = ActiveSpeaker()
    # a peer whose audio is a steady hum well above the threshold, never speech
    named = every(d, 0.0, 20.0, lambda t: {"fan": 0.04 * (1 + 0.05 * np.sin(7 * t))})
    assert set(named[int(5 / 0.05):]) == {None}, "a steady sound stops counting as voice within seconds"
    assert d.floor("fan") > 0.03
    # the same peer's talker then speaks over the fan: a pause's dip is the fan, voice rises above it
    named = every(d, 20.0, 30.0, lambda t: {"fan": 0.04 + spurts(t, 0.25)})
    assert named[-1] == "fan" and named.count("fan") > 0.8 * len(named[20:])


def test_the_highlight_follows_the_talker_and_leaves_the_noisy_peer_alone():
    d = ActiveSpeaker()
    hum = lambda t: 0.05  # noqa: E731 - a peer with an air conditioner behind it
    named = every(d, 0.0, 8.0, lambda t: {"a": spurts(t), "b": 0.0, "noisy": hum(t)})
    assert named[-1] == "a"
    named = every(d, 8.0, 16.0, lambda t: {"a": 0.0, "b": spurts(t - 8.0), "noisy": hum(t)})
    assert named[-1] == "b" and "noisy" not in named


def test_meter_reads_a_db_scale_and_falls_calmly():
    assert meter_fraction(0.0) == 0.0
    assert meter_fraction(10 ** (-60 / 20)) == 0.0
    assert meter_fraction(0.6) == 1.0
    assert 0.5 < meter_fraction(0.05) < 0.8  # -26 dBFS, speech
    m = LevelMeter(fall_db_per_s=30.0)
    assert m.update(0.05, 0.0) == meter_fraction(0.05)
    later = m.update(0.0, 0.5)  # 15 dB down after half a second of silence, not empty at once
    assert abs(later - (meter_fraction(0.05) - 15 / 54)) < 1e-6
    assert m.update(0.0, 5.0) == 0.0
