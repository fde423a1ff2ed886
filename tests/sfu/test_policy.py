"""When a room goes through the SFU and when it comes back (the pure rule the broker applies)."""

from __future__ import annotations

import pytest

from appliance.signaling.sfu.policy import ModePolicy


def test_a_room_escalates_at_the_threshold_and_stays_while_it_is_large() -> None:
    p = ModePolicy(escalate_at=7, return_below=4, return_after_s=60)
    assert p.after_join("mesh", 6) == "mesh"
    assert p.after_join("mesh", 7) == "sfu"
    assert p.after_join("sfu", 5) == "sfu"  # a join never sends a room back


def test_a_room_returns_only_after_staying_small_long_enough() -> None:
    p = ModePolicy(escalate_at=7, return_below=4, return_after_s=60)
    since = p.small_since(5, None, now=0.0)
    assert since is None  # 5 is not small enough
    since = p.small_since(4, None, now=10.0)
    assert since == 10.0
    assert not p.returns("sfu", 4, since, now=69.0)
    assert p.returns("sfu", 4, since, now=70.0)
    # growing again resets the clock: a room hovering at the threshold never flips back and forth
    assert p.small_since(6, since, now=50.0) is None
    again = p.small_since(3, None, now=55.0)
    assert not p.returns("sfu", 3, again, now=100.0)
    assert p.returns("sfu", 3, again, now=115.0)
    assert not p.returns("mesh", 3, again, now=1000.0)


def test_the_return_threshold_must_sit_below_the_escalation() -> None:
    with pytest.raises(ValueError):
        ModePolicy(escalate_at=5, return_below=5, return_after_s=0)


def test_an_sfu_section_that_cannot_work_is_refused_naming_file_and_key() -> None:
    from appliance.config import build
    from appliance.errors import ConfigError
    from appliance.signaling.config import SignalConfig
    from appliance.signaling.sfu.broker import check_config

    def config(**sfu):
        return build(SignalConfig, {"sfu": {"type": "janus", **sfu}}, "signal.toml")

    with pytest.raises(ConfigError, match=r"^signal.toml: key 'sfu.url'"):
        check_config(config(), "signal.toml")
    with pytest.raises(ConfigError, match=r"key 'sfu.return_below'"):
        check_config(config(url="http://10.0.0.2:8088/janus", return_below=7), "signal.toml")
    with pytest.raises(ConfigError, match=r"key 'sfu.escalate_at'"):
        check_config(config(url="http://10.0.0.2:8088/janus", escalate_at=9), "signal.toml")
    check_config(config(url="http://10.0.0.2:8088/janus"), "signal.toml")
    check_config(build(SignalConfig, {}, "signal.toml"), "signal.toml")
