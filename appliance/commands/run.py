"""``wallmesh run --config FILE``: the unit daemon.

Builds a :class:`~appliance.unit.app.UnitDaemon` from the config file, tells
systemd when it is ready, and runs until SIGTERM/SIGINT. A configuration error
or an absent device ends it at once with a one-line reason naming the config key.
"""

from __future__ import annotations

import argparse

DEFAULT_CONFIG = "/etc/wallmesh/unit.toml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"unit config file (default {DEFAULT_CONFIG})")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this many seconds (tests, demo)")


def run(args: argparse.Namespace) -> int:
    from appliance.unit import config
    from appliance.unit.main import run_daemon

    conf = config.load(args.config)
    return run_daemon(conf, seconds=args.seconds)
