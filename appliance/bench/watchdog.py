"""``watchdog_rejoin_s``: a unit's daemon dies or hangs, systemd restarts it, it is back in the call.

The unit runs as on a wall unit: the image root (``tests/image``: Debian 12 with the
image stage applied) booted with ``systemd-nspawn``, so Debian's own systemd is PID 1 of
the container and runs ``wallmesh-unit.service`` exactly as installed -- ``Type=notify``,
``WatchdogSec=``, ``Restart=on-failure``, the launcher, the sandbox. This machine's own
PID 1 is not systemd, so ``systemd-run`` is no option; a container is also the honest
one: first boot provisions the card, and the restart is the unit file's, not ours.

The container gets a network namespace made here (``ip netns``) with nothing but
loopback. The signaling server and a second unit run on the host side, inside that same
namespace (``ip netns exec``), so the unit in the container and its peer meet on
127.0.0.1 and no packet leaves the machine. The card's config gets what a container
without hardware needs (synthetic audio, offscreen display, mock buttons, loopback ICE, a
status file) from a test-only ``ExecStartPre=`` drop-in, as in the boot test.

Two faults, each once the unit is in the call with its peer's frames arriving:

* kill -- ``SIGKILL`` to the daemon; systemd sees it exit and starts it again after
  ``RestartSec=``;
* hang -- ``SIGSTOP``: the process, watchdog thread included, stops pinging; within
  ``WatchdogSec=`` of its last ping systemd aborts it (``SIGABRT``, then ``SIGCONT`` so
  that a stopped process acts on it) and starts it again after ``RestartSec=``.

The figure is measured from the new process's start (systemd's ``ExecMainStartTimestamp``,
when it forks the daemon) to the moment it is back in the room: joined, and the first
frame from its peer decoded (the unit's own status timestamps). ``watchdog_rejoin_s`` is
the worse of the two faults (bar 5 s); the detail gives both, and how long the hang took
to be noticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from appliance.bench.report import Result
from appliance.demo.site import Site, wait_for

SERVICE = "wallmesh-unit.service"
ROOM = "watchdog"
NAME = "Container unit"
STATUS_FILE = "/run/wallmesh/status.json"
VIDEO = {"video": {"width": 320, "height": 240, "fps": 15}}
NSPAWN = ["systemd-nspawn", "--keep-unit", "--register=no", "--quiet"]

#: Run once before the daemon starts (``ExecStartPre=+``): this container has no sound card,
#: screen or GPIO header, and only loopback to meet its peer on.
CONTAINER_CONFIG = f"""#!/bin/sh
set -eu
f=/etc/wallmesh/unit.toml
if grep -q '^source = "alsa"' "$f"; then
  sed -i -e 's/^source = "alsa"/source = "synthetic"/' -e 's/^sink = "alsa"/sink = "null"/' "$f"
  printf '\\n[display]\\nbackend = "offscreen"\\n\\n[buttons]\\npin_factory = "mock"\\n' >> "$f"
  printf '\\n[ice]\\nloopback = true\\n\\n[status]\\nfile = "{STATUS_FILE}"\\n' >> "$f"
fi
"""


class WatchdogError(RuntimeError):
    """The container or the room did not come up; the message says what."""


def prepare_card(root: Path, server_url: str, token: str) -> None:
    """Make ``root`` a freshly flashed card for this room, plus the test-only drop-in."""
    boot = root / "boot/firmware"
    boot.mkdir(parents=True, exist_ok=True)
    (boot / "wallmesh.toml").write_text(
        f'server = "{server_url}"\nroom = "{ROOM}"\nname = "{NAME}"\ncamera = "pattern"\nenrollment_token = "{token}"\n')
    script = root / "usr/local/sbin/container-unit-config"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(CONTAINER_CONFIG)
    script.chmod(0o755)
    dropin = root / f"etc/systemd/system/{SERVICE}.d/container.conf"
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text("[Service]\nExecStartPre=+/usr/local/sbin/container-unit-config\n")
    # nothing to wait for with loopback only
    wait_online = root / "etc/systemd/system/systemd-networkd-wait-online.service"
    wait_online.unlink(missing_ok=True)
    wait_online.symlink_to("/dev/null")


class Netns:
    """A network namespace of our own with loopback up; deleted on exit."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.path = Path("/run/netns") / name

    def __enter__(self) -> Self:
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True, capture_output=True)
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["ip", "netns", "delete", self.name], check=False, capture_output=True)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children") as fh:
                out.extend(int(c) for c in fh.read().split())
    return out


class Container:
    """One boot of an image root under systemd-nspawn in a given network namespace."""

    def __init__(self, root: Path, netns: Netns, log: Path) -> None:
        self.root = root
        self.log = log.open("w")
        self.logpath = log
        self.proc = subprocess.Popen(
            [*NSPAWN, f"--network-namespace-path={netns.path}", "-D", str(root), "-b", "--console=passive"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.init: int | None = None

    def find_init(self) -> int | None:
        """The container's systemd (a descendant of nspawn named systemd), as a host PID."""
        if self.init is None:
            todo = [self.proc.pid]
            while todo:
                pid = todo.pop()
                with contextlib.suppress(OSError), open(f"/proc/{pid}/comm") as fh:
                    if fh.read().strip() == "systemd":
                        self.init = pid
                        break
                todo.extend(_children(pid))
        return self.init

    def run(self, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        init = self.find_init()
        if init is None:
            raise WatchdogError("the container's systemd is not running")
        return subprocess.run(["nsenter", "-t", str(init), "-a", *cmd], check=False, capture_output=True, text=True, timeout=timeout)

    def show(self, *props: str) -> dict[str, str]:
        out = self.run("systemctl", "show", SERVICE, *(f"-p{p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def status(self) -> dict[str, Any] | None:
        """The unit daemon's status document, read through the container's root."""
        init = self.find_init()
        if init is None:
            return None
        try:
            return json.loads(Path(f"/proc/{init}/root{STATUS_FILE}").read_text())
        except (OSError, ValueError):
            return None

    def journal(self) -> str:
        if self.find_init() is None:
            return self.logpath.read_text(errors="replace")[-3000:]
        return self.run("journalctl", "--no-pager", "-n", "60", "-u", "wallmesh-firstboot", "-u", SERVICE).stdout

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # nspawn asks the container's systemd to shut down
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@dataclass
class Rejoin:
    """One restart: from the new process's start (wall clock) to back in the room."""

    fault: str
    fault_at: float
    started_at: float
    constructed: float
    joined: float
    first_frame: float
    watchdog_fired: bool  # systemd logged a watchdog timeout for the old process
    launched: float | None = None  # the launcher chose the version and exec'd the daemon

    @property
    def seconds(self) -> float:
        return max(self.joined, self.first_frame) - self.started_at


def _mono_to_wall(usec: str) -> float:
    return int(usec) / 1e6 + (time.time() - time.monotonic())


def back_in_room(status: dict[str, Any] | None, after: float) -> dict[str, Any] | None:
    """``status`` when it is a daemon built after ``after``, joined, with a peer's frames arriving."""
    if not status or status.get("started", 0) < after or not status.get("joined_at"):
        return None
    peers = [p for p in status.get("peers", []) if p.get("first_frame_at") and p.get("frames", 0) > 0]
    return status if peers else None


async def fault(container: Container, kind: str, timeout: float = 120) -> Rejoin:
    """Kill or stop the daemon; wait until systemd's new one is back in the room."""
    before = container.show("MainPID", "NRestarts")
    pid = before.get("MainPID", "0")
    if pid in ("", "0"):
        raise WatchdogError(f"{SERVICE} has no main process to {kind}")
    at = time.time()
    signame = "SIGKILL" if kind == "kill" else "SIGSTOP"
    container.run("systemctl", "kill", "--kill-who=main", f"--signal={signame}", SERVICE)
    try:
        status = await wait_for(lambda: back_in_room(container.status(), at), timeout, f"the unit back in the room after {kind}",
                                interval=0.25)
    except TimeoutError as exc:
        raise WatchdogError(f"{exc}:\n{container.journal()}") from None
    after = container.show("MainPID", "NRestarts", "ExecMainStartTimestampMonotonic")
    if after.get("MainPID") == pid or after.get("NRestarts") == before.get("NRestarts"):
        raise WatchdogError(f"systemd did not restart {SERVICE} after {kind}: {before} -> {after}")
    first = min(p["first_frame_at"] for p in status["peers"] if p.get("first_frame_at"))
    journal = container.run("journalctl", "--no-pager", "-o", "short-unix", "--since", f"@{int(at)}", "-u", SERVICE).stdout
    launched = [float(line.split()[0]) for line in journal.splitlines() if "update launch: starting" in line]
    return Rejoin(kind, at, _mono_to_wall(after["ExecMainStartTimestampMonotonic"]), status["started"],
                  status["joined_at"], first, "watchdog timeout" in journal.lower(), launched[-1] if launched else None)


@contextlib.asynccontextmanager
async def booted_room(image_root: Path, work: Path) -> Any:
    """A copy of ``image_root`` booted as a card in our room, with its peer in the call; yields the container."""
    name = f"wm-wd-{os.getpid()}"
    card = work / "card"
    await asyncio.to_thread(subprocess.run, ["cp", "-a", "--reflink=auto", str(image_root), str(card)], check=True, timeout=300)
    with Netns(name) as netns:
        site = Site(work / "site", room=ROOM, server_process=True, verbose=0, netns=name)
        async with site:
            token = site.token_file.read_text().strip()
            prepare_card(card, site.url, token)
            container = Container(card, netns, work / "boot.log")
            try:
                peer = await site.spawn(1, VIDEO)

                def in_call() -> bool:
                    if not container.alive():
                        raise WatchdogError("the container stopped:\n" + container.logpath.read_text(errors="replace")[-3000:])
                    return back_in_room(container.status(), 0) is not None and bool((peer.status() or {}).get("peers"))

                try:
                    await wait_for(in_call, 300, "the container's unit to join its peer", interval=1.0)
                except TimeoutError as exc:
                    raise WatchdogError(f"{exc}:\n{container.journal()}\n{peer.log_tail()}") from None
                yield container
            finally:
                await asyncio.to_thread(container.close)
    shutil.rmtree(card, ignore_errors=True)


async def measure(image_root: Path, work: Path) -> list[Rejoin]:
    async with booted_room(image_root, work) as container:
        kill = await fault(container, "kill")
        await asyncio.sleep(3.0)  # the new daemon settles into the call
        hang = await fault(container, "hang", timeout=180)
    return [kill, hang]


def results(rejoins: list[Rejoin]) -> list[Result]:
    parts = [f"{r.fault}: restarted {r.started_at - r.fault_at:.1f} s after the fault"
             f"{' (watchdog timeout)' if r.watchdog_fired else ''}, start -> "
             f"{f'launcher exec {r.launched - r.started_at:.2f} s -> ' if r.launched else ''}daemon built "
             f"{r.constructed - r.started_at:.2f} s -> joined {r.joined - r.started_at:.2f} s -> first remote frame "
             f"{r.first_frame - r.started_at:.2f} s" for r in rejoins]
    worst = max(rejoins, key=lambda r: r.seconds)
    detail = (f"worst {worst.fault}; wallmesh-unit.service as installed, under the image's systemd in nspawn; "
              f"{'; '.join(parts)}; load avg {os.getloadavg()[0]:.1f}; bar 5 s")
    out = [Result("watchdog_rejoin_s", round(worst.seconds, 2), "s", detail)]
    out.extend(Result(f"watchdog_rejoin_{r.fault}_s", round(r.seconds, 2), "s", parts[i]) for i, r in enumerate(rejoins))
    return out


def unavailable() -> str | None:
    """Why the figure cannot be measured here, or None."""
    if os.geteuid() != 0:
        return "booting a container needs root"
    for tool in ("systemd-nspawn", "debootstrap", "nsenter", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} missing: run scripts/setup"
    if not (Path(__file__).resolve().parents[2] / "tests/image/build_root.py").exists():
        return "the image root is built from a source checkout (tests/image)"
    return None


def run(quick: bool) -> list[Result]:
    reason = unavailable()
    if reason is not None:
        return [Result("watchdog_rejoin_s", None, "s", reason)]
    repo = Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory(prefix="wallmesh-bench-watchdog-") as tmp:
        work = Path(tmp)
        built = subprocess.run([sys.executable, "-m", "tests.image.build_root", str(work / "image")], check=False, cwd=repo,
                               capture_output=True, text=True, timeout=1800)
        if built.returncode != 0:
            return [Result("watchdog_rejoin_s", None, "s", f"the image root did not build: {built.stderr.strip()[-300:]}")]
        try:
            rejoins = asyncio.run(measure(Path(built.stdout.split()[-1]), work))
        except WatchdogError as exc:
            return [Result("watchdog_rejoin_s", None, "s", str(exc).splitlines()[0])]
    return results(rejoins)
