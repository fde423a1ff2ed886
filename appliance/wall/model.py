"""What the wall shows, as plain data: the compositor draws a :class:`WallModel`.

A controller (:meth:`~appliance.wall.controller.UnitController.wall_model`; in
production the unit daemon) builds a fresh ``WallModel`` whenever the display
asks for one; the compositor never reaches into the mesh. Everything here is
plain data and pure functions, so layouts and screens can be tested without a
peer connection.

A :class:`Tile` is one remote participant: ``name`` is what it calls itself,
``account`` who the signaling server knows it to be; :attr:`Tile.identity` is the
line a tile adds when the name alone would not say who it is. ``frame`` is the newest decoded
picture (an ``av.VideoFrame`` or an RGB ``numpy`` array of shape HxWx3) or
``None`` while nothing has arrived yet; the compositor converts it only when it
draws it, and keeps drawing the last picture it got when a stream hiccups.
``frame_time`` is the ``time.monotonic()`` at which that frame was decoded; the
compositor uses it to tell new frames from old ones and to measure the latency it
adds (frame ready → presented).
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any

from appliance.wall.states import UnitState

__all__ = ["Quality", "Tile", "WallModel", "quality_from"]


class Quality(enum.IntEnum):
    """Network quality of one peer, drawn as 0–3 signal bars."""

    UNKNOWN = -1
    BAD = 0
    POOR = 1
    FAIR = 2
    GOOD = 3


# (max loss fraction, max round-trip seconds) a level still allows.
_LEVELS = (
    (Quality.GOOD, 0.01, 0.150),
    (Quality.FAIR, 0.03, 0.300),
    (Quality.POOR, 0.10, 0.600),
)


def quality_from(loss: float | None, rtt: float | None) -> Quality:
    """Map measured packet loss (a fraction, 0.0–1.0) and round-trip time (seconds) to a level.

    The worse of the two decides; with neither measured yet the quality is
    ``UNKNOWN`` (drawn as grey bars). Loss given in percent (> 1) is accepted too.
    """
    if loss is None and rtt is None:
        return Quality.UNKNOWN
    if loss is not None and loss > 1.0:
        loss = loss / 100.0
    for level, max_loss, max_rtt in _LEVELS:
        if (loss is None or loss <= max_loss) and (rtt is None or rtt <= max_rtt):
            return level
    return Quality.BAD


@dataclass
class Tile:
    """One remote participant on the wall."""

    peer_id: str
    name: str = ""
    frame: Any = None
    frame_time: float | None = None
    muted: bool = False
    camera: bool = True
    quality: Quality = Quality.UNKNOWN
    speaking: bool = False
    reconnecting: bool = False
    account: str = ""
    kind: str = ""

    @property
    def label(self) -> str:
        return self.name or self.account or self.peer_id

    @property
    def identity(self) -> str:
        """Who this is, when the name does not say it: "" when the account is unknown or the
        name is that account (case, spaces and ``-_.`` aside), else a line such as
        "signed in as bob" that the tile draws apart from the name, so a name cannot fake it."""
        if not self.account or _plain(self.account) == _plain(self.name):
            return ""
        if self.kind == "user":
            return f"signed in as {self.account}"
        if self.kind == "device":
            return f"unit {self.account}"
        return self.account


def _plain(name: str) -> str:
    return "".join(c for c in name.casefold() if c not in " -_.")


@dataclass
class WallModel:
    """Everything on the screen at one instant.

    ``state`` picks the full screen: idle, joining, in call (the grid, or
    "waiting for others" with no tiles), reconnecting (the grid keeps running
    under a banner when calls are up), error (``message`` says what to do).
    ``self_view`` is this unit's own camera picture (same types as a tile's
    frame) or ``None``; the corner is drawn when the display config asks for it
    and there is a picture (or the camera is off, to say so). ``notice`` is a
    short-lived line shown at the bottom, e.g. "Volume 70%" after a volume press;
    the controller clears it after a couple of seconds. ``mic_level`` is the
    self-view's microphone meter, 0..1 of its scale (what the unit sends, after
    processing; :class:`~appliance.wall.speaker.LevelMeter`); while ``muted`` the
    meter shows muted, whatever the level.
    """

    state: UnitState = UnitState.IDLE
    room: str = ""
    unit_name: str = ""
    tiles: list[Tile] = field(default_factory=list)
    self_view: Any = None
    self_view_time: float | None = None
    muted: bool = False
    camera: bool = True
    message: str = ""
    notice: str = ""
    mic_level: float = 0.0
    now: float = field(default_factory=time.time)
