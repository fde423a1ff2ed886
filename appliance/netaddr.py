"""Addresses, URLs and certificate fingerprints: the one place their shapes are written down.

The signaling server, the unit, first boot and ``wallmesh doctor`` all need to say "is this
host loopback", "is this a server base URL" and "is this a SHA-256 certificate fingerprint".
The patterns here are plain regex strings (config ``pattern=`` takes them as they are) and the
helpers are pure, so this module can be imported anywhere, config loading included.
"""

from __future__ import annotations

import ipaddress

# A signaling server's base URL: scheme, host[:port], an optional path; no spaces.
BASE_URL = r"https?://[^\s/]+(/[^\s]*)?"
# A configured server: a base URL, or "discover" to find it by mDNS.
SERVER_URL_PATTERN = rf"^(discover|{BASE_URL})$"

# A SHA-256 fingerprint as hex, colons between the bytes allowed (32 bytes).
FINGERPRINT = r"[0-9A-Fa-f]{2}(:?[0-9A-Fa-f]{2}){31}"
# A fingerprint setting: one fingerprint, or empty for none.
FINGERPRINT_PATTERN = rf"^({FINGERPRINT})?$"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and any loopback IP address (127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_fingerprint(text: str) -> bytes | None:
    """The digest bytes of a hex fingerprint (colons allowed); None for an empty one.

    Raises ValueError for text that is not hex.
    """
    hexdigits = text.replace(":", "").strip()
    if not hexdigits:
        return None
    return bytes.fromhex(hexdigits)


def normalize_fingerprint(text: str) -> str:
    """A SHA-256 fingerprint as 64 lower-case hex digits, or "" when ``text`` is not one."""
    hexdigits = text.replace(":", "").strip().lower()
    return hexdigits if len(hexdigits) == 64 and all(c in "0123456789abcdef" for c in hexdigits) else ""


def format_fingerprint(digest: bytes | str) -> str:
    """Colon-separated upper-case hex, as ``wallmesh device token`` prints it (``AB:CD:…``).

    Takes the digest bytes, or its hex digits.
    """
    hexdigits = digest.hex() if isinstance(digest, bytes) else digest.replace(":", "")
    return ":".join(hexdigits[i:i + 2] for i in range(0, len(hexdigits), 2)).upper()
