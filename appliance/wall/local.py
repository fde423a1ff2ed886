"""A controller with no media: a wall unit before any peer is up.

:class:`LocalController` runs the real :class:`~appliance.wall.machine.StateMachine`,
mute, camera and volume, and never has peers or remote pictures. It is a complete
:class:`~appliance.wall.controller.UnitController`: the buttons, LEDs, status
endpoint and display work against it exactly as against the unit daemon, which
is what their tests, display previews and the display bench use it for.
"""

from __future__ import annotations

import asyncio
import logging
import time

from appliance.wall.controller import (
    FrameCallback,
    Listeners,
    StatusCallback,
    Unsubscribe,
)
from appliance.wall.machine import StateMachine
from appliance.wall.model import WallModel
from appliance.wall.states import UnitState
from appliance.wall.status import UnitStatus

__all__ = ["LocalController"]

log = logging.getLogger(__name__)


class LocalController:
    """A unit with no media: the real state machine, mute, camera and volume, no peers.

    ``join()`` goes through ``joining`` to ``in_call`` (alone in the room) unless
    ``join_delay`` is set, which keeps it in ``joining`` that long first.
    """

    def __init__(
        self,
        machine: StateMachine | None = None,
        *,
        volume: int = 70,
        join_delay: float = 0.0,
    ) -> None:
        self.machine = machine or StateMachine()
        self.volume = volume
        self.join_delay = join_delay
        self.restarts = 0
        self.notice_seconds = 2.0
        self._notice = ("", 0.0)
        self._listeners = Listeners("status")
        self.machine.subscribe(lambda _m: self._changed())

    def status(self) -> UnitStatus:
        m = self.machine
        return {
            "state": m.state.value,
            "room": m.room,
            "name": m.name,
            "muted": m.muted,
            "camera": m.camera,
            "volume": self.volume,
            "message": m.message,
            "since": round(time.monotonic() - m.since, 3),
            "peers": [],
        }

    async def join(self) -> None:
        if self.machine.in_room:
            return
        self.machine.to(UnitState.JOINING, "join requested")
        if self.join_delay:
            await asyncio.sleep(self.join_delay)
        if self.machine.state == UnitState.JOINING:
            self.machine.to(UnitState.IN_CALL, "joined, no peers yet")

    async def hangup(self) -> None:
        if self.machine.state != UnitState.IDLE:
            self.machine.to(UnitState.IDLE, "hang-up")

    async def set_muted(self, muted: bool) -> None:
        self.machine.set_muted(muted)

    async def set_camera(self, on: bool) -> None:
        self.machine.set_camera(on)

    async def restart_call(self) -> None:
        self.restarts += 1
        self.machine.to(UnitState.JOINING, "call restart")
        self.machine.to(UnitState.IN_CALL, "rejoined, no peers yet")

    async def change_volume(self, delta: int) -> None:
        volume = max(0, min(100, self.volume + int(delta)))
        if volume != self.volume:
            self.volume = volume
            log.info("%s: volume %d%%", self.machine.name, volume)
            self._notice = (f"Volume {volume}%", time.monotonic() + self.notice_seconds)
            self._changed()

    def subscribe(self, callback: StatusCallback) -> Unsubscribe:
        return self._listeners.add(callback)

    def subscribe_frames(self, callback: FrameCallback) -> Unsubscribe:
        """No remote pictures arrive at a unit without media: the callback is never called."""
        return _nothing_to_undo

    def wall_model(self) -> WallModel:
        m = self.machine
        notice, until = self._notice
        return WallModel(
            state=m.state,
            room=m.room,
            unit_name=m.name,
            muted=m.muted,
            camera=m.camera,
            message=m.message,
            notice=notice if time.monotonic() < until else "",
        )

    def _changed(self) -> None:
        self._listeners.emit(self.status())


def _nothing_to_undo() -> None:
    pass
