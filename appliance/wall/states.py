"""The unit's lifecycle states and which state may follow which.

The values are the ``state`` strings of ``GET /status`` (DESIGN.md, "Unit
status"): operators, fleet tools and the tests read them, so they never change.
:class:`~appliance.wall.machine.StateMachine` enforces :data:`TRANSITIONS`.
"""

from __future__ import annotations

import enum

__all__ = ["TRANSITIONS", "UnitState"]


class UnitState(enum.StrEnum):
    """The unit's life; the values are the ``state`` strings of ``GET /status``."""

    IDLE = "idle"
    JOINING = "joining"
    IN_CALL = "in_call"
    RECONNECTING = "reconnecting"
    ERROR = "error"


IDLE, JOINING, IN_CALL, RECONNECTING, ERROR = (
    UnitState.IDLE,
    UnitState.JOINING,
    UnitState.IN_CALL,
    UnitState.RECONNECTING,
    UnitState.ERROR,
)

#: Which state may follow which. Joining again from in_call/reconnecting is a call restart.
TRANSITIONS: dict[UnitState, frozenset[UnitState]] = {
    IDLE: frozenset({JOINING, ERROR}),
    JOINING: frozenset({IN_CALL, RECONNECTING, IDLE, ERROR}),
    IN_CALL: frozenset({RECONNECTING, JOINING, IDLE, ERROR}),
    RECONNECTING: frozenset({IN_CALL, JOINING, IDLE, ERROR}),
    ERROR: frozenset({IDLE, JOINING}),
}

#: States in which the unit is in its room, or on its way in (the call button hangs up there).
IN_ROOM: frozenset[UnitState] = frozenset({JOINING, IN_CALL, RECONNECTING})
