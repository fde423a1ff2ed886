"""Running one :class:`~appliance.unit.app.UnitDaemon` as a process: event loop, signals, systemd.

The daemon's event loop is uvloop when it is installed. A unit receives every peer's
media on UDP sockets, and the standard asyncio loop reads one datagram per socket per
loop iteration: on a busy unit, packets then wait in the kernel's socket buffers —
seconds of video at 640x480 in a 4-unit mesh on a loaded 2-core machine, measured by
``ss`` Recv-Q — while libuv drains each ready socket in one go and runs the loop faster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from appliance.mesh import aioice_hooks, aiortc_hooks
from appliance.unit.app import UnitDaemon
from appliance.unit.config import UnitConfig

log = logging.getLogger(__name__)


def event_loop_factory() -> Any:
    """uvloop's loop when available, else the standard one (``None`` lets asyncio choose)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


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
