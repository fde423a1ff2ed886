"""``wallmesh doctor``: check this unit and say plainly what is wrong and how to fix it.

Exit status 1 when any check fails. The sysfs, /dev and /proc roots are
options so the checks can be pointed at a copy of another unit's trees.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=Path("/etc/wallmesh/unit.toml"), help="the unit config to check")
    parser.add_argument("--sys-root", type=Path, default=Path("/sys"), help="sysfs root")
    parser.add_argument("--dev-root", type=Path, default=Path("/dev"), help="device node root")
    parser.add_argument("--proc-root", type=Path, default=Path("/proc"), help="procfs root")
    parser.add_argument("--no-network", action="store_true", help="skip discovery and the server checks")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds each network check may take")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from appliance.fleet.doctor import Context, exit_status, render_json, render_text, run_checks

    ctx = Context(config_path=args.config, sys_root=args.sys_root, dev_root=args.dev_root, proc_root=args.proc_root,
                  network=not args.no_network, timeout_s=args.timeout)
    findings = run_checks(ctx)
    print(render_json(findings) if args.json else render_text(findings))
    return exit_status(findings)
