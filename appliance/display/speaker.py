"""Who is speaking: the active-speaker highlight from per-peer audio levels.

The audio mixer measures each remote participant's level (RMS of their decoded
audio, 0.0–1.0). Raw levels flicker between words, so :class:`ActiveSpeaker`
adds hysteresis: someone becomes the speaker after talking for ``attack``
seconds above ``threshold`` and loudest, and stays the speaker through pauses
shorter than ``release`` seconds. The unit daemon feeds it when it builds the
wall model and sets ``Tile.speaking`` for the peer it names.
"""

from __future__ import annotations

import time
from collections.abc import Mapping


class ActiveSpeaker:
    """Picks at most one active speaker from a stream of level readings."""

    def __init__(self, threshold: float = 0.02, attack: float = 0.3, release: float = 1.5) -> None:
        self.threshold = threshold
        self.attack = attack
        self.release = release
        self.current: str | None = None
        self._loud_since: dict[str, float] = {}
        self._last_loud: dict[str, float] = {}

    def update(self, levels: Mapping[str, float], now: float | None = None) -> str | None:
        """Feed the latest levels (peer id → level); returns the active speaker or None."""
        now = time.monotonic() if now is None else now
        for peer in list(self._loud_since):
            if peer not in levels:
                self._forget(peer)
        loud = {p: lv for p, lv in levels.items() if lv >= self.threshold}
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
        self._loud_since.pop(peer, None)
        self._last_loud.pop(peer, None)
        if self.current == peer:
            self.current = None
