"""What each button does, as commands on a :class:`~appliance.wall.controller.UnitController`.

The call button joins at once when the unit is out of its room. In a call it
hangs up when released, unless it was held for ``hold_time`` (5 s): then the call
restarts (leave and rejoin) and the release does nothing more. Deciding on release
is what lets one button both hang up and restart without hanging up first.
What the press meant is decided at press time, so the press that joined a call
never hangs it up on release.

Volume buttons step once per press and keep stepping while held.
Mute and camera toggle against the controller's real state (``status()``), so a
press after a remote change or a restart does the expected thing.
"""

from __future__ import annotations

import logging

from appliance.wall.controller import UnitController

log = logging.getLogger(__name__)

OUT_OF_ROOM = ("idle", "error")


class ButtonActions:
    """Button events → controller commands; every method runs on the event loop."""

    def __init__(self, controller: UnitController, volume_step: int = 5) -> None:
        self.controller = controller
        self.volume_step = volume_step
        self._in_room = False
        self._held = False

    async def handle(self, button: str, event: str) -> None:
        """One button event: ``event`` is ``pressed``, ``released`` or ``held``."""
        handler = getattr(self, f"_{button}_{event}", None)
        if handler is not None:
            await handler()

    async def _call_pressed(self) -> None:
        self._held = False
        self._in_room = self.controller.status()["state"] not in OUT_OF_ROOM
        if not self._in_room:
            log.info("call button: join")
            await self.controller.join()

    async def _call_held(self) -> None:
        if self._in_room:
            self._held = True
            log.info("call button held: restarting the call")
            await self.controller.restart_call()

    async def _call_released(self) -> None:
        if self._in_room and not self._held:
            log.info("call button: hang up")
            await self.controller.hangup()
        self._in_room = self._held = False

    async def _mute_pressed(self) -> None:
        await self.controller.set_muted(not self.controller.status()["muted"])

    async def _camera_pressed(self) -> None:
        await self.controller.set_camera(not self.controller.status()["camera"])

    async def _volume_up_pressed(self) -> None:
        await self.controller.change_volume(self.volume_step)

    async def _volume_down_pressed(self) -> None:
        await self.controller.change_volume(-self.volume_step)
