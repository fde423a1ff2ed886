"""Running one :class:`~appliance.unit.app.UnitDaemon` as a process: signals, systemd, shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from appliance.unit.app import UnitDaemon

log = logging.getLogger(__name__)


async def serve(conf: Any, *, seconds: float | None = None) -> int:
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
        try:
            await asyncio.wait_for(stop.wait(), seconds)
        except TimeoutError:
            pass
        notifier.stopping()
        return 0
    finally:
        if watchdog is not None:
            watchdog.stop()
        await daemon.close()
        notifier.close()
