"""The image stage, run into a Debian 12 root file system made with debootstrap.

pi-gen itself needs a Raspberry Pi OS build environment; what can be checked
anywhere is the stage's own work. ``image/run-stage.sh`` runs the stage's
steps the way pi-gen does into a cached Debian 12 (amd64) minbase root, with
wallmesh installed from a wheel built from this checkout. The Raspberry Pi OS
step (picamera2, libcamera, vcgencmd) is skipped: those packages exist only in
Raspberry Pi's archive and can only be checked in a pi-gen build or on a Pi.

Needs root (chroot, mounts) and network access to the Debian mirror and PyPI
the first time; later runs reuse ~/.cache/wallmesh.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(os.geteuid() != 0, reason="chroot and mounts need root (CI runs as root)"),
    pytest.mark.skipif(shutil.which("debootstrap") is None, reason="debootstrap missing: run scripts/setup"),
]


def chroot(root: Path, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["chroot", str(root), *cmd], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8"})


def test_wallmesh_runs_inside_the_image(rootfs: Path) -> None:
    from appliance import __version__

    for exe in ("/opt/wallmesh/bin/wallmesh", "wallmesh"):
        done = chroot(rootfs, exe, "--version")
        assert done.returncode == 0 and done.stdout.strip() == f"wallmesh {__version__}", done.stdout + done.stderr
    done = chroot(rootfs, "/opt/wallmesh/bin/python", "-c", "import aiortc, av, alsaaudio, pygame, zeroconf, appliance.cli")
    assert done.returncode == 0, done.stderr
    done = chroot(rootfs, "wallmesh", "firstboot", "--help")
    assert done.returncode == 0 and "--boot" in done.stdout


def test_units_are_installed_and_enabled(rootfs: Path) -> None:
    etc = rootfs / "etc/systemd/system"
    for unit in ("wallmesh-unit.service", "wallmesh-firstboot.service"):
        link = etc / "multi-user.target.wants" / unit
        assert link.is_symlink() and os.readlink(link).endswith(unit)
    assert not (etc / "multi-user.target.wants/wallmesh-signal.service").exists()
    assert os.readlink(etc / "getty@tty1.service") == "/dev/null"  # no login on the HDMI console
    assert "wallmesh:" in (rootfs / "etc/passwd").read_text()
    assert (rootfs / "etc/systemd/journald.conf.d/wallmesh.conf").exists()
    done = chroot(rootfs, "systemctl", "is-enabled", "wallmesh-unit.service")
    assert done.stdout.strip() == "enabled", done.stdout + done.stderr


def test_units_verify_inside_the_image(rootfs: Path) -> None:
    """With the real /opt/wallmesh/bin/wallmesh present, verify needs no stand-in."""
    for unit in ("wallmesh-unit.service", "wallmesh-signal.service", "wallmesh-firstboot.service"):
        done = subprocess.run(["systemd-analyze", "verify", f"--root={rootfs}", f"/etc/systemd/system/{unit}"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "Unknown" not in done.stderr, done.stderr


PER_DEVICE_PATHS = (
    "etc/ssh/ssh_host_*", "var/lib/systemd/random-seed", "var/lib/systemd/credential.secret",
    "var/lib/wallmesh/*", "var/lib/wallmesh-signal", "var/lib/private/wallmesh-signal", "etc/wallmesh/unit.toml",
    "var/lib/NetworkManager/secret_key", "root/.ssh", "home/*/.ssh", "root/.cache/pip", "tmp/wallmesh-wheels",
)
SECRET_PATTERNS = (
    re.compile(rb"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"),
    re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}"),  # a JWT (enrollment/device token)
    re.compile(rb"\"device_secret\"\s*:"),
    re.compile(rb"^enrollment_token\s*=\s*\"[^\"]+", re.M),
)
SKIP_DIRS = {"proc", "sys", "dev", "run"}
# Code installed from public packages (Debian's and PyPI's) carries example keys
# and tokens in docs and tests; those are public, not this image's secrets.
# Everything else - /etc, /var, /root, /home, /boot, /opt outside the
# virtualenv's site-packages - is searched byte for byte.
PUBLIC_CODE = ("site-packages", "dist-packages")
PUBLIC_PREFIXES = ("usr/share/doc", "usr/share/common-licenses")


def find_secrets(root: Path) -> list[str]:
    """Everything per-device or secret found in a root file system."""
    found: list[str] = []
    machine_id = (root / "etc/machine-id").read_text().strip()
    if machine_id not in ("", "uninitialized"):
        found.append(f"etc/machine-id holds {machine_id!r}")
    dbus = root / "var/lib/dbus/machine-id"
    if dbus.exists() and not dbus.is_symlink():
        found.append("var/lib/dbus/machine-id is a file")
    for pattern in PER_DEVICE_PATHS:
        found += [str(p.relative_to(root)) for p in root.glob(pattern)]
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        if rel == Path("."):
            dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        dirnames[:] = [d for d in dirnames if d not in PUBLIC_CODE and not str(rel / d).startswith(PUBLIC_PREFIXES)]
        for name in filenames:
            path = Path(dirpath) / name
            try:
                if path.is_symlink() or path.stat().st_size > 2_000_000:
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            for pattern in SECRET_PATTERNS:
                if pattern.search(data):
                    found.append(f"{path.relative_to(root)}: matches {pattern.pattern[:40]!r}")
    return found


def test_nothing_secret_or_per_device_in_the_image(rootfs: Path) -> None:
    found = find_secrets(rootfs)
    assert found == [], "\n".join(found)


def test_the_search_finds_planted_secrets(rootfs: Path) -> None:
    """The search above can fail: secrets planted in the root are all found, then removed."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    planted = {
        rootfs / "opt/wallmesh/site.key": key,
        rootfs / "var/lib/wallmesh/device.json": b'{"device_id": "x", "device_secret": "y"}',
        rootfs / "boot-copy/wallmesh.toml": b'enrollment_token = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJmbGVldCJ9.c2lnbmF0dXJlc2lnbmF0dXJl"\n',
    }
    machine_id = (rootfs / "etc/machine-id").read_bytes()
    try:
        for path, data in planted.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        (rootfs / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
        found = "\n".join(find_secrets(rootfs))
        for needle in ("site.key", "var/lib/wallmesh/device.json", "boot-copy/wallmesh.toml", "etc/machine-id"):
            assert needle in found
    finally:
        for path in planted:
            path.unlink(missing_ok=True)
        shutil.rmtree(rootfs / "boot-copy", ignore_errors=True)
        (rootfs / "etc/machine-id").write_bytes(machine_id)
