"""The unit's life as an explicit state machine: idle, joining, in_call, reconnecting, error.

Every change goes through :meth:`StateMachine.to`, which checks the move
against :data:`~appliance.wall.states.TRANSITIONS`, logs it with its reason and
tells the subscribers (the LEDs, the status endpoint, the display). The machine also holds what the room sees of
this unit between calls: microphone muted or not and camera on or off. Rooms are
shared, so by default the microphone is unmuted again when a call ends
(``mute_resets``): the next meeting does not start silently muted.

The machine is owned by the event loop thread; callers on other threads hand
over with ``loop.call_soon_threadsafe`` first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from appliance.errors import WallmeshError
from appliance.wall.states import ERROR, IDLE, IN_ROOM, TRANSITIONS, UnitState

__all__ = ["StateMachine", "TransitionError"]

log = logging.getLogger(__name__)


class TransitionError(WallmeshError, RuntimeError):
    """A state change that the unit's life does not allow (a bug in the caller)."""


class StateMachine:
    """State, room, mute and camera of one unit, with logged transitions and subscribers."""

    def __init__(self, *, name: str = "unit", room: str = "", mute_resets: bool = True) -> None:
        self.name = name
        self.room = room
        self.mute_resets = mute_resets
        self.state = IDLE
        self.since = time.monotonic()
        self.reason = "start"
        self.message = ""
        self.muted = False
        self.camera = True
        self._subscribers: list[Callable[[StateMachine], None]] = []

    def can(self, new: UnitState) -> bool:
        return new == self.state or new in TRANSITIONS[self.state]

    def to(self, new: UnitState | str, reason: str = "", message: str = "") -> bool:
        """Move to ``new``; returns False when already there. ``message`` is shown on error."""
        new = UnitState(new)
        if new == self.state and message == self.message:
            return False
        if not self.can(new):
            raise TransitionError(f"{self.name}: cannot go from {self.state.value} to {new.value}")
        old = self.state
        self.state = new
        self.since = time.monotonic()
        self.reason = reason
        self.message = message if new == ERROR else ""
        log.info("%s: %s -> %s (%s)", self.name, old.value, new.value, reason or "no reason given")
        if new == IDLE and old != IDLE and self.mute_resets and self.muted:
            self.muted = False
            log.info("%s: call ended, microphone unmuted for the next meeting", self.name)
        self._notify()
        return True

    def set_muted(self, muted: bool) -> bool:
        """Record the microphone state; returns True when it changed."""
        muted = bool(muted)
        if muted == self.muted:
            return False
        self.muted = muted
        log.info("%s: microphone %s", self.name, "muted" if muted else "unmuted")
        self._notify()
        return True

    def set_camera(self, on: bool) -> bool:
        """Record whether video is sent (camera privacy); returns True when it changed."""
        on = bool(on)
        if on == self.camera:
            return False
        self.camera = on
        log.info("%s: camera %s", self.name, "on" if on else "off (privacy)")
        self._notify()
        return True

    def fail(self, message: str, reason: str = "error") -> None:
        """Enter the error state with a sentence a person in the room can act on."""
        self.to(ERROR, reason, message)

    @property
    def in_room(self) -> bool:
        """True while the unit is (or is getting) in its room."""
        return self.state in IN_ROOM

    def subscribe(self, callback: Callable[[StateMachine], None]) -> Callable[[], None]:
        """Call ``callback(machine)`` after every change; returns the unsubscribe function."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def _notify(self) -> None:
        for callback in list(self._subscribers):
            try:
                callback(self)
            except Exception:  # a broken listener must not stop the unit's life
                log.exception("%s: state listener %r failed", self.name, callback)
