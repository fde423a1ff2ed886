"""When work may run on the event loop: a smoothed CPU cost held against a budget.

A hand-off to a worker thread and back costs two wake-ups and a wait for the GIL —
about 0.13 ms of CPU on a 2-core machine, as much as encoding or decoding a 320×240
picture. So small pictures are encoded and decoded right on the loop, and work moves
to a thread only once it is costly enough to hold the loop up (big pictures). The cost
is measured in thread CPU time, so a loop that was merely preempted (a loaded machine)
does not count as slow work.
"""

from __future__ import annotations

import time


class LoopBudget:
    """Smoothed per-call CPU milliseconds of one kind of work, and whether it is over ``budget_ms``."""

    def __init__(self, budget_ms: float, smoothing: float = 0.1, warmup: int = 10) -> None:
        self.budget_ms = budget_ms
        self.smoothing = smoothing
        self.warmup = warmup  # calls measured before a verdict: the first picture is a costly keyframe
        self.calls = 0
        self.ms: float | None = None
        self._started = 0.0

    def start(self) -> None:
        self._started = time.thread_time()

    def stop(self) -> bool:
        """Fold in the call since :meth:`start`; True when the smoothed cost is over budget."""
        cost = (time.thread_time() - self._started) * 1000
        self.calls += 1
        if self.ms is None or self.calls <= self.warmup:  # a plain mean while warming up
            self.ms = cost if self.ms is None else self.ms + (cost - self.ms) / self.calls
        else:
            self.ms = (1 - self.smoothing) * self.ms + self.smoothing * cost
        return self.calls >= self.warmup and self.ms > self.budget_ms
