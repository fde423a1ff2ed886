"""The ``wallmesh`` entry point: builds the argument parser and dispatches.

Each command lives in ``appliance/commands/<name>.py`` with two functions,
``add_arguments(parser)`` and ``run(args) -> int``. Command modules import only
the standard library at top level; whatever is heavy (aiortc, pygame, pymongo)
is imported inside ``run`` so ``wallmesh --help`` stays instant and works on a
machine without the media stack.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from appliance import __version__
from appliance.errors import WallmeshError

COMMANDS = {
    "demo": "one machine, no set-up: an embedded server and several simulated units in one room",
    "signal": "run the site's signaling server",
    "run": "run the unit daemon",
    "user": "user administration (add, list, remove)",
    "device": "device administration (token, list, revoke)",
    "doctor": "check this unit's camera, audio, display, GPIO and server, and say what is wrong",
    "firstboot": "provision this unit from the boot partition (run by wallmesh-firstboot.service)",
    "bench": "measure latency, CPU per peer, join time, compositor and signaling load",
    "update": "install the site's latest release as a trial, start the unit's chosen version, say which runs",
    "release": "sign a wallmesh wheel with the site key and offer it to the units (on the server)",
    "audio": "the microphone's processing chain on files (echo cancellation, noise suppression, gain)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wallmesh", description="Conference-room wall units in a WebRTC mesh.")
    parser.add_argument("--version", action="version", version=f"wallmesh {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, summary in COMMANDS.items():
        module = importlib.import_module(f"appliance.commands.{name}")
        cmd = sub.add_parser(name, help=summary, description=summary)
        module.add_arguments(cmd)
        cmd.set_defaults(command_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # pymongo's DEBUG records carry whole commands and replies (a user's argon2 hash, a
    # device's): never below INFO, whatever -v says
    logging.getLogger("pymongo").setLevel(max(level, logging.INFO))
    try:
        return int(args.command_module.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except WallmeshError as exc:
        print(f"wallmesh {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
