"""``wallmesh demo``."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    print("wallmesh demo: not built yet", file=sys.stderr)
    return 1
