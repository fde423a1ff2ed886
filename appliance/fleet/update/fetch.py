"""Getting the site's latest release onto the unit, verified before anything is installed.

The unit asks its signaling server (device token, the pinned TLS certificate)
for ``/api/releases/latest``, checks that the release's certificate is the one
it pinned at enrollment and that it signed the manifest, then downloads the
wheel and checks its size and SHA-256 against the signed manifest. Only a
wheel that passed all of that is written to the state partition.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.errors import AuthError
from appliance.files import write_atomic
from appliance.fleet.update.slots import DOWNLOAD, VERSIONS, UpdateError
from appliance.netaddr import parse_fingerprint
from appliance.signaling.releases import Manifest, ReleaseError, verify
from appliance.unit import credentials
from appliance.unit.config import UnitConfig

PIN_FILE = "server-fingerprint"  # what the unit daemon learned by discovery (unit/signaling.py)


@dataclass(frozen=True)
class Fetched:
    manifest: Manifest
    wheel: Path


def fetch_latest(conf: UnitConfig, config_path: str, *, timeout_s: float = 60.0) -> Fetched:
    """Download and verify the server's latest release; UpdateError says what is wrong.

    Blocking (it runs its own event loop): call it from a command or a thread.
    """
    import asyncio

    state_dir = Path(conf.state_dir).expanduser()
    ident = credentials.load_identity(state_dir)
    if ident is None:
        raise UpdateError(f"this unit has no device secret in {state_dir / credentials.SECRET_FILE}; provision it first")
    pin = parse_fingerprint(conf.server.fingerprint) or _learned_pin(state_dir)
    if pin is None:
        raise UpdateError(f"{config_path}: key 'server.fingerprint' is empty and no fingerprint was learned: "
                          "releases are verified against the pinned site certificate; set it from `wallmesh device token`")
    manifest, data = asyncio.run(_download(conf, ident, pin, timeout_s))
    check_wheel(manifest, data)
    path = state_dir / VERSIONS / DOWNLOAD / manifest.wheel
    write_atomic(path, data, mode=0o644)
    return Fetched(manifest, path)


async def _download(conf: UnitConfig, ident: credentials.DeviceIdentity, pin: bytes, timeout_s: float) -> tuple[Manifest, bytes]:
    import aiohttp

    url = await _locate(conf)
    ssl: Any = aiohttp.Fingerprint(pin) if url.startswith("https://") else None
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
            token = await credentials.device_token(session, url, ssl, ident)
            headers = {"Authorization": f"Bearer {token}"}
            async with session.get(f"{url}/api/releases/latest", headers=headers, ssl=ssl) as resp:
                if resp.status == 404:
                    raise UpdateError(f"the server at {url} offers no release (publish one with `wallmesh release publish WHEEL`)")
                if resp.status != 200:
                    raise UpdateError(f"the server at {url} answered HTTP {resp.status} for the latest release")
                document = await resp.json(content_type=None)
            manifest = check_release(document, pin)
            async with session.get(f"{url}/api/releases/files/{manifest.wheel}", headers=headers, ssl=ssl) as resp:
                if resp.status != 200:
                    raise UpdateError(f"the server at {url} answered HTTP {resp.status} for {manifest.wheel}")
                data = bytearray()
                async for chunk in resp.content.iter_chunked(1 << 16):
                    data += chunk
                    if len(data) > manifest.size:  # more than was signed for: stop reading
                        break
    except AuthError as exc:
        raise UpdateError(f"the server at {url} refused this unit's device secret ({exc.code}); is the device revoked?") from exc
    except aiohttp.ServerFingerprintMismatch as exc:
        raise UpdateError(f"the server at {url} presented a certificate that is not the pinned one; nothing was changed") from exc
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
        raise UpdateError(f"cannot fetch the release from {url} ({exc.__class__.__name__}); nothing was changed") from exc
    return manifest, bytes(data)


def check_release(document: Any, pin: bytes) -> Manifest:
    """The manifest of a release document, once its certificate and signature verify."""
    try:
        text, signature, cert = document["manifest"], document["signature"], document["certificate"]
        if not (isinstance(text, str) and isinstance(signature, str) and isinstance(cert, str)):
            raise TypeError("fields are not strings")
        raw = base64.b64decode(signature, validate=True)
    except (KeyError, TypeError, binascii.Error) as exc:
        raise UpdateError(f"the release is not signed or malformed ({exc.__class__.__name__}); nothing was changed") from exc
    if not raw:
        raise UpdateError("the release is not signed; nothing was changed")
    try:
        verify(cert, pin, text.encode(), raw)
        return Manifest.from_text(text)
    except ReleaseError as exc:
        raise UpdateError(f"{exc}; nothing was changed") from exc


def check_wheel(manifest: Manifest, data: bytes) -> None:
    if len(data) != manifest.size or hashlib.sha256(data).hexdigest() != manifest.sha256:
        raise UpdateError(f"{manifest.wheel} does not match its signed manifest (size or SHA-256); nothing was changed")


def _learned_pin(state_dir: Path) -> bytes | None:
    try:
        return parse_fingerprint((state_dir / PIN_FILE).read_text())
    except (OSError, ValueError):
        return None


async def _locate(conf: UnitConfig) -> str:
    server = conf.server
    if server.url != "discover":
        return server.url.rstrip("/")
    from appliance.unit.discovery import DiscoveryError, discover

    try:
        found = await discover(server.discover_interfaces, server.discover_timeout_s)
    except DiscoveryError as exc:
        raise UpdateError("no signaling server answered on the LAN (mDNS); set [server] url in the unit config") from exc
    return found.url
