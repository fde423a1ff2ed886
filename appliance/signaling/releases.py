"""Releases the site offers its units: a wallmesh wheel, a manifest, the site key's signature.

``wallmesh release publish WHEEL`` (:func:`publish`) copies the wheel into
``<state_dir>/releases/<version>/`` and signs a small manifest (version, file
name, size, SHA-256) with the private key of the site's TLS certificate. Units
already pin that certificate's fingerprint from enrollment, so the key that
secures the connection also vouches for the software, and no second trust root
has to be handed out. The signature covers the manifest's exact bytes and the
manifest covers the wheel's digest, so a release stays verifiable wherever its
files travel.

The server answers devices (device token) at ``GET /api/releases/latest``
(:data:`LATEST`: the manifest text, the signature, the leaf certificate) and
``GET /api/releases/files/{name}``. ``latest.json`` is replaced last and
atomically, so a publish cut short leaves the previous release offered.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from appliance.errors import AuthError, WallmeshError
from appliance.files import write_atomic

DIRNAME = "releases"
LATEST = "latest.json"
FORMAT = 1
VERSION_RE = re.compile(r"^[0-9][0-9A-Za-z.+!_-]{0,63}$")
WHEEL_RE = re.compile(r"^wallmesh-([0-9][0-9A-Za-z.+!_]*)-[^/\\]+\.whl$")


class ReleaseError(WallmeshError, ValueError):
    """A wheel that cannot be published, or a release whose signature or digest does not verify."""


@dataclass(frozen=True)
class Manifest:
    """What a signature vouches for: which version, in which file, with which digest."""

    version: str
    wheel: str
    sha256: str
    size: int
    published: float

    def to_text(self) -> str:
        return json.dumps({"format": FORMAT, "version": self.version, "wheel": self.wheel, "sha256": self.sha256,
                           "size": self.size, "published": self.published}, sort_keys=True)

    @classmethod
    def from_text(cls, text: str) -> Manifest:
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT:
                raise ReleaseError(f"release manifest format {data.get('format')!r} is not {FORMAT}; update by hand")
            manifest = cls(str(data["version"]), str(data["wheel"]), str(data["sha256"]), int(data["size"]), float(data["published"]))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            if isinstance(exc, ReleaseError):
                raise
            raise ReleaseError(f"the release manifest is malformed ({exc.__class__.__name__})") from exc
        if not VERSION_RE.match(manifest.version) or not WHEEL_RE.match(manifest.wheel):
            raise ReleaseError(f"the release manifest names an unusable version {manifest.version!r} or file {manifest.wheel!r}")
        return manifest


def wheel_version(path: Path) -> str:
    """The version a wallmesh wheel carries in its metadata; ReleaseError for anything else."""
    if not WHEEL_RE.match(path.name):
        raise ReleaseError(f"{path}: not a wallmesh wheel (expected wallmesh-VERSION-...whl)")
    try:
        with zipfile.ZipFile(path) as wheel:
            names = [n for n in wheel.namelist() if re.fullmatch(r"wallmesh-[^/]+\.dist-info/METADATA", n)]
            if len(names) != 1:
                raise ReleaseError(f"{path}: the wheel holds no wallmesh metadata")
            meta = wheel.read(names[0]).decode("utf-8", "replace")
    except (OSError, zipfile.BadZipFile) as exc:
        raise ReleaseError(f"{path}: cannot read the wheel ({exc})") from exc
    fields = dict(line.split(": ", 1) for line in meta.splitlines() if ": " in line)
    version = fields.get("Version", "")
    if fields.get("Name", "").lower() != "wallmesh" or not VERSION_RE.match(version):
        raise ReleaseError(f"{path}: the metadata names {fields.get('Name')!r} {version!r}, not a wallmesh version")
    return version


def sign(key_pem: bytes, data: bytes) -> bytes:
    """Sign ``data`` with the site's private key (EC: ECDSA, RSA: PSS, Ed25519), SHA-256."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

    key = serialization.load_pem_private_key(key_pem, password=None)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.MAX_LENGTH), hashes.SHA256())
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    raise ReleaseError(f"the site key is a {type(key).__name__}; releases need an EC, RSA or Ed25519 key")


def verify(cert_pem: str, pinned: bytes, data: bytes, signature: bytes) -> None:
    """Check that ``cert_pem`` is the pinned site certificate and that it signed ``data``."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
    except ValueError as exc:
        raise ReleaseError("the release carries no readable site certificate") from exc
    if cert.fingerprint(hashes.SHA256()) != pinned:
        raise ReleaseError("the release is signed by a certificate that is not this unit's pinned site certificate")
    key = cert.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.MAX_LENGTH), hashes.SHA256())
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            raise ReleaseError(f"the site certificate's key ({type(key).__name__}) cannot sign releases")
    except InvalidSignature as exc:
        raise ReleaseError("the release's signature does not verify against the site certificate") from exc


def publish(state_dir: Path, wheel: Path, cert_pem: bytes, key_pem: bytes) -> Manifest:
    """Copy ``wheel`` into the releases directory, sign its manifest and offer it as the latest."""
    version = wheel_version(wheel)
    data = wheel.read_bytes()
    manifest = Manifest(version, wheel.name, hashlib.sha256(data).hexdigest(), len(data), round(time.time(), 3))
    text = manifest.to_text()
    signature = sign(key_pem, text.encode())
    leaf = _first_pem(cert_pem)
    folder = state_dir / DIRNAME / version
    write_atomic(folder / wheel.name, data, mode=0o644)
    document = {"manifest": text, "signature": base64.b64encode(signature).decode(), "certificate": leaf}
    write_atomic(folder / "release.json", json.dumps(document) + "\n", mode=0o644)
    write_atomic(state_dir / DIRNAME / LATEST, json.dumps(document) + "\n", mode=0o644)
    return manifest


def _first_pem(chain: bytes) -> str:
    text = chain.decode()
    end = "-----END CERTIFICATE-----"
    if end not in text:
        raise ReleaseError("the site certificate file holds no PEM certificate")
    return text[: text.index(end) + len(end)] + "\n"


# -- serving ------------------------------------------------------------------------

DIRECTORY = web.AppKey("releases_dir", Path)


def add_routes(app: web.Application, state_dir: Path) -> None:
    """Serve the releases in ``<state_dir>/releases`` to enrolled devices."""
    app[DIRECTORY] = state_dir / DIRNAME
    app.router.add_get("/api/releases/latest", latest)
    app.router.add_get("/api/releases/files/{name}", wheel_file)


def _device(request: web.Request) -> None:
    from appliance.signaling.state import SERVICES

    services = request.app[SERVICES]
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        raise web.HTTPUnauthorized(reason="send a device token as Authorization: Bearer TOKEN")
    try:
        claims = services.tokens.verify(header[7:], "device")
    except AuthError as exc:
        raise web.HTTPUnauthorized(reason=exc.message) from exc
    if services.refuses(claims):
        raise web.HTTPUnauthorized(reason="this device is revoked")


async def latest(request: web.Request) -> web.Response:
    _device(request)
    path = request.app[DIRECTORY] / LATEST
    try:
        body: Any = path.read_bytes()
    except FileNotFoundError:
        raise web.HTTPNotFound(reason="no release is published; run `wallmesh release publish WHEEL` on the server") from None
    return web.Response(body=body, content_type="application/json", headers={"Cache-Control": "no-store"})


async def wheel_file(request: web.Request) -> web.StreamResponse:
    _device(request)
    name = request.match_info["name"]
    if WHEEL_RE.match(name):
        for folder in request.app[DIRECTORY].glob("*/"):
            if (folder / name).is_file():
                return web.FileResponse(folder / name, headers={"Content-Type": "application/octet-stream"})
    raise web.HTTPNotFound(reason="no such release file")
