"""``wallmesh release publish WHEEL``: offer a wallmesh wheel to the site's units, signed.

Runs on the signaling server's machine, as the server's user, whether or not
the server runs: the wheel, its manifest and the site key's signature go into
``<state_dir>/releases``; a running server offers the new release at once.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from appliance.signaling.cliargs import overrides, store_parent


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    publish = sub.add_parser("publish", parents=[store_parent()], help="sign WHEEL with the site key and offer it to the units")
    publish.add_argument("wheel", type=Path, help="a wallmesh wheel (pip wheel . / python -m build)")


def run(args: argparse.Namespace) -> int:
    from appliance.signaling.offline import load_config, state_dir_of
    from appliance.signaling.releases import ReleaseError, publish
    from appliance.signaling.tls import ensure_site_cert

    config = load_config(args.config, overrides(args))
    state_dir = state_dir_of(config, args.state_dir)
    if not state_dir.is_dir():
        raise ReleaseError(f"{state_dir}: no signaling server state here; pass the server's --state-dir (or --config)")
    if config.tls.cert_file:
        cert, key = Path(config.tls.cert_file), Path(config.tls.key_file or config.tls.cert_file)
    else:
        cert, key = ensure_site_cert(state_dir, config.host)
    try:
        cert_pem, key_pem = cert.read_bytes(), key.read_bytes()
    except OSError as exc:
        raise ReleaseError(f"cannot read the site certificate or key {exc.filename} ({exc.strerror}); run this as the server's user") from exc
    if not args.wheel.is_file():
        raise ReleaseError(f"{args.wheel}: no such file")
    manifest = publish(state_dir, args.wheel, cert_pem, key_pem)
    print(f"published wallmesh {manifest.version} ({manifest.wheel}, sha256 {manifest.sha256})")
    return 0
