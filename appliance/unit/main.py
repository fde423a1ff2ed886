"""Running one :class:`~appliance.unit.app.UnitDaemon` as a process: event loop, signals, systemd.

The daemon's event loop is uvloop when it is installed (:mod:`appliance.mesh.eventloop` says why).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from appliance.mesh import aioice_hooks, aiortc_hooks, garbage
from appliance.mesh.eventloop import event_loop_factory
from appliance.unit.app import UnitDaemon
from appliance.unit.config import UnitConfig

log = logging.getLogger(__name__)


def run_daemon(conf: UnitConfig, *, seconds: float | None = None) -> int:
    """Run a unit daemon until a signal (or ``seconds``) in a fresh event loop."""
    for check in (aiortc_hooks.check, aioice_hooks.check):  # an untested library refuses to start
        check()
    aiortc_hooks.install_dtls_verify()  # DTLS handshakes under the unit's MemoryDenyWriteExecute=yes
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(serve(conf, seconds=seconds))


async def serve(conf: UnitConfig, *, seconds: float | None = None) -> int:
    """Start the daemon, report readiness to systemd, run until a signal (or ``seconds``), stop."""
    from appliance.unit.notify import Notifier, Watchdog

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    daemon = UnitDaemon(conf)
    notifier = Notifier()
    watchdog = Watchdog.from_systemd(notifier)
    if watchdog is not None:
        daemon.heartbeat = watchdog.beat
    try:
        await daemon.start()
        garbage.freeze()  # what start-up made stays: full collections walk only the calls' objects
        notifier.ready(f"room {conf.room}")
        if watchdog is not None:
            watchdog.watch_loop(loop)
            watchdog.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
        notifier.stopping()
        return 0
    finally:
        if watchdog is not None:
            watchdog.stop()
        await daemon.close()
        notifier.close()
