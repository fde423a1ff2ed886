"""``wallmesh demo``: an embedded server and several simulated units in one room, on this machine."""

from __future__ import annotations

import argparse
import re
from pathlib import Path


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d{3,4})x(\d{3,4})", text)
    if not m:
        raise argparse.ArgumentTypeError("expected WIDTHxHEIGHT, e.g. 640x480")
    return int(m.group(1)), int(m.group(2))


def _units(text: str) -> int:
    n = int(text)
    if not 2 <= n <= 12:
        raise argparse.ArgumentTypeError("between 2 and 12 units (a mesh holds 6; more go through --sfu)")
    return n


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--units", type=_units, default=3, help="simulated units, each its own process (default 3)")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this many seconds (default: Ctrl-C)")
    parser.add_argument("--snapshot", type=Path, default=None, metavar="DIR", help="write PNGs of unit 1's display here")
    parser.add_argument("--size", type=_size, default=(640, 480), help="camera size of every unit (default 640x480)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary state directory (logs, configs)")
    parser.add_argument("--sfu", action="store_true",
                        help="give the site a conference server (Janus, in a network namespace: needs root) so rooms grow past 6")


def run(args: argparse.Namespace) -> int:
    import asyncio

    from appliance.demo.run import demo

    if args.units > 6 and not args.sfu:
        raise SystemExit("wallmesh demo: a mesh holds 6 units; add --sfu for more (the room then goes through Janus)")
    return asyncio.run(demo(units=args.units, seconds=args.seconds, snapshot=args.snapshot, size=args.size, keep=args.keep, sfu=args.sfu))
