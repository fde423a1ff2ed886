"""Freeing what a closed peer connection leaves behind soon, not at CPython's next full collection.

A hung-up RTCPeerConnection is not freed by reference counting: aiortc's transports, queues,
events and RTP state (about 1,200 objects, with OpenSSL's DTLS buffers behind them) hold
each other in reference cycles. Only a full (generation 2) collection frees them, and CPython
3.11 runs one only once the objects that survived earlier collections have grown by a quarter:
in a room where people come and go, that took a unit 15–20 minutes, its resident memory
rising all the while by some 400 KiB a minute (the soak, :mod:`appliance.bench.soak`).

So a process that runs peer connections freezes what it made at start-up (:func:`freeze`:
those objects leave the collector's generations, so a full collection no longer walks them)
and runs a full collection shortly after a connection closes (:func:`after_close`; several
closes within :data:`DELAY_S` cost one). With the start-up objects frozen, the collection walks
only what the calls made since; its time is logged.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger(__name__)

#: Seconds after the last close before the collection runs: a hang-up closes every link at
#: once, a rebuild closes one and opens another; either way one collection follows.
DELAY_S = 1.0


class Collector:
    """One process's collections after closes (see the module docstring)."""

    def __init__(self) -> None:
        self._pending: asyncio.TimerHandle | None = None
        self.collections = 0
        self.last_ms: float | None = None

    def after_close(self, delay: float = DELAY_S) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._pending is not None:
            self._pending.cancel()
        self._pending = loop.call_later(delay, self.collect)

    def collect(self) -> None:
        self._pending = None
        started = time.perf_counter()
        found = gc.collect()
        self.last_ms = (time.perf_counter() - started) * 1000
        self.collections += 1
        log.info("freed %d objects of closed connections in %.1f ms", found, self.last_ms)


#: This process's collector.
COLLECTOR = Collector()


def freeze() -> None:
    """Move every object made so far (imports, the daemon's own parts) out of the collector's way."""
    gc.collect()
    gc.freeze()


def after_close(delay: float = DELAY_S) -> None:
    """A peer connection has closed: collect its cycles once the burst of closes is over."""
    COLLECTOR.after_close(delay)
