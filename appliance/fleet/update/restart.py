"""After an install: start the trial now by restarting the unit service, where systemd runs it.

A trial runs at the unit's next start (:mod:`.launch`). On a unit, that start
is ``systemctl restart wallmesh-unit.service``: only root may ask for it (the
service user may not, and the image carries no polkit rule to let it), and
only where systemd is the init system. Everywhere else this says why not and
gives the one command that starts the trial, so the operator never has to
guess.

Run as root, ``wallmesh update`` installs as the owner of the state directory
(the service user), since a slot written by root would be unusable to the
service; :func:`as_owner` is that step.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from appliance.fleet.update.slots import UpdateError

SERVICE = "wallmesh-unit.service"
BOOTED = Path("/run/systemd/system")  # present only while systemd is PID 1 (sd_booted)
RESTART_TIMEOUT_S = 150.0  # the service's TimeoutStopSec + TimeoutStartSec, and some


@dataclass(frozen=True)
class Restarted:
    """Whether the service was restarted, and what to tell the operator."""

    done: bool
    message: str


def restart_unit(config_path: str, *, service: str = SERVICE, booted: Path = BOOTED, systemctl: str = "systemctl",
                 euid: int | None = None) -> Restarted:
    """Restart ``service`` so the trial starts now, or say why not and what to run instead."""
    euid = os.geteuid() if euid is None else euid
    by_hand = f"wallmesh update launch --config {config_path}"
    exe = shutil.which(systemctl)
    if not booted.is_dir() or exe is None:
        return Restarted(False, f"systemd does not run this machine, so no service starts the unit here; "
                                f"start the trial with: {by_hand}")
    props = _show(exe, service)
    if not props:
        return Restarted(False, f"systemd does not answer `systemctl show {service}` here; start the trial with: {by_hand}")
    if props.get("LoadState") != "loaded":
        return Restarted(False, f"{service} is not installed here ({props.get('LoadState') or 'unknown'}); "
                                f"start the trial with: {by_hand}")
    state = props.get("ActiveState", "unknown")
    if state not in ("active", "activating", "reloading"):
        return Restarted(False, f"{service} is {state}, so the trial runs when it starts: sudo systemctl start {service}")
    if euid != 0:
        return Restarted(False, f"only root may restart {service}; start the trial with: sudo systemctl restart {service}")
    try:
        done = subprocess.run([exe, "restart", service], capture_output=True, text=True, timeout=RESTART_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return Restarted(False, f"{service} did not come back within {RESTART_TIMEOUT_S:.0f} s; "
                                f"see journalctl -u {service} (a trial that does not confirm rolls back by itself)")
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["no reason given"])[-1]
        return Restarted(False, f"systemctl could not restart {service} ({why}); see journalctl -u {service}")
    return Restarted(True, f"restarted {service}: the trial runs now; `wallmesh update status` says when it is confirmed")


def _show(exe: str, service: str) -> dict[str, str]:
    try:
        done = subprocess.run([exe, "show", service, "-p", "LoadState", "-p", "ActiveState"], capture_output=True,
                              text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if done.returncode != 0:
        return {}
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


def as_owner(state_dir: Path, argv: Sequence[str]) -> int | None:
    """Run ``wallmesh ARGV`` as the owner of ``state_dir`` when that is not us and we are root.

    None when nothing needs doing (we are the owner, or not root: the caller's own
    checks then apply); else the child's exit status, its output passed through.
    """
    try:
        owner = state_dir.stat()
    except OSError:
        return None
    if os.geteuid() != 0 or owner.st_uid == 0:
        return None
    try:
        entry = pwd.getpwuid(owner.st_uid)
        name, home = entry.pw_name, entry.pw_dir
    except KeyError:
        name, home = str(owner.st_uid), str(state_dir)
    env = dict(os.environ, HOME=home)
    try:
        done = subprocess.run([sys.executable, "-m", "appliance.cli", *argv], user=owner.st_uid, group=owner.st_gid,
                              extra_groups=[], env=env, cwd="/", check=False)
    except OSError as exc:  # that user cannot even start this wallmesh (a checkout under /root, say)
        raise UpdateError(f"{state_dir} belongs to {name}, who cannot start {sys.executable} ({exc.strerror or exc}): "
                          f"run this as that user (sudo -u {name} wallmesh update ...)") from exc
    return done.returncode
