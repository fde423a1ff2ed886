"""The site certificate: a small CA and a server certificate generated on first start.

A LAN appliance has no public name, so the site signs its own certificate and hands its
SHA-256 fingerprint to units (in enrollment tokens and the mDNS advert); units pin it.
Files live in ``<state_dir>/tls`` (keys mode 0600) unless the config names a cert and key.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

from appliance.files import write_atomic
from appliance.netaddr import format_fingerprint

log = logging.getLogger(__name__)


def fingerprint_pem(pem: bytes) -> str:
    """SHA-256 of the first certificate's DER, as colon-separated upper-case hex."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_pem_x509_certificate(pem)
    return format_fingerprint(cert.fingerprint(hashes.SHA256()))


def fingerprint_der(der: bytes) -> str:
    import hashlib

    return format_fingerprint(hashlib.sha256(der).digest())


def _names(host: str) -> tuple[list[str], list[str]]:
    dns = {"localhost", socket.gethostname(), socket.gethostname() + ".local"}
    ips = {"127.0.0.1", "::1"}
    try:
        ipaddress.ip_address(host)
        if host not in ("0.0.0.0", "::"):
            ips.add(host)
    except ValueError:
        if host:
            dns.add(host)
    return sorted(dns), sorted(ips)


def ensure_site_cert(state_dir: Path, host: str) -> tuple[Path, Path]:
    """Return (cert, key) paths in ``<state_dir>/tls``, creating the CA and server cert if absent."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    tls_dir = state_dir / "tls"
    cert_path, key_path = tls_dir / "server.crt", tls_dir / "server.key"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = datetime.now(UTC)
    pem = serialization.Encoding.PEM
    plain = serialization.NoEncryption()
    pkcs8 = serialization.PrivateFormat.PKCS8

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"wallmesh site CA {socket.gethostname()}")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    dns, ips = _names(host)
    san = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, socket.gethostname())]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    # each file replaced atomically and the certificate last: a power cut part-way leaves
    # no certificate, so the next start makes the whole set again instead of serving half of it
    write_atomic(tls_dir / "ca.key", ca_key.private_bytes(pem, pkcs8, plain), mode=0o600)
    write_atomic(tls_dir / "ca.crt", ca.public_bytes(pem), mode=0o644)
    write_atomic(key_path, key.private_bytes(pem, pkcs8, plain), mode=0o600)
    write_atomic(cert_path, cert.public_bytes(pem) + ca.public_bytes(pem), mode=0o644)
    log.info("generated the site CA and server certificate in %s", tls_dir)
    return cert_path, key_path


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    return ctx

