"""Address, URL and fingerprint shapes shared by the server, the unit, first boot and doctor."""

from __future__ import annotations

import hashlib
import re

import pytest

from appliance import netaddr

DIGEST = hashlib.sha256(b"a certificate").digest()


@pytest.mark.parametrize("host, expected", [
    ("localhost", True), ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.10", False), ("example.local", False), ("", False),
])
def test_is_loopback(host, expected) -> None:
    assert netaddr.is_loopback(host) is expected


@pytest.mark.parametrize("url, ok", [
    ("discover", True), ("https://sig.local:8443", True), ("http://127.0.0.1:8080", True),
    ("https://[::1]:8443/base", True), ("ftp://x", False), ("https://", False), ("https://a b", False),
    ("discover ", False),
])
def test_server_url_pattern(url, ok) -> None:
    assert (re.fullmatch(netaddr.SERVER_URL_PATTERN, url) is not None) is ok


def test_fingerprint_forms_agree() -> None:
    colons = netaddr.format_fingerprint(DIGEST)
    assert colons == ":".join(f"{b:02X}" for b in DIGEST)  # how `wallmesh device token` prints it
    assert netaddr.format_fingerprint(DIGEST.hex()) == colons
    for text in (colons, DIGEST.hex(), DIGEST.hex().upper(), colons.lower()):
        assert re.fullmatch(netaddr.FINGERPRINT_PATTERN, text)
        assert netaddr.parse_fingerprint(text) == DIGEST
        assert netaddr.normalize_fingerprint(text) == DIGEST.hex()
    assert re.fullmatch(netaddr.FINGERPRINT_PATTERN, "")
    assert netaddr.parse_fingerprint("") is None and netaddr.parse_fingerprint(" \n") is None
    for bad in ("abcd", DIGEST.hex()[:-2], DIGEST.hex() + "00", "zz" * 32):
        assert not re.fullmatch(netaddr.FINGERPRINT_PATTERN, bad)
        assert netaddr.normalize_fingerprint(bad) == ""
    with pytest.raises(ValueError):
        netaddr.parse_fingerprint("zz" * 32)
