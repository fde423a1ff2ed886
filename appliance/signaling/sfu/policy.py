"""When a room goes through the conference server and when it comes back to a mesh (pure).

A room moves to the SFU as soon as it reaches ``escalate_at`` (the mesh cap plus one by
default). It comes back only after it has stayed at ``return_below`` or fewer for
``return_after_s``: a room hovering around the cap must not flip between the two every
time someone steps out, since each switch costs every participant a renegotiation.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModePolicy:
    escalate_at: int
    return_below: int
    return_after_s: float

    def __post_init__(self) -> None:
        if self.return_below >= self.escalate_at:
            raise ValueError("return_below must be smaller than escalate_at")

    def after_join(self, mode: str, size: int) -> str:
        """The mode once the room has ``size`` participants after a join."""
        return "sfu" if mode == "sfu" or size >= self.escalate_at else "mesh"

    def small_since(self, size: int, since: float | None, now: float) -> float | None:
        """Since when the room has been small enough to go back (None: it is not)."""
        if size > self.return_below:
            return None
        return since if since is not None else now

    def returns(self, mode: str, size: int, since: float | None, now: float) -> bool:
        """True when an SFU room has been small for long enough to go back to a mesh."""
        return mode == "sfu" and size <= self.return_below and since is not None and now - since >= self.return_after_s
