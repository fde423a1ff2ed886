"""The unit's start: pick a version, run it as the service's main process, judge a trial.

``wallmesh update launch`` is what ``wallmesh-unit.service`` starts. It asks
:meth:`Slots.choose` which version to run and replaces itself with that
version's ``wallmesh run`` (``exec``: the daemon keeps the service's main PID,
so readiness and watchdog notifications reach systemd unchanged). For a trial
it first leaves behind a small watcher process that polls the new daemon's
``GET /status`` on loopback: the trial is confirmed once the daemon has joined
its room, or is idle with the server reachable, with its event loop answering
(what the watchdog watches). The watcher is this - the known-good - version's
code, so a broken build cannot vouch for itself. If the daemon exits first,
or the deadline passes (the daemon is then killed, so systemd restarts the
service), the watcher writes down why and the next start rolls back.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from appliance.fleet.update.slots import Choice, Slots

log = logging.getLogger(__name__)

DEFAULT_DEADLINE_S = 120.0
POLL_S = 0.5


def status_url(config_path: Path) -> str | None:
    """The daemon's status endpoint from its config file (read loosely: a newer version may add keys)."""
    try:
        status = tomllib.loads(config_path.read_text()).get("status", {})
        host, port = str(status.get("host", "127.0.0.1")), int(status.get("port", 8787))
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    if port == 0:
        return None
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/status"


def healthy(doc: Any, pid: int) -> str | None:
    """Why the status document ``doc`` of daemon ``pid`` counts as healthy, or None."""
    if not isinstance(doc, dict) or doc.get("process", {}).get("pid") != pid:
        return None
    if not doc.get("signaling", {}).get("connected"):
        return None
    if doc.get("process", {}).get("loop_lag_ms", 0) > 10_000:
        return None
    if doc.get("joined_at") is not None:
        return f"joined room {doc.get('room')}"
    if doc.get("state") == "idle":
        return "idle with the server reachable"
    return None


def launch(slots: Slots, run_args: Sequence[str], *, config_path: Path, deadline_s: float) -> NoReturn:
    """Choose, start the watcher for a trial, and become the chosen ``wallmesh run``."""
    choice = pick(slots)
    print(f"wallmesh update launch: starting wallmesh {slots.label(choice.version)}: {choice.why}", file=sys.stderr, flush=True)
    argv = [*slots.program(choice.version), "run", *run_args]
    env = dict(os.environ)
    if choice.version is not None:
        env.pop("PYTHONPATH", None)
        env.pop("PYTHONHOME", None)
    if choice.trial:
        try:
            _leave_watcher(slots, choice, status_url(config_path), deadline_s)
        except OSError as exc:  # no judge: the trial runs once unconfirmed, and the next start rolls back
            slots.fail(choice.version or "", f"its health watcher could not start ({exc.strerror or exc})")
    os.execve(argv[0], argv, env)


def pick(slots: Slots) -> Choice:
    """:meth:`Slots.choose`, or the image's version when the record cannot be kept: a unit always starts."""
    try:
        return slots.choose()
    except OSError as exc:
        why = f"the update record in {slots.root} cannot be written ({exc.strerror or exc}); updates are off until it can"
        log.error("update: %s", why)
        return Choice(None, False, why)


def _leave_watcher(slots: Slots, choice: Choice, url: str | None, deadline_s: float) -> None:
    """Fork a watcher that outlives this process's exec (double fork: init reaps it, not the daemon)."""
    assert choice.version is not None
    pid = os.getpid()
    pidfd = os.pidfd_open(pid)
    try:
        first = os.fork()
        if first == 0:
            try:
                if os.fork() == 0:
                    code = 0
                    try:
                        watch(slots, choice.version, pid, pidfd, url, deadline_s)
                    except BaseException:  # the watcher must never take the daemon's path; it only reports
                        log.exception("update: the watcher of %s failed", choice.version)
                        code = 1
                    os._exit(code)
            finally:
                os._exit(0)
        os.waitpid(first, 0)
    finally:
        os.close(pidfd)


def watch(slots: Slots, version: str, pid: int, pidfd: int, url: str | None, deadline_s: float) -> None:
    """Poll the trial daemon until it is healthy, exits, or the deadline passes."""
    started = time.monotonic()
    if url is None:
        slots.fail(version, "the unit config's [status] port is 0 or unreadable, so the trial's health cannot be checked")
        return
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    last = "no status yet"
    while True:
        elapsed = time.monotonic() - started
        if poller.poll(0):
            slots.fail(version, f"it exited {elapsed:.0f} s after start, before confirming its health (last: {last})")
            return
        doc = _status(url)
        if doc is not None:
            last = f"state {doc.get('state')}" if isinstance(doc, dict) else "unreadable status"
        why = healthy(doc, pid)
        if why is not None:
            slots.confirm(version, f"{why} {elapsed:.1f} s after start")
            return
        if elapsed > deadline_s:
            slots.fail(version, f"it was not healthy within {deadline_s:.0f} s (last: {last}); it was stopped")
            os.kill(pid, signal.SIGKILL)  # a failure, so systemd restarts the service and the next start rolls back
            return
        poller.poll(int(POLL_S * 1000))


def _status(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None
