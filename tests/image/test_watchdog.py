"""The unit file's watchdog and restart, for real: the image's systemd restarts a killed or hung daemon.

The image root booted with systemd-nspawn (the boot test's root), its card pointed at a
signaling server and a second unit that run on this side in the container's own network
namespace (:mod:`appliance.bench.watchdog`). The daemon is killed once and stopped once
(SIGSTOP: its watchdog pings stop with it); each time systemd must start a new process
that joins the room again and receives its peer's frames. How fast is the benchmark's
(``wallmesh bench faults``: ``watchdog_rejoin_s``); the limits here are generous.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.bench import watchdog

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(os.geteuid() != 0, reason="booting a container needs root (CI runs as root)"),
    pytest.mark.skipif(shutil.which("systemd-nspawn") is None, reason="systemd-nspawn missing: run scripts/setup"),
    pytest.mark.skipif(shutil.which("debootstrap") is None, reason="debootstrap missing: run scripts/setup"),
]


def test_systemd_restarts_a_killed_and_a_hung_unit_back_into_its_room(rootfs: Path, tmp_path: Path) -> None:
    kill, hang = asyncio.run(watchdog.measure(rootfs, tmp_path))

    # killed: systemd saw the main process die and started a new one after RestartSec=
    assert kill.fault == "kill" and not kill.watchdog_fired
    assert 4.0 <= kill.started_at - kill.fault_at < 30, kill
    # hung: nothing pinged, so the watchdog (WatchdogSec=30s) fired before the restart
    assert hang.fault == "hang" and hang.watchdog_fired, hang
    assert 10.0 <= hang.started_at - hang.fault_at < 90, hang
    for rejoin in (kill, hang):
        # the new process joined the room and decoded its peer's frames, in order
        assert rejoin.started_at <= rejoin.constructed <= rejoin.joined, rejoin
        assert rejoin.first_frame >= rejoin.started_at
        assert rejoin.seconds < 60, rejoin

    # nothing of the run is left: no namespace, no container processes
    assert not Path(f"/run/netns/wm-wd-{os.getpid()}").exists()
    left = subprocess.run(["pgrep", "-f", str(tmp_path / "card")], check=False, capture_output=True, text=True)
    assert left.stdout.strip() == "", left.stdout
