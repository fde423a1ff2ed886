"""``wallmesh.toml`` on the boot partition: what an administrator writes on each card.

The boot partition is the one part of a freshly flashed card anyone can edit
from a laptop, so it carries the few per-site facts a unit cannot work out by
itself: where the server is, its certificate fingerprint, the room, the
unit's display name and a fleet enrollment token. An image may also carry a
fleet-wide default (``/etc/wallmesh/fleet.toml``, same keys, no token) that
the card's file overrides key by key.

The enrollment token is a secret: once the unit has enrolled, the token line
is removed from the card (see :func:`scrub_token`).
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path

from appliance import config as cfg
from appliance.config import setting
from appliance.errors import ConfigError
from appliance.files import write_atomic
from appliance.netaddr import FINGERPRINT_PATTERN, SERVER_URL_PATTERN
from appliance.protocol import ROOM_PATTERN

FILENAME = "wallmesh.toml"
TOKEN_KEY = "enrollment_token"


@dataclass(frozen=True)
class BootFile:
    server: str = setting(
        "discover",
        help="signaling server base URL (https://host:port), or 'discover' to find it on the LAN by mDNS",
        pattern=SERVER_URL_PATTERN,
    )
    fingerprint: str = setting(
        "",
        help="SHA-256 fingerprint of the server's certificate, as `wallmesh device token` prints it",
        pattern=FINGERPRINT_PATTERN,
    )
    room: str = setting("lobby", help="room the unit joins", pattern=ROOM_PATTERN)
    name: str = setting("", help="name shown to others in the room (default: the host name)")
    enrollment_token: str = setting("", help="fleet enrollment token from `wallmesh device token` (removed after use)")
    discover_interfaces: tuple[str, ...] = setting([], help="addresses mDNS discovery listens on (empty: all)")
    camera: str = setting(
        "picamera", help="camera: picamera (Pi camera module), v4l2 (USB webcam) or pattern (no camera)",
        choices=("picamera", "v4l2", "pattern"),
    )


def read(boot_dir: Path, fleet_defaults: Path | None = None) -> BootFile:
    """The card's file layered over the fleet default; a missing card file means defaults only."""
    data: dict = {}
    if fleet_defaults is not None and fleet_defaults.exists():
        data = _table(fleet_defaults)
        if data.get(TOKEN_KEY):
            raise ConfigError(str(fleet_defaults), TOKEN_KEY, "an enrollment token must not be baked into the image; put it on each card")
    card = boot_dir / FILENAME
    if card.exists():
        data = cfg.merge(data, _table(card))
    return cfg.build(BootFile, data, str(card))


def _table(path: Path) -> dict:
    import tomllib

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), None, "not UTF-8 text") from exc
    except OSError as exc:
        raise ConfigError(str(path), None, f"cannot read the file: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), None, f"not valid TOML: {exc}") from exc


_TOKEN_LINE = re.compile(rf"^\s*[\"']?{TOKEN_KEY}[\"']?\s*=")


def scrub_token(boot_dir: Path) -> bool:
    """Remove the enrollment token line from the card's file, keeping everything else.

    Line-based on purpose: the administrator's comments and layout survive.
    Returns True when a token was removed.
    """
    card = boot_dir / FILENAME
    try:
        text = card.read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    lines = text.splitlines(keepends=True)
    kept = [line for line in lines if not _TOKEN_LINE.match(line)]
    if len(kept) == len(lines):
        return False
    kept.append("# enrollment_token removed by wallmesh firstboot after enrolling\n")
    write_atomic(card, "".join(kept), mode=0o600)
    return True


@dataclass(frozen=True)
class TokenHints:
    """What a fleet enrollment token says about its server (read without verifying it)."""

    url: str = ""
    fingerprint: str = ""
    rooms: tuple[str, ...] = ()  # empty: the token does not say


def token_hints(token: str) -> TokenHints:
    """Read the server URL and certificate fingerprint a fleet token carries, if any.

    The unit cannot check the token's signature (only the server can); these
    hints only tell it where to present the token. A token that is not a JWT
    yields no hints.
    """
    parts = token.strip().split(".")
    if len(parts) != 3:
        return TokenHints()
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, TypeError):
        return TokenHints()
    if not isinstance(claims, dict):
        return TokenHints()
    url = _first_str(claims, ("url", "server", "server_url"))
    fp = _first_str(claims, ("fp", "fingerprint", "server_fingerprint"))
    rooms = claims.get("rooms")
    rooms = tuple(r for r in rooms if isinstance(r, str)) if isinstance(rooms, list) else ()
    return TokenHints(url=url.rstrip("/"), fingerprint=fp, rooms=rooms)


def _first_str(claims: dict, keys: tuple[str, ...]) -> str:
    for key in keys:
        value = claims.get(key)
        if isinstance(value, str) and value:
            return value
    return ""
