"""``wallmesh firstboot``: provision this unit from the boot partition.

Run by ``wallmesh-firstboot.service`` while ``/var/lib/wallmesh/provisioned``
does not exist. Every path is an option so the command can be pointed at a
mounted card or a test tree.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--boot", type=Path, default=Path("/boot/firmware"), help="boot partition holding wallmesh.toml")
    parser.add_argument("--etc", type=Path, default=Path("/etc"), help="where wallmesh/unit.toml and hostname are written")
    parser.add_argument("--state-dir", type=Path, default=Path("/var/lib/wallmesh"), help="the unit's state directory")
    parser.add_argument("--machine-id-path", type=Path, default=None, help="machine id file (default: ETC/machine-id)")
    parser.add_argument("--sys-root", type=Path, default=Path("/sys"), help="sysfs root (board serial)")
    parser.add_argument("--proc-root", type=Path, default=Path("/proc"), help="procfs root (cpuinfo serial)")
    parser.add_argument("--fleet-defaults", type=Path, default=None, help="fleet-wide defaults (default: ETC/wallmesh/fleet.toml)")
    parser.add_argument("--console", type=Path, default=None, help="terminal to show problems on (the service passes /dev/tty1)")
    parser.add_argument("--retry", action="store_true", help="on failure, explain, wait with back-off and try again until done")
    parser.add_argument("--no-apply-hostname", action="store_true", help="only write ETC/hostname; do not rename the running system")


def run(args: argparse.Namespace) -> int:
    import asyncio

    from appliance.fleet.firstboot import Paths, Provisioner, ProvisioningError

    paths = Paths(
        boot=args.boot,
        etc=args.etc,
        state_dir=args.state_dir,
        machine_id=args.machine_id_path or args.etc / "machine-id",
        sys_root=args.sys_root,
        proc_root=args.proc_root,
        console=args.console,
        fleet_defaults=args.fleet_defaults or args.etc / "wallmesh" / "fleet.toml",
    )
    live = not args.no_apply_hostname and args.etc.resolve() == Path("/etc")
    prov = Provisioner(paths, set_hostname=apply_hostname if live else None)
    try:
        asyncio.run(prov.run(retry=args.retry))
    except ProvisioningError as exc:
        print(f"wallmesh firstboot: {exc}", file=sys.stderr)
        return 1
    return 0


def apply_hostname(name: str) -> None:
    """Rename the running system (hostnamectl when systemd-hostnamed is there, else the kernel)."""
    if shutil.which("hostnamectl"):
        done = subprocess.run(["hostnamectl", "set-hostname", name], capture_output=True, text=True, timeout=30, check=False)
        if done.returncode == 0:
            return
    with open("/proc/sys/kernel/hostname", "w") as fh:
        fh.write(name)
