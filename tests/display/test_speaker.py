"""Active speaker detection with hysteresis."""

from __future__ import annotations

from appliance.display.speaker import ActiveSpeaker


def feed(detector, timeline):
    """timeline: [(t, {peer: level})] → the speaker after each reading."""
    return [detector.update(levels, t) for t, levels in timeline]


def test_needs_sustained_speech():
    d = ActiveSpeaker(threshold=0.05, attack=0.3, release=1.0)
    assert feed(d, [(0.0, {"a": 0.2}), (0.1, {"a": 0.2}), (0.2, {"a": 0.0})]) == [None, None, None], "a cough is not speech"
    assert feed(d, [(1.0, {"a": 0.2}), (1.2, {"a": 0.2}), (1.4, {"a": 0.2})])[-1] == "a"


def test_stays_through_short_pauses_then_releases():
    d = ActiveSpeaker(threshold=0.05, attack=0.2, release=1.0)
    feed(d, [(0.0, {"a": 0.3}), (0.3, {"a": 0.3})])
    assert d.update({"a": 0.0}, 0.8) == "a", "a pause between words"
    assert d.update({"a": 0.0}, 1.5) is None


def test_switches_to_a_clearly_louder_speaker_only():
    d = ActiveSpeaker(threshold=0.05, attack=0.2, release=1.0)
    feed(d, [(0.0, {"a": 0.3, "b": 0.0}), (0.3, {"a": 0.3, "b": 0.0})])
    assert d.current == "a"
    # b talks over a, a little louder: no flip-flop
    assert feed(d, [(0.4, {"a": 0.3, "b": 0.4}), (0.7, {"a": 0.3, "b": 0.4})])[-1] == "a"
    # a stops; after the release b takes over
    assert feed(d, [(1.0, {"a": 0.0, "b": 0.4}), (2.0, {"a": 0.0, "b": 0.4})])[-1] == "b"


def test_peer_that_leaves_is_dropped():
    d = ActiveSpeaker(attack=0.0)
    assert d.update({"a": 0.5}, 0.0) == "a"
    assert d.update({"b": 0.0}, 0.1) is None
