"""Fixtures for first boot: a real signaling server on loopback and "cards".

A card is what one unit sees at first boot: its root file system (``etc``
with the image's empty machine id, ``var/lib/wallmesh``), its boot partition
(``boot/wallmesh.toml``) and test trees standing in for ``/sys`` and
``/proc``. Every card starts as a copy of the same image tree, as on a fleet
flashed from one image.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from appliance.fleet.firstboot import Paths


def image_tree(root: Path) -> Path:
    """What the image leaves behind: an uninitialized machine id and nothing per-device."""
    (root / "etc/wallmesh").mkdir(parents=True)
    (root / "etc/machine-id").write_text("uninitialized\n")
    (root / "etc/hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\traspberrypi\n")
    (root / "etc/hostname").write_text("raspberrypi\n")
    (root / "var/lib/wallmesh").mkdir(parents=True)
    (root / "boot").mkdir()
    (root / "sys").mkdir()
    (root / "proc").mkdir()
    (root / "proc/cpuinfo").write_text("processor\t: 0\nmodel name\t: test cpu\n")
    return root


def card_paths(root: Path) -> Paths:
    return Paths(
        boot=root / "boot", etc=root / "etc", state_dir=root / "var/lib/wallmesh",
        machine_id=root / "etc/machine-id", sys_root=root / "sys", proc_root=root / "proc",
        fleet_defaults=root / "etc/wallmesh/fleet.toml",
    )


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return image_tree(tmp_path / "image")


@pytest.fixture
def make_card(tmp_path: Path, image: Path) -> Callable[..., Paths]:
    def make(name: str, bootfile: str | None = None, serial: str | None = None) -> Paths:
        root = tmp_path / name
        shutil.copytree(image, root, symlinks=True)
        if bootfile is not None:
            (root / "boot/wallmesh.toml").write_text(bootfile)
        if serial is not None:
            dt = root / "sys/firmware/devicetree/base"
            dt.mkdir(parents=True)
            (dt / "serial-number").write_bytes(serial.encode() + b"\0")
        return card_paths(root)

    return make


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[object]:
    from appliance.signaling.config import SignalConfig
    from appliance.signaling.server import SignalServer

    srv = SignalServer(SignalConfig(host="127.0.0.1", port=0), state_dir=tmp_path / "server")
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


def boot_text(server_url: str, token: str, room: str = "boardroom", name: str = "", fingerprint: str = "") -> str:
    lines = [
        "# wallmesh.toml written by the site's IT person",
        f'server = "{server_url}"',
        f'room = "{room}"',
        f'enrollment_token = "{token}"',
    ]
    if name:
        lines.append(f'name = "{name}"')
    if fingerprint:
        lines.append(f'fingerprint = "{fingerprint}"')
    return "\n".join(lines) + "\n"
