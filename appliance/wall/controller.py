"""The controller port: what the buttons, the status endpoint and the display need of a unit.

:class:`UnitController` is the contract between the wall (buttons, LEDs, the
loopback status endpoint, the display) and whatever runs the unit. The unit
daemon (:class:`appliance.unit.app.UnitDaemon`) is the production
implementation: it joins the room through the signaling server and runs the
mesh. :class:`~appliance.wall.local.LocalController` is a complete
implementation for a unit that has no media yet (tests of the wall parts,
display previews, the display bench).

``status()`` returns the document served as ``GET /status``
(:class:`~appliance.wall.status.UnitStatus`, documented field by field there)::

    {"state": "in_call", "room": "boardroom", "name": "Wall 1",
     "muted": false, "camera": true, "volume": 70, "message": "", "since": 12.5,
     "peers": [{"id": "p2", "name": "Lisbon", "connection": "connected",
                "fps": 29.8, "bitrate": 498000, "loss": 0.002, "rtt": 0.012, ...}]}

``subscribe(callback)`` calls ``callback(status_dict)`` on the event loop thread
after every change of state, mute, camera, volume or peers and returns a
function that unsubscribes. ``subscribe_frames(callback)`` calls ``callback()``
whenever a remote picture arrives, so the display can draw it at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from appliance.wall.model import WallModel
from appliance.wall.status import UnitStatus

__all__ = ["FrameCallback", "Listeners", "StatusCallback", "UnitController", "Unsubscribe"]

log = logging.getLogger(__name__)

StatusCallback = Callable[[UnitStatus], None]
FrameCallback = Callable[[], None]
Unsubscribe = Callable[[], None]


@runtime_checkable
class UnitController(Protocol):
    """Commands and observations of one wall unit; every method runs on the event loop."""

    def status(self) -> UnitStatus:
        """The status document (see :mod:`appliance.wall.status`)."""
        ...

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

    def subscribe(self, callback: StatusCallback) -> Unsubscribe:
        """Call ``callback(status())`` after every change; returns the unsubscribe function."""
        ...

    def subscribe_frames(self, callback: FrameCallback) -> Unsubscribe:
        """Call ``callback()`` whenever a new remote picture arrives; returns the unsubscribe function."""
        ...

    def wall_model(self) -> WallModel:
        """A snapshot of what the display should show now."""
        ...


class Listeners:
    """Callbacks subscribed to a controller's changes; a failing callback is logged, never raised.

    ``add()`` returns the unsubscribe function the controller Protocol promises;
    with ``drop_failing`` a callback that raises is removed after its first failure.
    """

    def __init__(self, what: str, *, drop_failing: bool = False) -> None:
        self.what = what
        self.drop_failing = drop_failing
        self._callbacks: list[Callable[..., None]] = []

    def add(self, callback: Callable[..., None]) -> Unsubscribe:
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
