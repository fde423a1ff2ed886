"""The controller port: what the buttons, the status endpoint and the display need of a unit.

:class:`UnitController` is the contract between the wall (buttons, LEDs, the
loopback status endpoint, the display) and whatever runs the unit. The unit
daemon (``appliance/unit/app.py``) is the production implementation: it joins the
room through the signaling server and runs the mesh. :class:`LocalController`
is a complete implementation for a unit that has no media yet: it runs the real
:class:`~appliance.unit.state.StateMachine` and is what a unit is before any
peer is up (used by tests of the wall parts and by display previews).

``status()`` returns the document served as ``GET /status``::

    {"state": "in_call", "room": "boardroom", "name": "Wall 1",
     "muted": false, "camera": true, "volume": 70, "message": "",
     "peers": [{"id": "p2", "name": "Lisbon", "connection": "connected",
                "fps": 29.8, "bitrate": 498000, "loss": 0.002, "rtt": 0.012}]}

``subscribe(callback)`` calls ``callback(status_dict)`` on the event loop thread
after every change of state, mute, camera, volume or peers and returns a
function that unsubscribes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from appliance.display.model import UnitState, WallModel
from appliance.unit.state import StateMachine

log = logging.getLogger(__name__)

StatusCallback = Callable[[dict[str, Any]], None]


@runtime_checkable
class UnitController(Protocol):
    """Commands and observations of one wall unit; every method runs on the event loop."""

    def status(self) -> dict[str, Any]:
        """The status document (see the module docstring)."""

    async def join(self) -> None:
        """Join the configured room (no-op when already in it)."""

    async def hangup(self) -> None:
        """Leave the room; the unit goes idle."""

    async def set_muted(self, muted: bool) -> None:
        """Mute or unmute the microphone (no microphone audio leaves while muted)."""

    async def set_camera(self, on: bool) -> None:
        """Camera privacy: stop or resume sending video."""

    async def restart_call(self) -> None:
        """Leave and rejoin the room (the long press of hang-up)."""

    async def change_volume(self, delta: int) -> None:
        """Change the speaker volume by ``delta`` percent points (clamped to 0–100)."""

    def subscribe(self, callback: StatusCallback) -> Callable[[], None]:
        """Call ``callback(status())`` after every change; returns the unsubscribe function."""

    def wall_model(self) -> WallModel:
        """A snapshot of what the display should show now."""



class Listeners:
    """Callbacks subscribed to a controller's changes; a failing callback is logged, never raised.

    ``add()`` returns the unsubscribe function the controller Protocol promises;
    with ``drop_failing`` a callback that raises is removed after its first failure.
    """

    def __init__(self, what: str, *, drop_failing: bool = False) -> None:
        self.what = what
        self.drop_failing = drop_failing
        self._callbacks: list[Callable[..., None]] = []

    def add(self, callback: Callable[..., None]) -> Callable[[], None]:
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return unsubscribe

    def emit(self, *args: Any) -> None:
        for callback in list(self._callbacks):
            try:
                callback(*args)
            except Exception:  # a broken LED, display or frame listener must not fail its caller
                log.exception("%s listener %r failed", self.what, callback)
                if self.drop_failing and callback in self._callbacks:
                    self._callbacks.remove(callback)


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

    def status(self) -> dict[str, Any]:
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
        import asyncio

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

    def subscribe(self, callback: StatusCallback) -> Callable[[], None]:
        return self._listeners.add(callback)

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
