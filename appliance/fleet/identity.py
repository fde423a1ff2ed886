"""Who this unit is: machine id, hardware serial, device id and host name.

Every card is flashed from the same image, so nothing that identifies a unit
may come from the image. Two sources are per-device by nature:

* the Raspberry Pi's board serial (device tree ``serial-number``, or the
  ``Serial`` line of ``/proc/cpuinfo`` on older firmware) - fixed in silicon,
  so a re-flashed unit keeps its identity;
* the systemd machine id, which the image leaves empty ("uninitialized") so
  each card generates its own on first boot.

The device id is derived from the serial when there is one, else from the
machine id. It is a keyed hash, never the raw value (systemd asks that the
machine id not be exposed as-is), short enough for a host name.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from appliance.files import write_atomic

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_APP_KEY = b"wallmesh device id v1"


def read_machine_id(path: Path) -> str | None:
    """The machine id if ``path`` holds a usable one; None for missing, empty or the placeholder."""
    try:
        text = path.read_text().strip().lower()
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not _HEX32.match(text) or text == "0" * 32:
        return None
    return text


def ensure_machine_id(path: Path) -> tuple[str, bool]:
    """Return the machine id, generating and storing a fresh one if the image left none.

    Returns (id, generated). systemd normally does this itself early in boot;
    this covers images booted without it and test trees.
    """
    current = read_machine_id(path)
    if current is not None:
        return current, False
    fresh = uuid.uuid4().hex
    write_atomic(path, fresh + "\n", mode=0o444)
    return fresh, True


def read_serial(sys_root: Path = Path("/sys"), proc_root: Path = Path("/proc")) -> str | None:
    """The board serial (lower-case hex, leading zeros kept) or None when this is not a Pi."""
    try:
        raw = (sys_root / "firmware/devicetree/base/serial-number").read_bytes()
        serial = raw.rstrip(b"\0").decode("ascii", "replace").strip().lower()
        if re.fullmatch(r"[0-9a-f]{8,}", serial) and set(serial) != {"0"}:
            return serial
    except OSError:
        pass
    try:
        cpuinfo = (proc_root / "cpuinfo").read_text(errors="replace")
    except OSError:
        return None
    match = re.search(r"^Serial\s*:\s*([0-9a-fA-F]+)\s*$", cpuinfo, re.MULTILINE)
    if match and set(match.group(1)) != {"0"}:
        return match.group(1).lower()
    return None


@dataclass(frozen=True)
class DeviceIdentity:
    device_id: str
    source: str  # "serial" or "machine-id"


def derive_device_id(serial: str | None, machine_id: str) -> DeviceIdentity:
    """``wm-`` plus 12 hex digits of a keyed hash of the serial (preferred) or machine id."""
    source, value = ("serial", serial) if serial else ("machine-id", machine_id)
    digest = hmac.new(_APP_KEY, f"{source}:{value}".encode(), hashlib.sha256).hexdigest()
    return DeviceIdentity(device_id=f"wm-{digest[:12]}", source=source)


def hostname_for(device_id: str, room: str) -> str:
    """A readable, unique host name: ``<room>-<last 6 of the device id>``, within 63 characters."""
    tail = device_id.rsplit("-", 1)[-1][-6:]
    head = re.sub(r"[^a-z0-9-]+", "-", room.lower()).strip("-")[: 63 - len(tail) - 1] or "wallmesh"
    return f"{head}-{tail}"


def write_hostname(etc: Path, hostname: str) -> None:
    """Set the static host name in ``etc/hostname`` and its 127.0.1.1 line in ``etc/hosts``."""
    write_atomic(etc / "hostname", hostname + "\n", mode=0o644)
    hosts = etc / "hosts"
    try:
        lines = hosts.read_text().splitlines()
    except FileNotFoundError:
        lines = ["127.0.0.1\tlocalhost", "::1\t\tlocalhost ip6-localhost ip6-loopback"]
    lines = [line for line in lines if not line.startswith("127.0.1.1")]
    lines.append(f"127.0.1.1\t{hostname}")
    write_atomic(hosts, "\n".join(lines) + "\n", mode=0o644)
