"""The display thread: composes the wall at display rate, off the event loop.

:class:`DisplayLoop` opens the screen on its own thread (SDL wants one thread per
window), then loops: wait until something new is there (:meth:`wake`, called by
whoever decoded a frame, from any thread) or until the next clock/spinner tick,
take a fresh :class:`~appliance.wall.model.WallModel` from ``source`` and draw
it. It draws at most ``fps`` frames a second and never waits on the event loop,
so a slow display can only drop frames, never hold the media up. Each frame it
calls ``heartbeat`` (the systemd watchdog's :meth:`~appliance.unit.notify.Watchdog.beat`),
so a hung display stops the watchdog pings.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from appliance.display.config import DisplayConfig
from appliance.errors import DeviceError
from appliance.wall.model import WallModel

if TYPE_CHECKING:
    from appliance.display.compositor import Compositor
    from appliance.display.screen import Screen

log = logging.getLogger(__name__)

IDLE_RATE = 10.0  # redraws per second with nothing new (clock, spinner)


class DisplayLoop:
    """Runs a :class:`~appliance.display.compositor.Compositor` on a thread of its own."""

    def __init__(
        self,
        config: DisplayConfig,
        source: Callable[[], WallModel],
        *,
        heartbeat: Callable[[str], None] | None = None,
        open_screen: Callable[[DisplayConfig], Screen] | None = None,
        on_closed: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.heartbeat = heartbeat
        self.on_closed = on_closed
        self._open_screen = open_screen
        self.compositor: Compositor | None = None  # built on the display thread once the screen is open
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._opened = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._snapshot: tuple[str, threading.Event] | None = None
        self._last_failure: str | None = None
        self.failures = 0

    def start(self, timeout: float = 10.0) -> None:
        """Open the display on its thread; raises :class:`DeviceError` when it cannot be opened."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="display", daemon=True)
        self._thread.start()
        if not self._opened.wait(timeout):
            raise DeviceError("display", "display.backend", "the display did not open in time")
        if self._error is not None:
            self._thread = None
            raise self._error

    def wake(self) -> None:
        """Something changed (a new frame, a mute): draw soon. Safe from any thread."""
        self._wake.set()

    def snapshot(self, path: str, timeout: float = 5.0) -> bool:
        """Write the next composed frame to ``path`` (PNG); True once written."""
        done = threading.Event()
        self._snapshot = (str(path), done)
        self._wake.set()
        return done.wait(timeout)

    def stop(self) -> None:
        """Stop drawing and close the screen (idempotent)."""
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _draw_once(self, compositor: Compositor) -> bool:
        """Draw one frame; a failure is logged (once per kind) and the next frame tries again."""
        try:
            compositor.draw(self.source())
        except Exception as exc:  # bad model or drawing bug: keep the thread alive, keep trying
            kind = f"{type(exc).__name__}: {exc}"
            if kind != self._last_failure:
                log.exception("display: drawing a frame failed")
                self._last_failure = kind
            self.failures += 1
            return False
        self._last_failure = None
        return True

    def _run(self) -> None:
        from appliance.display.compositor import Compositor
        from appliance.display.screen import open_screen

        try:
            screen = (self._open_screen or open_screen)(self.config)
            compositor = self.compositor = Compositor(screen, self.config)
        except DeviceError as exc:
            self._error = exc
            self._opened.set()
            return
        except Exception as exc:  # noqa: BLE001 - SDL/pygame failures of every kind become the DeviceError start() raises
            self._error = DeviceError("display", "display.backend", str(exc))
            self._error.__cause__ = exc
            self._opened.set()
            return
        self._opened.set()
        period = 1.0 / self.config.fps
        last = 0.0
        try:
            while not self._stop.is_set():
                self._wake.wait(1.0 / IDLE_RATE)
                if self._stop.is_set():
                    break
                wait = last + period - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                self._wake.clear()
                last = time.monotonic()
                if not self._draw_once(compositor):
                    continue  # no heartbeat: a display that keeps failing lets the watchdog act
                if self._snapshot is not None:
                    path, done = self._snapshot
                    self._snapshot = None
                    compositor.save_snapshot(path)
                    done.set()
                if self.heartbeat is not None:
                    self.heartbeat("display")
                if not screen.pump():
                    log.info("display window closed")
                    if self.on_closed is not None:
                        self.on_closed()
                    break
        except Exception:
            log.exception("display thread failed; the wall stops updating")
            raise
        finally:
            screen.close()
