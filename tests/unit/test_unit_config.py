"""The unit config: the shipped examples load, and mistakes name the file, the key and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.errors import ConfigError
from appliance.mesh.ice import IcePolicy
from appliance.unit import config

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


@pytest.mark.parametrize("name", ["unit.toml", "laptop.toml"])
def test_shipped_examples_load(name):
    conf = config.load(CONFIG_DIR / name)
    assert conf.room == "lobby"


def test_defaults_are_a_valid_unit():
    conf = config.load(None)
    assert conf.server.url == "discover" and conf.status.host == "127.0.0.1"
    assert IcePolicy.from_config(conf.ice).addresses == ()  # aioice's own LAN gathering


def test_loopback_mode_gathers_127_0_0_1_only():
    conf = config.cfg.build(config.UnitConfig, {"ice": {"loopback": True}}, "<t>")
    policy = IcePolicy.from_config(conf.ice)
    assert policy.addresses == ("127.0.0.1",) and not policy.resolve_mdns


@pytest.mark.parametrize(
    "text, key, words",
    [
        ('room = "Board Room"', "room", "matching"),
        ('[server]\nurl = "ftp://x"', "server.url", "matching"),
        ('[video]\ntype = "webcam"', "video.type", "one of"),
        ('[quality]\nmax_tier = "8k"', "quality.max_tier", "one of"),
        ('[ice]\nloopbak = true', "ice.loopbak", "unknown key"),
        ('[status]\nport = 70000', "status.port", "from 0 to 65535"),
        ('[server]\nfingerprint = "zz"', "server.fingerprint", "matching"),
    ],
)
def test_bad_values_name_file_key_and_allowed(tmp_path, text, key, words):
    path = tmp_path / "unit.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as err:
        config.load(path)
    message = str(err.value)
    assert str(path) in message and f"'{key}'" in message and words in message


def test_interfaces_become_host_candidate_addresses():
    conf = config.cfg.build(config.UnitConfig, {"ice": {"interfaces": ["lo", "wallmesh-absent0"]}}, "<t>")
    policy = IcePolicy.from_config(conf.ice)
    assert "127.0.0.1" in policy.addresses  # named explicitly, so even loopback is offered
    assert policy.resolve_mdns


def test_the_shipped_unit_config_documents_call_end_mute_and_volume_repeat():
    text = (CONFIG_DIR / "unit.toml").read_text()
    assert "[call]" in text and "mute_resets" in text and "volume_repeat" in text
    conf = config.load(CONFIG_DIR / "unit.toml")
    assert conf.call.mute_resets is True and conf.buttons.volume_repeat == 0.4
    off = config.cfg.build(config.UnitConfig, {"call": {"mute_resets": False}}, "<t>")
    assert off.call.mute_resets is False
