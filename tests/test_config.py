"""The config loader: defaults, validation messages naming file and key, unknown keys."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from appliance.config import ConfigError, load, loads, section, setting


@dataclass(frozen=True)
class Video:
    width: int = setting(640, min=160, max=3840)
    source: str = setting("pattern", choices=("pattern", "v4l2", "picamera"))
    fps: float = setting(30.0, min=1, max=60)


@dataclass(frozen=True)
class Unit:
    room: str = setting("lobby", pattern=r"[a-z0-9][a-z0-9-]{0,62}")
    muted: bool = setting(False)
    ice: tuple[str, ...] = setting([])
    video: Video = section(Video)


def test_empty_file_gives_defaults(tmp_path):
    path = tmp_path / "unit.toml"
    path.write_text("")
    cfg = load(Unit, path)
    assert cfg == Unit()
    assert cfg.video.width == 640 and cfg.ice == ()


def test_values_are_read_and_nested(tmp_path):
    path = tmp_path / "unit.toml"
    path.write_text('room = "board-room"\nice = ["stun:a"]\n[video]\nwidth = 1280\nfps = 25\n')
    cfg = load(Unit, path)
    assert cfg.room == "board-room" and cfg.ice == ("stun:a",)
    assert cfg.video.width == 1280 and cfg.video.fps == 25.0


@pytest.mark.parametrize(
    "text, key, allowed",
    [
        ("[video]\nwidth = 99999\n", "video.width", "from 160 to 3840"),
        ("[video]\nwidth = true\n", "video.width", "an integer"),
        ('[video]\nsource = "webcam"\n', "video.source", "'pattern', 'v4l2', 'picamera'"),
        ('room = "Board Room"\n', "room", "matching"),
        ("muted = 1\n", "muted", "true or false"),
        ("[video]\ncolour = 3\n", "video.colour", "allowed here: fps, source, width"),
        ("colour = 3\n", "colour", "allowed here"),
        ("video = 3\n", "video", "expected a table"),
    ],
)
def test_bad_values_name_file_key_and_allowed(tmp_path, text, key, allowed):
    path = tmp_path / "unit.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(Unit, path)
    message = str(info.value)
    assert str(path) in message and f"'{key}'" in message and allowed in message
    assert info.value.key == key and isinstance(info.value, ValueError)


def test_broken_toml_and_missing_file_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        loads(Unit, "room = ", where="boot/wallmesh.toml")
    with pytest.raises(ConfigError, match="file not found"):
        load(Unit, tmp_path / "absent.toml")


def test_overrides_win_over_file(tmp_path):
    path = tmp_path / "unit.toml"
    path.write_text('[video]\nwidth = 1280\n')
    cfg = load(Unit, path, overrides={"video": {"fps": 15}})
    assert cfg.video.width == 1280 and cfg.video.fps == 15.0
