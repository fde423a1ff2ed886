"""The unit's identity towards the signaling server: device id, device secret, JWT.

A unit enrolls once with a fleet enrollment token (``POST /api/devices/enroll``)
and keeps the returned device secret in its state directory with mode 0600.
Each connection then trades the secret for a short-lived JWT
(``POST /api/auth/device``). Neither the secret nor a token is ever logged.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.errors import AuthError, WallmeshError

log = logging.getLogger(__name__)

SECRET_FILE = "device.json"


@dataclass(frozen=True)
class DeviceIdentity:
    device_id: str
    device_secret: str


def default_device_id() -> str:
    """Host name plus the start of the machine id: stable across reboots, unique in a fleet."""
    host = socket.gethostname().split(".")[0] or "unit"
    try:
        machine = Path("/etc/machine-id").read_text().strip()[:8]
    except OSError:
        machine = ""
    ident = f"{host}-{machine}" if machine else host
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in ident)[:64]


def load_identity(state_dir: Path) -> DeviceIdentity | None:
    path = state_dir / SECRET_FILE
    try:
        data = json.loads(path.read_text())
        return DeviceIdentity(str(data["device_id"]), str(data["device_secret"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WallmeshError(f"{path}: unreadable device secret file ({exc.__class__.__name__}); remove it to re-enroll") from exc


def save_identity(state_dir: Path, ident: DeviceIdentity) -> None:
    """Write the secret atomically with mode 0600 (the directory is created 0700)."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / SECRET_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"device_id": ident.device_id, "device_secret": ident.device_secret}, fh)
    os.replace(tmp, path)


async def _post(session: Any, url: str, body: dict[str, Any], ssl: Any) -> tuple[int, dict[str, Any]]:
    async with session.post(url, json=body, ssl=ssl) as resp:
        try:
            data = await resp.json(content_type=None)
        except ValueError:
            data = {}
        return resp.status, data if isinstance(data, dict) else {}


def _error_code(data: dict[str, Any]) -> str:
    err = data.get("error")
    if isinstance(err, dict):
        return str(err.get("code", "unauthorized"))
    return "unauthorized"


async def enroll(session: Any, base_url: str, ssl: Any, token: str, device_id: str, name: str) -> DeviceIdentity:
    status, data = await _post(
        session, f"{base_url}/api/devices/enroll", {"enrollment_token": token, "device_id": device_id, "name": name}, ssl
    )
    if status != 201 or "device_secret" not in data:
        raise AuthError(_error_code(data), f"enrollment of device {device_id} refused (HTTP {status})")
    log.info("unit %s: enrolled with the signaling server", device_id)
    return DeviceIdentity(str(data.get("device_id", device_id)), str(data["device_secret"]))


async def device_token(session: Any, base_url: str, ssl: Any, ident: DeviceIdentity) -> str:
    status, data = await _post(
        session, f"{base_url}/api/auth/device", {"device_id": ident.device_id, "device_secret": ident.device_secret}, ssl
    )
    if status != 200 or not isinstance(data.get("token"), str):
        raise AuthError(_error_code(data), f"device {ident.device_id} was refused a token (HTTP {status})")
    return data["token"]
