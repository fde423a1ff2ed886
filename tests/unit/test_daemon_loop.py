"""The unit daemon never blocks its event loop: a whole join plus seconds of media, checked.

A real signaling server and a second unit run as their own processes; the daemon under
test runs in this process, in asyncio debug mode (which also rejects loop calls made
from the wrong thread). Every callback the loop runs is timed; the time it *held* the
loop is its wall time minus the time the kernel kept this thread waiting for a CPU
(``/proc/thread-self/schedstat``): on a 2-core machine shared with other work, being
preempted is not blocking, but computing, sleeping or waiting on I/O inside a callback is.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

import pytest

from appliance.demo.site import Site, receiving, wait_for
from appliance.unit import config
from appliance.unit.app import UnitDaemon

pytestmark = pytest.mark.slow

HELD_LIMIT_S = 0.1  # generous: a frame of video is 33 ms
MEDIA_SECONDS = 4.0


def _run_delay_s() -> float:
    """Seconds this thread has spent runnable but waiting for a CPU."""
    with open("/proc/thread-self/schedstat") as fh:
        return int(fh.read().split()[1]) / 1e9


class LoopHoldMeter:
    """Times every callback of asyncio's loop while installed; keeps the ones that held it too long."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.callbacks = 0
        self.slow: list[tuple[float, float, float, str]] = []  # (held, wall, of it in gc, callback)
        self._original = asyncio.events.Handle._run
        self._gc_s = 0.0  # time spent in garbage collection so far
        self._gc_started = 0.0

    def _gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self._gc_s += time.perf_counter() - self._gc_started

    def __enter__(self) -> LoopHoldMeter:
        meter, original = self, self._original

        def _run(handle: asyncio.events.Handle) -> None:
            t0, q0, g0 = time.perf_counter(), _run_delay_s(), meter._gc_s
            try:
                original(handle)
            finally:
                wall = time.perf_counter() - t0
                meter.callbacks += 1
                if wall >= meter.limit:
                    held = wall - (_run_delay_s() - q0)
                    if held >= meter.limit:
                        gc_s = meter._gc_s - g0
                        meter.slow.append((round(held, 3), round(wall, 3), round(gc_s, 3), repr(handle)[:300]))

        asyncio.events.Handle._run = _run  # type: ignore[method-assign]
        gc.callbacks.append(self._gc)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.events.Handle._run = self._original  # type: ignore[method-assign]
        gc.callbacks.remove(self._gc)


@pytest.fixture
def own_heap_only():
    """Leave the objects of every earlier test in this process out of garbage collection: a
    full collection over that heap can pause a callback for a third of a second, a pause a
    daemon in its own process never sees."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


async def test_join_and_media_never_hold_the_daemons_loop(tmp_path, caplog, own_heap_only):
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = HELD_LIMIT_S
    caplog.set_level(logging.WARNING, logger="asyncio")
    video = {"video": {"width": 320, "height": 240, "fps": 30}}
    site = Site(tmp_path, room="loopcheck", server_process=True)
    await site.start_server()
    daemon = None
    try:
        other = await site.spawn(1, video)
        _name, path, _status = site.unit_config(2, {**video, "status": {"file": ""}})
        with LoopHoldMeter(HELD_LIMIT_S) as meter:
            daemon = UnitDaemon(config.load(path))
            await daemon.start()
            await wait_for(lambda: receiving({"peers": daemon.mesh.status()}, 10).get("unit-1"), 60, "video from unit-1")
            await wait_for(lambda: receiving(other.status(), 10).get("unit-2"), 60, "unit-1 to receive our video")
            frames = daemon.mesh.status()[0]["frames"]
            await asyncio.sleep(MEDIA_SECONDS)
            assert daemon.mesh.status()[0]["frames"] > frames  # media kept flowing the whole time
            await daemon.close()
            daemon = None
    finally:
        if daemon is not None:
            await daemon.close()
        await site.close()
        loop.set_debug(False)
    slow_warnings = [r.getMessage()[:300] for r in caplog.records if r.name == "asyncio" and "took" in r.getMessage()]
    assert meter.callbacks > 1000  # the meter saw the daemon's work
    assert not meter.slow, (
        f"callbacks held the loop >= {HELD_LIMIT_S * 1000:.0f} ms (not counting CPU run-queue waits; "
        f"(held, wall, of it garbage collection, callback)): {meter.slow}; "
        f"asyncio debug also reported: {slow_warnings}"
    )
