"""Three real unit daemons in one room: the speaking highlight follows the one who talks.

The daemons run in this process (so their wall models can be read directly) against the
real signaling server, with real peer connections over loopback, synthetic microphones
(a tone in talk-spurts: 1.2 s on, 0.4 s off) and null speakers. Muted units send silence,
so "one talks, the others are silent" is set with the mute the buttons use.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from appliance.demo.site import Site, wait_for
from appliance.unit.app import UnitDaemon
from appliance.unit.config import load

pytestmark = pytest.mark.slow

LOW_VIDEO = {"video": {"type": "pattern", "width": 160, "height": 120, "fps": 5}}


def highlighted(daemon: UnitDaemon) -> list[str]:
    return [t.label for t in daemon.wall_model().tiles if t.speaking]


def hears(daemon: UnitDaemon, names: set[str]) -> bool:
    peers = list(daemon.mesh.peers.values())
    levels = daemon.media.mixer.levels() if daemon.media.mixer is not None else {}
    return {p.name for p in peers if p.connection_state == "connected" and p.audio_key in levels} == names


async def watch(units: list[UnitDaemon], seconds: float, step: float = 0.1) -> dict[str, list[list[str]]]:
    """Each unit's highlighted tiles, read every ``step`` seconds for ``seconds``."""
    seen: dict[str, list[list[str]]] = {u.name: [] for u in units}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for u in units:
            seen[u.name].append(highlighted(u))
        await asyncio.sleep(step)
    return seen


async def test_the_highlight_follows_the_talker_on_every_other_wall(tmp_path):
    site = Site(tmp_path, room="speaking")
    await site.start_server()
    units: list[UnitDaemon] = []
    try:
        for i in (1, 2, 3):
            _, path, _ = site.unit_config(i, LOW_VIDEO)
            unit = UnitDaemon(load(path))
            units.append(unit)
            await unit.start()
        one, two, three = units
        names = {u.name for u in units}
        await wait_for(lambda: all(hears(u, names - {u.name}) for u in units), 40, "three units hearing each other")
        await two.set_muted(True)
        await three.set_muted(True)

        # unit-1 talks: both silent walls highlight unit-1, exactly, through its pauses
        await wait_for(lambda: highlighted(two) == ["unit-1"] and highlighted(three) == ["unit-1"], 10, "unit-1 highlighted")
        # unit-1's own wall let go of whoever spoke before the mutes (after the release time)
        await wait_for(lambda: highlighted(one) == [], 5, "the muted units' highlight released on unit-1")
        seen = await watch(units, 4.0)  # two and a half talk-spurt cycles, pauses included
        for silent in ("unit-2", "unit-3"):
            assert all(h == ["unit-1"] for h in seen[silent]), f"{silent} lost or moved the highlight: {seen[silent]}"
        assert all(h == [] for h in seen["unit-1"]), "the talker's own wall has nobody to highlight"
        await wait_for(lambda: one.wall_model().mic_level > 0.5, 3, "unit-1's meter to show its talk")
        model = two.wall_model()
        assert model.muted and model.mic_level == 0.0, "a muted unit's meter shows muted"

        # the talk moves to unit-3: the highlight follows, on both other walls
        await one.set_muted(True)
        await three.set_muted(False)
        await wait_for(lambda: highlighted(one) == ["unit-3"] and highlighted(two) == ["unit-3"], 10, "unit-3 highlighted")
        seen = await watch(units, 2.0)
        for other in ("unit-1", "unit-2"):
            assert all(h == ["unit-3"] for h in seen[other]), f"{other}: {seen[other]}"
    finally:
        for unit in units:
            await unit.close()
        await site.close()
