"""The site certificate: made once, private keys private, and never left half-written."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import pytest

from appliance.signaling import tls
from appliance.signaling.auth import KeyRing


def test_made_once_with_private_keys(tmp_path: Path) -> None:
    cert, key = tls.ensure_site_cert(tmp_path, "127.0.0.1")
    assert tls.ensure_site_cert(tmp_path, "127.0.0.1") == (cert, key)
    fp = tls.fingerprint_pem(cert.read_bytes())
    assert tls.fingerprint_pem(tls.ensure_site_cert(tmp_path, "127.0.0.1")[0].read_bytes()) == fp
    for name in ("ca.key", "server.key"):
        assert stat.S_IMODE(os.stat(tmp_path / "tls" / name).st_mode) == 0o600
    tls.server_context(cert, key)


@pytest.fixture
def power_cut(monkeypatch):
    """``with power_cut("name"):`` -- the write that would put ``name`` in place never lands."""
    real = os.replace

    @contextlib.contextmanager
    def cut_at(name: str):
        def replace(src, dst, *a, **kw):
            if str(dst).endswith(name):
                raise OSError("power cut")
            return real(src, dst, *a, **kw)

        monkeypatch.setattr(os, "replace", replace)
        try:
            with pytest.raises(OSError, match="power cut"):
                yield
        finally:
            monkeypatch.setattr(os, "replace", real)

    return cut_at


def test_power_cut_while_writing_leaves_no_half_certificate(tmp_path: Path, power_cut) -> None:
    with power_cut("server.crt"):
        tls.ensure_site_cert(tmp_path, "127.0.0.1")
    assert not (tmp_path / "tls" / "server.crt").exists()
    cert, key = tls.ensure_site_cert(tmp_path, "127.0.0.1")
    tls.server_context(cert, key)  # a complete pair that loads
    assert sorted(p.name for p in (tmp_path / "tls").iterdir()) == ["ca.crt", "ca.key", "server.crt", "server.key"]


def test_power_cut_during_key_rotation_keeps_the_old_index(tmp_path: Path, power_cut) -> None:
    ring = KeyRing(tmp_path, max_token_ttl_s=600)
    ring.load()
    first = ring.current
    with power_cut("index.json"):
        ring.rotate()
    again = KeyRing(tmp_path, max_token_ttl_s=600)
    again.load()
    assert again.current == first
