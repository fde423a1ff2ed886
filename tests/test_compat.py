"""A library version wallmesh was not tested with refuses to start, in one line naming it.

The processes here run against a stand-in package put first on ``PYTHONPATH``: the
installed library's own code (so everything imports and works as usual) under another
version number, with distribution metadata to match. Only the version differs, so what
refuses to start is wallmesh's check and nothing else — the same stand-in at the pinned
version gets past it.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance import compat
from appliance.demo.site import to_toml
from appliance.errors import LibraryMismatch, WallmeshError

ROOT = Path(__file__).resolve().parents[1]


def stand_in(root: Path, name: str, version: str) -> Path:
    """A directory holding package ``name`` at ``version``: the installed code, another number."""
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.submodule_search_locations
    real = list(spec.submodule_search_locations)[0]
    package = root / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        f'"""{name} {version}: the installed {name} under another version number (a test stand-in)."""\n'
        f"__path__ = [{real!r}]\n"
        f"with open({real + '/__init__.py'!r}) as _source:\n"
        f"    exec(compile(_source.read(), {real + '/__init__.py'!r}, 'exec'))\n"
        f"__version__ = {version!r}\n"
    )
    dist = root / f"{name}-{version}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return root


def wallmesh(tmp_path: Path, stand_in_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(stand_in_dir), str(ROOT)])}
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", *args], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
    )


def unit_config(tmp_path: Path) -> Path:
    """A unit whose camera is absent: past the library checks it says so, naming the camera."""
    conf = {
        "room": "pins",
        "state_dir": str(tmp_path / "state"),
        "headless": True,
        "server": {"url": "http://127.0.0.1:9"},  # never reached
        "ice": {"loopback": True},
        "status": {"port": 0},
        "video": {"type": "v4l2", "device": "/dev/video99"},
    }
    path = tmp_path / "unit.toml"
    path.write_text(to_toml(conf))
    return path


def test_the_daemon_refuses_an_aiortc_it_was_not_tested_with(tmp_path):
    done = wallmesh(tmp_path, stand_in(tmp_path / "site", "aiortc", "1.17.0"), "run", "--config", str(unit_config(tmp_path)))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "wallmesh run: aiortc 1.17.0 is installed, but wallmesh needs aiortc==1.16.0 "
        "(tested with aiortc 1.16.0); install that version"
    )


def test_at_the_pinned_aiortc_the_daemon_gets_as_far_as_its_camera(tmp_path):
    # the stand-in itself works: at the pinned version the unit starts, and says its camera is absent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(stand_in(tmp_path / "site", "aiortc", "1.16.0")), str(ROOT)])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "run", "--config", str(unit_config(tmp_path))],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )
    seen: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if "/dev/video99" in line:
                break
        assert seen and "/dev/video99" in seen[-1], "".join(seen)
        assert not any("is installed, but" in line or "Traceback" in line for line in seen), "".join(seen)
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_signaling_server_refuses_an_aiohttp_outside_its_range(tmp_path):
    done = wallmesh(
        tmp_path, stand_in(tmp_path / "site", "aiohttp", "4.0.0"),
        "signal", "--host", "127.0.0.1", "--port", "0", "--state-dir", str(tmp_path / "state"),
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("wallmesh signal: aiohttp 4.0.0 is installed, but wallmesh needs aiohttp"), last
    assert "<4" in last and "(tested with aiohttp 3.14.5)" in last, last


def test_a_version_inside_the_pin_passes_and_outside_it_names_package_found_and_tested():
    compat.require_tested("aiohttp", "3.14.5", tested="3.14.5")
    with pytest.raises(LibraryMismatch) as caught:
        compat.require_tested("aiortc", "1.15.1", tested="1.16.0")
    error = caught.value
    assert isinstance(error, WallmeshError) and isinstance(error, RuntimeError)
    assert (error.package, error.found, error.tested) == ("aiortc", "1.15.1", "1.16.0")
    assert str(error) == "aiortc 1.15.1 is installed, but wallmesh needs aiortc==1.16.0 (tested with aiortc 1.16.0); install that version"


def test_without_a_pin_in_the_metadata_the_tested_version_is_the_pin(monkeypatch):
    monkeypatch.setattr(compat, "requirement", lambda package: None)  # a source tree, or an older install
    compat.require_tested("aioice", "0.13.0", tested="0.13.0")
    with pytest.raises(LibraryMismatch, match=r"aioice 0\.14\.0 is installed, but wallmesh needs aioice==0\.13\.0"):
        compat.require_tested("aioice", "0.14.0", tested="0.13.0")
