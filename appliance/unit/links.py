"""Notices a network link coming back, so a unit cut off from its server retries at once.

A unit that lost its link (a cable pulled, a switch port that flapped) keeps trying the
signaling server with a capped backoff; without a hint, the first try after the link
returns may be up to the cap away (10 s by default). The kernel says when a link's
operational state changes: ``/sys/class/net/<name>/operstate`` reads ``up`` once the
carrier is back. :class:`LinkWatch` reads it twice a second for the unit's interfaces
(``[ice] interfaces``, else every one but loopback) and calls back when one comes up; the
signaling client then tries again without waiting out its backoff.

Reading sysfs is a few small reads of kernel memory (no disk, so nothing that could stall
the event loop), cheap enough to poll; a netlink socket would answer sooner but needs more
code than the half second it saves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

SYSFS_NET = Path("/sys/class/net")


def link_states(names: Sequence[str] = (), root: Path = SYSFS_NET) -> dict[str, bool]:
    """Which of the named interfaces (every one but ``lo`` when none are named) are up."""
    try:
        present = sorted(p.name for p in root.iterdir())
    except OSError:
        return {}
    wanted = [n for n in present if n in names] if names else [n for n in present if n != "lo"]
    states: dict[str, bool] = {}
    for name in wanted:
        try:
            state = (root / name / "operstate").read_text().strip()
        except OSError:
            continue
        states[name] = state == "up"
    return states


class LinkWatch:
    """Calls ``on_up(name)`` on the loop whenever one of the interfaces comes up."""

    def __init__(self, names: Sequence[str], on_up: Callable[[str], None], *, period: float = 0.5,
                 root: Path = SYSFS_NET) -> None:
        self.names = tuple(names)
        self.on_up = on_up
        self.period = period
        self.root = root
        self.ups = 0  # links seen coming up, for tests and status
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="link-watch")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def check(self, before: dict[str, bool]) -> dict[str, bool]:
        """One reading against the previous one; calls back for each link that came up."""
        now = link_states(self.names, self.root)
        for name, up in now.items():
            if up and not before.get(name, False):  # came up, or appeared up (a dongle plugged in)
                self.ups += 1
                log.info("link %s is up again", name)
                self.on_up(name)
        return now

    async def _run(self) -> None:
        states = link_states(self.names, self.root)
        while True:
            await asyncio.sleep(self.period)
            states = self.check(states)
