"""The unit's front panel: display, buttons and LEDs, attached to a running controller.

The display draws on its own thread (:class:`~appliance.display.runner.DisplayLoop`).
It must not reach into the mesh from there, so a small task on the event loop
builds a fresh :class:`~appliance.wall.model.WallModel` at display rate and
publishes it by reference; the display thread only ever reads the latest one.
Buttons and LEDs share one gpiozero pin factory chosen by ``buttons.pin_factory``.
Optional snapshots (``snapshot_dir``) write PNGs of what the display shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.unit.config import UnitConfig
from appliance.wall.controller import UnitController, Unsubscribe
from appliance.wall.model import WallModel

if TYPE_CHECKING:
    from appliance.controls.gpio import ButtonPanel, LedPanel
    from appliance.display.runner import DisplayLoop

log = logging.getLogger(__name__)


class FrontPanel:
    """Display, buttons and LEDs of one unit (see the module docstring)."""

    def __init__(
        self,
        conf: UnitConfig,
        controller: UnitController,
        *,
        heartbeat: Callable[[str], None] | None = None,
    ) -> None:
        self.conf = conf
        self.controller = controller
        self.heartbeat = heartbeat
        self.display: DisplayLoop | None = None
        self.buttons: ButtonPanel | None = None
        self.leds: LedPanel | None = None
        self.model = WallModel()
        self.snapshots = 0
        self._unsubscribe: Unsubscribe | None = None
        self._unsubscribe_frames: Unsubscribe | None = None
        self._frame = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        from appliance.display.runner import DisplayLoop

        self.model = self.controller.wall_model()
        display = self.display = DisplayLoop(self.conf.display, lambda: self.model, heartbeat=self.heartbeat)
        await asyncio.to_thread(display.start)
        self._unsubscribe_frames = self.controller.subscribe_frames(self._frame.set)
        self._tasks.append(asyncio.create_task(self._feed(display), name="wall-model"))
        if self.conf.snapshot_dir:
            await asyncio.to_thread(Path(self.conf.snapshot_dir).mkdir, parents=True, exist_ok=True)
            self._tasks.append(asyncio.create_task(self._snapshots(display), name="wall-snapshots"))
        self._start_controls()

    def _start_controls(self) -> None:
        from appliance.controls.gpio import ButtonPanel, LedPanel, make_pin_factory

        factory = make_pin_factory(self.conf.buttons.pin_factory)
        self.buttons = ButtonPanel(self.conf.buttons, self.controller, asyncio.get_running_loop(), pin_factory=factory)
        self.buttons.start()
        if self.conf.leds.kind != "none":
            self.leds = LedPanel(self.conf.leds, pin_factory=factory)
            self._unsubscribe = self.leds.attach(self.controller)

    async def _feed(self, display: DisplayLoop) -> None:
        """A fresh model as soon as a remote frame arrives (and at least at display rate otherwise).

        The display thread paces its draws at ``display.fps`` by itself; waking it per frame
        keeps a new picture from waiting for the next periodic rebuild, so the wall adds at
        most one display frame of latency. Frames arriving together share one rebuild.
        """
        period = 1.0 / self.conf.display.fps
        while True:
            self._frame.clear()
            self.model = self.controller.wall_model()
            display.wake()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._frame.wait(), period)

    async def _snapshots(self, display: DisplayLoop) -> None:
        directory = Path(self.conf.snapshot_dir)
        while True:
            await asyncio.sleep(self.conf.snapshot_every_s)
            path = directory / f"wall-{self.snapshots:04d}.png"
            if await asyncio.to_thread(display.snapshot, str(path)):
                self.snapshots += 1
                (directory / "latest.png").unlink(missing_ok=True)
                (directory / "latest.png").symlink_to(path.name)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for unsubscribe in (self._unsubscribe, self._unsubscribe_frames):
            if unsubscribe is not None:
                unsubscribe()
        if self.buttons is not None:
            await self.buttons.aclose()  # gpiozero joins a thread per button: not on the loop
        if self.leds is not None:
            await asyncio.to_thread(self.leds.close)
        if self.display is not None:
            await asyncio.to_thread(self.display.stop)
