"""A unit whose configured camera or ALSA device is absent says which device and which key to
fix, and keeps running to try again (its wall says so: tests/integration/test_missing_camera.py);
a wrong config value or a taken status port stops it at once, naming the key."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from appliance.demo.site import to_toml


def write_config(tmp_path, extra: dict):
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
    return path


def run_unit(tmp_path, extra: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", "run", "--config", str(write_config(tmp_path, extra))],
        capture_output=True, text=True, timeout=60,
    )


def first_line_naming(tmp_path, extra: dict, *words: str, timeout: float = 30) -> str:
    """Start a unit, return the first line it logs that names every one of ``words``; the
    unit must still be running then (it keeps trying the device). Stops it afterwards."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "run", "--config", str(write_config(tmp_path, extra))],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    found: list[str] = []
    seen: list[str] = []
    done = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if not found and all(w in line for w in words):
                found.append(line.strip())
                done.set()
        done.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        done.wait(timeout)
        assert found, f"no line naming {words}:\n{''.join(seen[-20:])}"
        assert proc.poll() is None, f"the unit exited ({proc.returncode}):\n{''.join(seen[-20:])}"
        assert not any("Traceback" in line for line in seen), "".join(seen)
        return found[0]
    finally:
        proc.terminate()
        proc.wait(10)


def test_absent_camera_names_the_device_and_the_key(tmp_path):
    first_line_naming(tmp_path, {"video": {"type": "v4l2", "device": "/dev/video99"}}, "/dev/video99", "video.device")


@pytest.mark.parametrize(
    "audio, key",
    [
        ({"source": "alsa", "input_device": "hw:CARD=WallmeshNoSuchCard"}, "audio.input_device"),
        ({"sink": "alsa", "output_device": "hw:CARD=WallmeshNoSuchCard"}, "audio.output_device"),
    ],
)
def test_absent_alsa_device_names_the_device_and_the_key(tmp_path, audio, key):
    pytest.importorskip("alsaaudio", reason="pyalsaaudio is installed by scripts/setup (needs libasound2-dev)")
    first_line_naming(tmp_path, {"audio": audio}, "hw:CARD=WallmeshNoSuchCard", key)


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
