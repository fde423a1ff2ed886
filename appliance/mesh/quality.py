"""Which video tier a unit sends: a pure policy over mesh size, upload budget and loss.

A full mesh sends the same stream N-1 times, so the upload a unit needs is
``(participants - 1) × bitrate``. :func:`ceiling` is the best tier that fits the configured
budget (and an optional cap). :class:`QualityPolicy` then follows measured packet loss:
when the mean loss over the last ``down_after`` seconds reaches ``loss_high`` it steps one
tier down; a long clean spell (every reading below ``loss_low``) steps one tier back up,
never above the ceiling. The gap between the two thresholds and the longer wait to go up
are the hysteresis that keeps it from flapping. A change of mesh size applies at once (it
changes what the budget allows).

The loss is what the peers' receiver reports say (RTCP ``fractionLost``, each over about a
second of packets): noisy, and lower than the drop on the wire, since packets that NACK
recovered in time count as received. A link that drops 5 % reads 3-6 % from one report to
the next, so the step-down looks at a mean over a window (one quiet report must not cancel
a bad spell) and ``loss_high`` sits at 3 %.

No media here: the unit feeds it figures from getStats and gives the chosen tier to
:meth:`appliance.mesh.fanout.SharedVideo.reconfigure`.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tier:
    name: str
    width: int
    height: int
    bitrate: int  # bit/s
    fps: int = 30


TIERS: tuple[Tier, ...] = (
    Tier("low", 320, 240, 250_000),
    Tier("medium", 640, 480, 500_000),
    Tier("hd", 1280, 720, 1_500_000),
    Tier("fullhd", 1920, 1080, 3_000_000),
)


def rtcp_fraction(fraction_lost: float | None) -> float | None:
    """aiortc's ``fractionLost`` (RTCP's 8-bit fixed point, 0..255) as a fraction 0..1.

    aiortc 1.16 passes the RTCP field through unscaled, where the W3C stats spec has a
    fraction; the policy wants the fraction.
    """
    return None if fraction_lost is None else max(0.0, min(1.0, fraction_lost / 256))


def tier_named(name: str) -> Tier:
    for tier in TIERS:
        if tier.name == name:
            return tier
    raise ValueError(f"unknown tier {name!r}; known: {', '.join(t.name for t in TIERS)}")


def ceiling(participants: int, upload_budget: int, max_tier: Tier = TIERS[-1]) -> Tier:
    """The best tier with ``(participants - 1) × bitrate ≤ upload_budget``, at most ``max_tier``.

    When even the lowest tier does not fit, the lowest tier is returned: sending something
    beats sending nothing, and loss feedback cannot go lower anyway.
    """
    receivers = max(1, participants - 1)
    best = TIERS[0]
    for tier in TIERS:
        if tier.bitrate > max_tier.bitrate:
            break
        if receivers * tier.bitrate <= upload_budget:
            best = tier
    return best


class QualityPolicy:
    """Tier choice with loss-driven step-down and hysteresis; feed it with :meth:`update`."""

    def __init__(
        self,
        *,
        upload_budget: int = 20_000_000,
        max_tier: Tier = TIERS[-1],
        loss_high: float = 0.03,
        loss_low: float = 0.01,
        down_after: float = 2.0,
        up_after: float = 10.0,
    ) -> None:
        if not 0 <= loss_low < loss_high <= 1:
            raise ValueError("need 0 <= loss_low < loss_high <= 1")
        self.upload_budget = upload_budget
        self.max_tier = max_tier
        self.loss_high, self.loss_low = loss_high, loss_low
        self.down_after, self.up_after = down_after, up_after
        self._loss_cap = len(TIERS) - 1  # index loss allows
        self._recent: deque[tuple[float, float]] = deque(maxlen=4096)  # (time, loss) over the last down_after s
        self._clean_since: float | None = None
        self._ceiling = TIERS.index(ceiling(2, upload_budget, max_tier))
        self.tier = TIERS[self._ceiling]
        self._warned = False

    def update(self, participants: int, loss: float, now: float) -> Tier:
        """Fold in the current mesh size and the worst peer's loss fraction (0..1) at ``now`` (s)."""
        if not 0.0 <= loss <= 1.0:
            if not self._warned:
                log.warning("quality: loss %r is not a fraction 0..1 (aiortc's fractionLost is in 1/256: use rtcp_fraction)", loss)
                self._warned = True
            loss = min(max(loss, 0.0), 1.0)
        self._ceiling = TIERS.index(ceiling(participants, self.upload_budget, self.max_tier))
        current = min(self._ceiling, self._loss_cap)
        recent = self._recent
        recent.append((now, loss))
        while len(recent) > 1 and recent[1][0] <= now - self.down_after:
            recent.popleft()  # keep one reading at or before the window's start
        covered = now - recent[0][0] >= self.down_after
        mean = sum(x for _, x in recent) / len(recent)
        if covered and mean >= self.loss_high and current > 0:
            self._loss_cap = current - 1
            recent.clear()  # another full window before the next step down
        if loss <= self.loss_low:
            if self._clean_since is None:
                self._clean_since = now
            elif now - self._clean_since >= self.up_after and self._loss_cap < self._ceiling:
                self._loss_cap = min(self._loss_cap, self._ceiling) + 1
                self._clean_since = now
        else:  # any loss restarts the clean spell
            self._clean_since = None
        self._loss_cap = max(self._loss_cap, 0)
        self.tier = TIERS[min(self._ceiling, self._loss_cap)]
        return self.tier
