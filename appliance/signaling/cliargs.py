"""Flags shared by ``wallmesh signal``, ``user`` and ``device``; stdlib only, so ``--help`` stays instant."""

from __future__ import annotations

import argparse


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="server config file (default /etc/wallmesh/signal.toml when present)")
    parser.add_argument("--state-dir", help="keys, certificates and the embedded store")
    parser.add_argument("--mongodb-uri", help="use this MongoDB instead of the embedded store")


def store_parent() -> argparse.ArgumentParser:
    """A parent parser carrying the store flags, for each sub-action (``user add --state-dir D``)."""
    parent = argparse.ArgumentParser(add_help=False)
    add_store_arguments(parent)
    return parent


def overrides(args: argparse.Namespace) -> dict[str, object]:
    return {"state_dir": args.state_dir, "mongodb_uri": args.mongodb_uri}
