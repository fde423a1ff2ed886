"""Boot the built image root with systemd-nspawn: first boot, the server and the unit under systemd.

This is the end-to-end check of the units: the real systemd (Debian 12's,
as PID 1 of the container) runs ``wallmesh-firstboot``, ``wallmesh-signal``
and ``wallmesh-unit`` exactly as installed, with all their sandboxing
(device policy, system call filter, W^X memory, user namespace, read-only
OS). The container has a private network (loopback only) and no camera,
sound card, screen or GPIO header, so the card asks for the test pattern and
a test-only drop-in switches audio, display and buttons to their no-hardware
settings just before the daemon starts; nothing else differs from a unit.

The card's server is the signaling service in the same container (a site
whose server runs on one of its units).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(os.geteuid() != 0, reason="booting a container needs root (CI runs as root)"),
    pytest.mark.skipif(shutil.which("systemd-nspawn") is None, reason="systemd-nspawn missing: run scripts/setup"),
    pytest.mark.skipif(shutil.which("debootstrap") is None, reason="debootstrap missing: run scripts/setup"),
]

NSPAWN = ["systemd-nspawn", "--keep-unit", "--register=no", "--private-network", "--quiet"]
CONTAINER_CONFIG = """#!/bin/sh
# Test only: this container has no sound card, screen or GPIO header.
# Edits the config once (at the first start, while the root is writable).
set -eu
f=/etc/wallmesh/unit.toml
if grep -q '^source = "alsa"' "$f"; then
  sed -i -e 's/^source = "alsa"/source = "synthetic"/' -e 's/^sink = "alsa"/sink = "null"/' "$f"
  printf '\\n[display]\\nbackend = "offscreen"\\n\\n[buttons]\\npin_factory = "mock"\\n' >> "$f"
fi
"""


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def container_init(nspawn_pid: int) -> int | None:
    """PID (on the host) of the container's systemd: a descendant of our nspawn named systemd."""
    todo = [nspawn_pid]
    while todo:
        pid = todo.pop()
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                return pid
        except OSError:
            continue
        todo.extend(children(pid))
    return None


def inside(init: int, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", "-t", str(init), "-a", *cmd], capture_output=True, text=True, timeout=timeout)


def prepare(root: Path) -> None:
    (root / "etc/wallmesh/signal.toml").write_text(
        'host = "127.0.0.1"\nport = 8443\nurl = "http://127.0.0.1:8443"\n[mdns]\nenabled = false\n')
    for cmd in (["systemctl", "enable", "wallmesh-signal.service"],
                ["systemctl", "mask", "systemd-networkd-wait-online.service"],  # nothing to wait for: loopback only
                ["install", "-d", "-m", "0700", "-o", "wallmesh-signal", "-g", "wallmesh-signal", "/var/lib/wallmesh-signal"]):
        subprocess.run(["chroot", str(root), *cmd], check=True, capture_output=True, timeout=60)
    done = subprocess.run([*NSPAWN, "-D", str(root), "-u", "wallmesh-signal", "/opt/wallmesh/bin/wallmesh", "device", "token",
                           "--state-dir", "/var/lib/wallmesh-signal"], capture_output=True, text=True, timeout=180)
    token = next((w for w in done.stdout.split() if w.startswith("eyJ")), None)
    assert token, done.stdout + done.stderr
    boot = root / "boot/firmware"
    boot.mkdir(parents=True, exist_ok=True)
    (boot / "wallmesh.toml").write_text(
        f'server = "http://127.0.0.1:8443"\nroom = "boardroom"\nname = "Container unit"\ncamera = "pattern"\n'
        f'enrollment_token = "{token}"\n')
    script = root / "usr/local/sbin/container-unit-config"
    script.write_text(CONTAINER_CONFIG)
    script.chmod(0o755)
    dropin = root / "etc/systemd/system/wallmesh-unit.service.d/container.conf"
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text("[Service]\nExecStartPre=+/usr/local/sbin/container-unit-config\n")


class Container:
    """One boot of a root file system under systemd-nspawn; shut down on exit."""

    def __init__(self, root: Path, log: Path, *extra: str) -> None:
        self.log = log.open("w")
        self.proc = subprocess.Popen([*NSPAWN, "-D", str(root), "-b", "--console=passive", *extra],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.logpath = log
        self.init: int | None = None

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()  # nspawn asks the container's systemd to shut down
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def run(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        assert self.init is not None
        return inside(self.init, *cmd)

    def wait_in_call(self, timeout: float = 240) -> dict:
        """The unit's /status once it reports in_call; fails with the journal otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.logpath.read_text()[-3000:]
            self.init = self.init or container_init(self.proc.pid)
            if self.init and self.run("systemctl", "is-active", "wallmesh-unit.service").stdout.strip() == "active":
                probe = self.run("/opt/wallmesh/bin/python", "-c",
                                 "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:8787/status',timeout=3).read().decode())")
                if probe.returncode == 0 and json.loads(probe.stdout).get("state") == "in_call":
                    return json.loads(probe.stdout)
            time.sleep(2)
        journal = self.run("journalctl", "--no-pager", "-u", "wallmesh-firstboot", "-u", "wallmesh-unit", "-u",
                           "wallmesh-signal").stdout if self.init else self.logpath.read_text()
        raise AssertionError("the unit never reached in_call:\n" + journal[-4000:])


def test_first_boot_then_the_unit_runs_sandboxed_and_joins(rootfs: Path, tmp_path: Path) -> None:
    root = tmp_path / "card"
    subprocess.run(["cp", "-a", "--reflink=auto", str(rootfs), str(root)], check=True, timeout=300)
    prepare(root)
    with Container(root, tmp_path / "boot1.log") as unit:
        status = unit.wait_in_call()
        assert status["room"] == "boardroom" and status["signaling"]["connected"]

        # provisioning left what it promised, and took the token off the card
        unit_toml = (root / "etc/wallmesh/unit.toml").read_text()
        device_id = (root / "var/lib/wallmesh/provisioned").read_text().strip()
        assert f'device_id = "{device_id}"' in unit_toml
        assert "enrollment_token =" not in (root / "boot/firmware/wallmesh.toml").read_text()
        assert (root / "etc/hostname").read_text().strip().startswith("boardroom-")
        assert (root / "var/lib/wallmesh/device.json").stat().st_mode & 0o777 == 0o600

        # the daemon keeps the watchdog fed: still running, never restarted, past WatchdogSec
        time.sleep(35)
        show = unit.run("systemctl", "show", "wallmesh-unit.service", "-p", "ActiveState", "-p", "NRestarts", "-p", "User")
        props = dict(line.split("=", 1) for line in show.stdout.splitlines() if "=" in line)
        assert props == {"ActiveState": "active", "NRestarts": "0", "User": "wallmesh"}, show.stdout

    # The next boot with the root file system read-only: only the state directories
    # are writable, mounted from elsewhere (as on a unit whose /var/lib/wallmesh
    # lives on a data partition).
    state = tmp_path / "data-partition"
    state.mkdir()
    binds = []
    for name in ("wallmesh", "wallmesh-signal"):
        subprocess.run(["cp", "-a", str(root / "var/lib" / name), str(state / name)], check=True)
        binds.append(f"--bind={state / name}:/var/lib/{name}")
    with Container(root, tmp_path / "boot2.log", "--read-only", *binds) as unit:
        status = unit.wait_in_call()
        assert status["room"] == "boardroom"
        assert unit.run("systemctl", "is-active", "wallmesh-firstboot.service").stdout.strip() == "inactive"
        assert unit.run("touch", "/etc/probe").returncode != 0  # the root really is read-only


def version_wheel(out: Path, version: str) -> Path:
    """A wheel of this checkout that calls itself ``version`` (offline build)."""
    import re
    import sys

    repo = Path(__file__).resolve().parents[2]
    src = out / f"src-{version}"
    shutil.copytree(repo / "appliance", src / "appliance", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo / name, src / name)
    init = src / "appliance/__init__.py"
    init.write_text(re.sub(r'__version__ = "[^"]+"', f'__version__ = "{version}"', init.read_text()))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(out), str(src)], check=True, capture_output=True, timeout=300)
    return next(out.glob(f"wallmesh-{version}-*.whl"))


def pin_release_certificate(root: Path) -> None:
    import hashlib
    import re

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    latest = json.loads(next(root.glob("var/lib/**/releases/latest.json")).read_text())
    der = x509.load_pem_x509_certificate(latest["certificate"].encode()).public_bytes(serialization.Encoding.DER)
    digest = hashlib.sha256(der).hexdigest().upper()
    fingerprint = ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))
    config = root / "etc/wallmesh/unit.toml"
    text, count = re.subn(r'(?m)^fingerprint = ".*"$', f'fingerprint = "{fingerprint}"', config.read_text())
    assert count == 1, text
    config.write_text(text)


def test_wallmesh_update_as_root_restarts_the_service_into_the_trial(rootfs: Path, tmp_path: Path) -> None:
    """On a unit run by systemd, `wallmesh update` installs as the service user and restarts the service."""
    root = tmp_path / "card"
    subprocess.run(["cp", "-a", "--reflink=auto", str(rootfs), str(root)], check=True, timeout=300)
    prepare(root)
    wheel = version_wheel(tmp_path, "0.1.1")
    shutil.copy(wheel, root / "var/tmp" / wheel.name)
    with Container(root, tmp_path / "boot.log") as unit:
        before = unit.wait_in_call()
        assert before["software"]["state"] == "image"
        assert unit.init is not None
        done = inside(unit.init, "runuser", "-u", "wallmesh-signal", "--", "/opt/wallmesh/bin/wallmesh", "release",
                      "publish", f"/var/tmp/{wheel.name}", "--state-dir", "/var/lib/wallmesh-signal", timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        # This site's server speaks plain HTTP on loopback, so the card pinned no certificate: pin the one
        # that signs releases, as an operator would (`server.fingerprint`).
        pin_release_certificate(root)
        done = inside(unit.init, "/opt/wallmesh/bin/wallmesh", "update", "--config", "/etc/wallmesh/unit.toml", timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "installed wallmesh 0.1.1 as a trial" in done.stdout
        assert "restarted wallmesh-unit.service: the trial runs now" in done.stdout, done.stdout
        slot = root / "var/lib/wallmesh/versions/0.1.1"
        assert slot.stat().st_uid == (root / "var/lib/wallmesh").stat().st_uid != 0  # the service user's, not root's
        deadline = time.monotonic() + 240
        software: dict = {}
        while time.monotonic() < deadline and software.get("state") != "confirmed":
            time.sleep(2)
            software = unit.wait_in_call(timeout=60).get("software", {})
        assert software.get("version") == "0.1.1" and software.get("state") == "confirmed", software
