"""A unit whose configured camera or ALSA device is absent stops at once and says which key to fix."""

from __future__ import annotations

import subprocess
import sys

import pytest

from appliance.demo.site import to_toml


def run_unit(tmp_path, extra: dict) -> subprocess.CompletedProcess:
    conf = {
        "room": "devices",
        "state_dir": str(tmp_path / "state"),
        "headless": True,
        "server": {"url": "http://127.0.0.1:9"},  # never reached: devices open first
        "ice": {"loopback": True},
        "status": {"port": 0},
    }
    for key, table in extra.items():
        conf[key] = table
    path = tmp_path / "unit.toml"
    path.write_text(to_toml(conf))
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", "run", "--config", str(path)],
        capture_output=True, text=True, timeout=60,
    )


def test_absent_camera_names_the_device_and_the_key(tmp_path):
    done = run_unit(tmp_path, {"video": {"type": "v4l2", "device": "/dev/video99"}})
    assert done.returncode != 0
    line = done.stderr.strip().splitlines()[-1]
    assert "/dev/video99" in line and "video.device" in line


@pytest.mark.parametrize(
    "audio, key",
    [
        ({"source": "alsa", "input_device": "hw:CARD=WallmeshNoSuchCard"}, "audio.input_device"),
        ({"sink": "alsa", "output_device": "hw:CARD=WallmeshNoSuchCard"}, "audio.output_device"),
    ],
)
def test_absent_alsa_device_names_the_device_and_the_key(tmp_path, audio, key):
    pytest.importorskip("alsaaudio", reason="pyalsaaudio is installed by scripts/setup (needs libasound2-dev)")
    done = run_unit(tmp_path, {"audio": audio})
    assert done.returncode != 0
    line = done.stderr.strip().splitlines()[-1]
    assert "hw:CARD=WallmeshNoSuchCard" in line and key in line


def test_bad_config_value_names_file_and_key(tmp_path):
    done = run_unit(tmp_path, {"video": {"fps": 500}})
    assert done.returncode != 0
    line = done.stderr.strip().splitlines()[-1]
    assert "unit.toml" in line and "video.fps" in line


def test_status_port_in_use_names_the_key(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_unit(tmp_path, {"status": {"port": port}})
    assert done.returncode != 0
    line = done.stderr.strip().splitlines()[-1]
    assert f"127.0.0.1:{port}" in line and "status.port" in line
