"""wallmesh on the fleet's architecture: the image stage in an arm64 root, a unit from it in a call.

The root is Debian 12 arm64 made by debootstrap, with the same stage the
amd64 image test runs (``image/stage-wallmesh`` through ``image/run-stage.sh``),
and wheels for aarch64 from PyPI; every program in it runs under qemu-user
(see ``tests/image/arm64_root.py`` for what is cached and why).

The call: a real signaling server and an x86 unit on this machine's loopback,
and the arm64 root's own ``/opt/wallmesh/bin/wallmesh run`` in a chroot, which
shares the host's network namespace, so its ICE stays on loopback too. Frames
count as delivered when the receiver decoded them and read the sender's stamp
from their pixels. Emulation is slow, so only delivery is asserted, not a rate.

Needs root (chroot, mounts, binfmt_misc) and, the first time, the Debian
mirror and PyPI.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from appliance.demo.site import Site, UnitProcess, wait_for

from .arm64_root import CHROOT_ENV, chroot, mounted

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(3000),
    pytest.mark.skipif(os.geteuid() != 0, reason="chroot, mounts and binfmt_misc need root (CI runs as root)"),
    pytest.mark.skipif(shutil.which("debootstrap") is None, reason="debootstrap missing: run scripts/setup"),
    pytest.mark.skipif(shutil.which("qemu-aarch64-static") is None, reason="qemu-user-static missing: run scripts/setup"),
]

AARCH64 = 0xB7  # ELF e_machine of aarch64


def elf_machine(path: Path) -> int:
    head = path.read_bytes()[:20]
    assert head[:4] == b"\x7fELF", f"{path} is not an ELF program"
    return int.from_bytes(head[18:20], "little")


def test_the_root_is_arm64_with_the_stage_installed(arm64_root: Path) -> None:
    from appliance import __version__

    assert os.readlink(arm64_root / "opt/wallmesh/bin/python").endswith("python3")
    assert elf_machine(arm64_root / "usr/bin/python3.11") == AARCH64  # the venv's interpreter is the root's
    with mounted(arm64_root):
        done = chroot(arm64_root, "wallmesh", "--version")
        assert done.returncode == 0 and done.stdout.strip() == f"wallmesh {__version__}", done.stdout + done.stderr
        done = chroot(arm64_root, "/opt/wallmesh/bin/python", "-c",
                      "import platform, aiortc, av, pygame, numpy, uvloop, argon2, alsaaudio, pywebrtc_audio, zeroconf;"
                      "print(platform.machine(), aiortc.__version__)")
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["aarch64", "1.16.0"]
        done = chroot(arm64_root, "systemctl", "is-enabled", "wallmesh-firstboot.service", "wallmesh-unit.service")
        assert done.stdout.split() == ["enabled", "enabled"], done.stdout + done.stderr
    assert (arm64_root / "etc/machine-id").read_text().strip() == "uninitialized"  # first boot makes it per card
    assert not (arm64_root / "etc/wallmesh/unit.toml").exists()  # first boot writes it from the card
    state = arm64_root / "var/lib/wallmesh"  # the service's StateDirectory, made at its first start
    assert not state.exists() or not list(state.iterdir())
    assert not (arm64_root / "usr/bin/gcc").exists()  # the compiler that built pyalsaaudio went again


def decoded(status: dict | None, name: str, min_frames: int) -> bool:
    """``status``'s unit decodes ``name``'s video: frames counted and the sender's stamp read."""
    for peer in (status or {}).get("peers", []):
        if peer.get("name") == name and peer.get("frames", 0) >= min_frames and peer.get("latency_ms") is not None:
            return True
    return False


async def spawn_in_root(site: Site, root: Path, index: int, extra: dict) -> UnitProcess:
    """The root's own ``wallmesh run`` (emulated) in a chroot, with a config from the site."""
    name, config, status_file = site.unit_config(index, extra)
    log_file = config.parent / "unit.log"
    with log_file.open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            "chroot", str(root), "/opt/wallmesh/bin/wallmesh", "-v", "run", "--config", str(config),
            stdout=log, stderr=log, env=CHROOT_ENV)
    unit = UnitProcess(index, name, config, status_file, log_file, proc)
    site.units.append(unit)
    return unit


async def test_an_arm64_unit_enrolls_joins_and_exchanges_video_with_an_x86_unit(arm64_root: Path, tmp_path: Path) -> None:
    from appliance import __version__

    site = Site(tmp_path / "site", room="arm64", server_process=True)
    (tmp_path / "site").mkdir()
    with mounted(arm64_root, tmp_path):
        started = time.monotonic()
        try:
            await site.start_server()
            x86 = await site.spawn(1, {"video": {"fps": 15}})
            pi = await spawn_in_root(site, arm64_root, 2, {"server": {"name": "pi-arm64", "device_id": "pi-arm64"},
                                                          "video": {"fps": 10}})
            try:
                await wait_for(lambda: (pi.status() or {}).get("state") == "in_call" or not pi.alive, 600,
                               "the arm64 unit to join its room", interval=1)
                assert pi.alive, pi.log_tail(40)
                joined = time.monotonic() - started
                await wait_for(lambda: decoded(x86.status(), "pi-arm64", 5) and decoded(pi.status(), "unit-1", 5)
                               or not pi.alive, 600, "video both ways", interval=1)
                assert pi.alive, pi.log_tail(40)
            except TimeoutError:
                raise AssertionError(f"arm64 unit:\n{pi.log_tail(40)}\n\nx86 unit:\n{x86.log_tail(20)}\n"
                                     f"arm64 status: {json.dumps(pi.status())[:2000]}") from None
            print(f"\narm64 unit: in its room {joined:.0f} s after start, video both ways "
                  f"{time.monotonic() - started:.0f} s after start")
            status = pi.status()
            assert status is not None and status["room"] == "arm64"
            # it enrolled: its own device secret, and the server knows it as that device
            state_dir = tmp_path / "site" / "unit-2" / "state"
            assert json.loads((state_dir / "device.json").read_text())["device_id"] == "pi-arm64"
            x86_view = next(p for p in x86.status()["peers"] if p["name"] == "pi-arm64")
            assert x86_view["kind"] == "device" and x86_view.get("account") == "pi-arm64"
            assert x86_view["connection"] == "connected"
            # it is the arm64 build that runs
            assert status["process"]["pid"] == pi.proc.pid
            # the kernel ran it through the aarch64 emulator (the host sees qemu as its program)
            assert "qemu-aarch64" in Path(f"/proc/{pi.proc.pid}/exe").resolve().name
            assert status["software"]["version"] == __version__ and status["software"]["state"] == "image"

            # doctor in the same root, with the unit's config, while the server runs
            done = await asyncio.to_thread(chroot, arm64_root, "/opt/wallmesh/bin/wallmesh", "doctor", "--config",
                                           str(pi.config), "--json", "--timeout", "30", timeout=600)
            check_doctor_report(done)
        finally:
            await site.close()


def check_doctor_report(done: subprocess.CompletedProcess[str]) -> None:
    """What doctor can tell in an emulated root, and that it names what needs the unit's hardware."""
    from appliance import __version__
    from appliance.fleet.doctor.hardware import HARDWARE_CHECKS

    assert "Traceback" not in done.stderr, done.stderr
    report = json.loads(done.stdout)
    findings: dict[str, list[dict]] = {}
    for f in report["findings"]:
        findings.setdefault(f["check"], []).append(f)
    assert not [f for f in report["findings"] if "the check itself failed" in f["summary"]], done.stdout
    (board,) = findings["board"]
    assert board["status"] == "warn" and board["summary"].startswith("not a Raspberry Pi (aarch64")
    assert all(name in board["summary"] for name in HARDWARE_CHECKS)
    assert set(HARDWARE_CHECKS) <= set(findings)  # each still reported, for what it is worth here
    for f in report["findings"]:
        assert f["status"] not in ("fail", "warn") or f["fix"], f
    # what it can check here, it checks: the server, the unit's enrollment, the version, the aarch64 SDL
    assert [f["status"] for f in findings["server"]] == ["ok"], findings["server"]
    assert [f["status"] for f in findings["enrollment"]] == ["ok"], findings["enrollment"]
    (version,) = findings["version"]
    assert version["status"] == "ok" and f"wallmesh {__version__} (image)" in version["summary"]
    assert any("kmsdrm driver present" in f["summary"] for f in findings["display"]), findings["display"]
    assert report["ok"] is False and done.returncode == 1  # provisioning by first boot never ran here
