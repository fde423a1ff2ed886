"""ICE servers for ``welcome``, with TURN REST credentials for coturn.

coturn's ``use-auth-secret`` mode accepts a username ``"<expiry>:<peer>"`` and a password
``base64(HMAC-SHA1(secret, username))``, so the server can mint short-lived credentials per
session without telling coturn anything. With no STUN/TURN configured the list is empty:
units and browsers gather LAN host candidates only and never reach for a public server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from appliance.signaling.config import Ice


def turn_credentials(secret: str, peer: str, ttl_s: int, *, now: float | None = None) -> tuple[str, str]:
    """(username, password) valid for ``ttl_s`` seconds from ``now``."""
    expiry = int(now if now is not None else time.time()) + int(ttl_s)
    username = f"{expiry}:{peer}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def ice_servers(ice: Ice, peer: str) -> list[dict[str, Any]]:
    """The RTCIceServer list handed to ``peer`` (a fresh TURN credential each call)."""
    servers: list[dict[str, Any]] = []
    if ice.stun_urls:
        servers.append({"urls": list(ice.stun_urls)})
    if ice.turn_urls:
        entry: dict[str, Any] = {"urls": list(ice.turn_urls)}
        if ice.turn_secret:
            entry["username"], entry["credential"] = turn_credentials(ice.turn_secret, peer, ice.turn_ttl_s)
        servers.append(entry)
    return servers
