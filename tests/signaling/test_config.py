"""The shipped example ``config/signal.toml`` documents every key with its default."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import describe, load, loads
from appliance.errors import ConfigError
from appliance.signaling.config import SignalConfig

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "signal.toml"


def test_example_is_the_defaults_and_names_every_key() -> None:
    assert load(SignalConfig, EXAMPLE) == SignalConfig()
    text = EXAMPLE.read_text()
    for key, _default, help_text in describe(SignalConfig):
        name = key.rsplit(".", 1)[-1]
        assert f"\n{name} = " in text, key
        assert help_text, f"{key} has no help text"
    for section in ("rate", "heartbeat", "ice", "tls", "mdns", "tokens", "hashing"):
        assert f"[{section}]" in text


@pytest.mark.parametrize(
    "text, key",
    [
        ("max_room_size = 1", "max_room_size"),
        ("[hashing]\nmemory_kib = 1024", "hashing.memory_kib"),
        ("[hashing]\ntime_cost = 1", "hashing.time_cost"),
        ("[heartbeat]\ntimeout_s = 60.5", "heartbeat.timeout_s"),
        ("[ice]\nstun_urls = 'stun:x'", "ice.stun_urls"),
        ("[tokens]\nbogus = 1", "tokens.bogus"),
    ],
)
def test_bad_values_name_the_key(text, key) -> None:
    with pytest.raises(ConfigError) as info:
        loads(SignalConfig, text, "signal.toml")
    assert info.value.key == key and "signal.toml" in str(info.value)
