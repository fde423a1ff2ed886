"""Who is speaking, and how loud this unit's microphone is: the wall's two audio rules.

:class:`ActiveSpeaker` is the one rule for the speaking highlight. It is fed the levels
the mixer measures of each peer's decoded audio (smoothed RMS, 0..1 of full scale;
remote audio was already echo-cancelled and noise-suppressed at its sender) and names at
most one peer:

* **voice, not noise** — a level counts only when it is above ``threshold`` and
  ``margin_db`` above that peer's noise floor. The floor follows the level down at once
  and up slowly (``floor_tau`` seconds, in dB), so the pauses between words pull it
  down while a steady sound — a fan, a hum, comfort noise — lifts it to itself within
  a few seconds and stops counting;
* **hysteresis** — a peer becomes the speaker after ``attack`` seconds of voice and
  only when loudest; it stays through pauses shorter than ``release`` seconds, and
  someone else takes over only by being clearly (6 dB) louder or when it stops.

:class:`LevelMeter` turns the microphone's per-frame RMS into what the self-view's meter
shows: a fraction of a dB scale, rising at once and falling at a steady rate like a
peak meter, so it reads calmly at display rate.

Both take their time from the caller (``now``), so tests drive them without sleeping;
the unit daemon feeds them from one periodic task.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

__all__ = ["ActiveSpeaker", "LevelMeter", "meter_fraction"]

SILENCE = 1e-4  # -80 dBFS: the lowest a noise floor goes (digital silence has no floor)


def _db(level: float) -> float:
    return 20.0 * math.log10(max(level, SILENCE))


class ActiveSpeaker:
    """Picks at most one active speaker from a stream of level readings (see the module docstring)."""

    def __init__(
        self,
        threshold: float = 0.015,
        attack: float = 0.3,
        release: float = 1.5,
        *,
        margin_db: float = 9.0,
        floor_tau: float = 2.0,
    ) -> None:
        self.threshold = threshold
        self.attack = attack
        self.release = release
        self.margin_db = margin_db
        self.floor_tau = floor_tau
        self.current: str | None = None
        self._loud_since: dict[str, float] = {}
        self._last_loud: dict[str, float] = {}
        self._floor_db: dict[str, float] = {}
        self._seen: dict[str, float] = {}

    def floor(self, peer: str) -> float | None:
        """The peer's tracked noise floor (0..1 of full scale), None before its first reading."""
        db = self._floor_db.get(peer)
        return None if db is None else 10 ** (db / 20.0)

    def voice(self, peer: str, level: float, now: float) -> bool:
        """Track ``peer``'s noise floor with this reading; True when the reading is voice."""
        db = _db(level)
        floor = self._floor_db.get(peer)
        last = self._seen.get(peer)
        if floor is None or db <= floor:
            floor = db
        elif last is not None and now > last:
            floor += (db - floor) * (1.0 - math.exp(-(now - last) / self.floor_tau))
        self._floor_db[peer] = floor
        self._seen[peer] = now
        return level >= self.threshold and db - floor >= self.margin_db

    def update(self, levels: Mapping[str, float], now: float | None = None) -> str | None:
        """Feed the latest levels (peer id → level); returns the active speaker or None."""
        now = time.monotonic() if now is None else now
        for peer in list(self._floor_db):
            if peer not in levels:
                self._forget(peer)
        loud = {p: lv for p, lv in levels.items() if self.voice(p, lv, now)}
        for peer in levels:
            if peer in loud:
                self._loud_since.setdefault(peer, now)
                self._last_loud[peer] = now
            else:
                self._loud_since.pop(peer, None)
        if self.current is not None and (
            self.current not in levels or now - self._last_loud.get(self.current, -1e9) > self.release
        ):
            self.current = None
        candidates = [p for p in loud if now - self._loud_since[p] >= self.attack]
        if candidates:
            best = max(candidates, key=lambda p: loud[p])
            if self.current is None or self.current not in loud or loud[best] > 2 * loud[self.current]:
                self.current = best
        return self.current

    def _forget(self, peer: str) -> None:
        for table in (self._loud_since, self._last_loud, self._floor_db, self._seen):
            table.pop(peer, None)
        if self.current == peer:
            self.current = None


#: The meter's scale: -60 dBFS reads empty, -6 dBFS full (speech at a normal distance
#: after the gain stage sits around -26 dBFS, two thirds up).
METER_FLOOR_DB = -60.0
METER_TOP_DB = -6.0


def meter_fraction(level: float) -> float:
    """A level (RMS, 0..1 of full scale) as the meter's fill, 0..1 on a dB scale."""
    if level <= 0:
        return 0.0
    db = 20.0 * math.log10(level)
    return min(1.0, max(0.0, (db - METER_FLOOR_DB) / (METER_TOP_DB - METER_FLOOR_DB)))


class LevelMeter:
    """Peak-meter ballistics: rises to a louder reading at once, falls ``fall_db_per_s``."""

    def __init__(self, fall_db_per_s: float = 30.0) -> None:
        self.fall = fall_db_per_s / (METER_TOP_DB - METER_FLOOR_DB)  # fraction per second
        self.value = 0.0
        self._last: float | None = None

    def update(self, level: float, now: float | None = None) -> float:
        """Feed the newest RMS reading; returns the meter's fill (0..1)."""
        now = time.monotonic() if now is None else now
        target = meter_fraction(level)
        if self._last is not None:
            self.value = max(0.0, self.value - self.fall * max(0.0, now - self._last))
        self.value = max(self.value, target)
        self._last = now
        return self.value

    def reset(self) -> None:
        self.value, self._last = 0.0, None
