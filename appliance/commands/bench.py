"""``wallmesh bench [signaling|media|display|audio|faults|sfu] [--json]``: the project's measurements."""

from __future__ import annotations

import argparse
import importlib
import sys

#: Each part's entry point, ``run(quick) -> list[Result]``, as "module:function"; imported
#: only when that part runs.
PARTS = {
    "media": "appliance.bench.media:run",
    "display": "appliance.bench.display:run",
    "signaling": "appliance.bench.signaling.runner:run",
    "audio": "appliance.bench.audio:run",
    "faults": "appliance.bench.faults:run",
    "sfu": "appliance.bench.sfu:run",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("part", nargs="?", choices=tuple(PARTS), help="run one part only (default: all)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--quick", action="store_true", help="smaller loads and shorter runs (smoke test)")


def run(args: argparse.Namespace) -> int:
    from appliance.bench.report import Report

    report = Report()
    for part in [args.part] if args.part else PARTS:
        module, _, function = PARTS[part].partition(":")
        print(f"# bench {part} …", file=sys.stderr, flush=True)
        report.results.extend(getattr(importlib.import_module(module), function)(quick=args.quick))
    print(report.to_json() if args.json else report.to_table())
    return 0
