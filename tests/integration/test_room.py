"""Real unit processes in one room with the real signaling server, read through their status.

Each unit is a ``wallmesh run`` process (test-pattern camera, synthetic audio,
loopback ICE). A stream counts as received when the unit has decoded frames and
read the sender's stamp from their pixels (``latency_ms`` is only set then).
"""

from __future__ import annotations

import asyncio

import pytest

from appliance.demo.site import Site, receiving, wait_for

pytestmark = pytest.mark.slow


def stamped(status, min_frames=10):
    """Peers whose video this unit decodes and whose stamps it reads."""
    return {p["name"] for p in (status or {}).get("peers", []) if p["frames"] >= min_frames and p["latency_ms"] is not None}


def everyone_receives_everyone(site: Site, units) -> bool:
    names = {u.name for u in units}
    return all(stamped(u.status()) == names - {u.name} for u in units)


async def test_three_units_each_receive_the_other_two(site):
    units = [await site.spawn(i) for i in (1, 2, 3)]
    await wait_for(lambda: everyone_receives_everyone(site, units), 40, "3 units to receive each other")
    for unit in units:
        st = unit.status()
        assert st["state"] == "in_call" and st["room"] == "itest"
        assert len(st["peers"]) == 2
        for peer in st["peers"]:
            assert peer["connection"] == "connected"
            assert 0 <= peer["latency_ms"] < 1000


async def test_late_joiner_gets_video_within_300ms_of_its_connection(site):
    first = [await site.spawn(i) for i in (1, 2)]
    await wait_for(lambda: everyone_receives_everyone(site, first), 40, "the first two units")
    late = await site.spawn(3)
    await wait_for(lambda: len(stamped(late.status(), 1)) == 2, 40, "the late joiner's video")
    for peer in late.status()["peers"]:
        delay = peer["first_frame_at"] - peer["connected_at"]
        assert delay <= 0.3, f"{peer['name']}: first frame {delay * 1000:.0f} ms after connecting"


async def test_killed_unit_is_dropped_and_the_rest_keep_streaming(site):
    units = [await site.spawn(i) for i in (1, 2, 3)]
    await wait_for(lambda: everyone_receives_everyone(site, units), 40, "3 units to receive each other")
    units[2].kill()
    a, b = units[0], units[1]
    await wait_for(
        lambda: all("unit-3" not in {p["name"] for p in u.status()["peers"]} for u in (a, b)),
        10,
        "unit-3 to be dropped",
    )
    before = receiving(a.status())["unit-2"], receiving(b.status())["unit-1"]
    await asyncio.sleep(2)
    after = receiving(a.status())["unit-2"], receiving(b.status())["unit-1"]
    assert after[0] > before[0] + 20 and after[1] > before[1] + 20


async def test_server_restart_keeps_media_and_units_rejoin(site):
    a, b = await site.spawn(1), await site.spawn(2)
    await wait_for(lambda: everyone_receives_everyone(site, [a, b]), 40, "two units connected")
    pcs_before = {u.name: [p["connected_at"] for p in u.status()["peers"]] for u in (a, b)}

    await site.stop_server(kill=True)
    await wait_for(lambda: all(not u.status()["signaling"]["connected"] for u in (a, b)), 10, "units to notice")
    n = receiving(a.status())["unit-2"]
    await asyncio.sleep(2)
    assert receiving(a.status())["unit-2"] > n + 20, "media stopped while the server was down"
    assert a.status()["state"] == "reconnecting"

    await site.start_server()  # same port, same state directory
    await wait_for(
        lambda: all(u.status()["signaling"]["sessions"] >= 2 and u.status()["state"] == "in_call" for u in (a, b)),
        30,
        "units to rejoin",
    )
    await asyncio.sleep(1)
    for unit in (a, b):
        peers = unit.status()["peers"]
        assert len(peers) == 1, f"{unit.name} has duplicate peers: {peers}"
        assert [p["connected_at"] for p in peers] == pcs_before[unit.name], "the link was rebuilt, not kept"
    c = await site.spawn(3)
    await wait_for(lambda: everyone_receives_everyone(site, [a, b, c]), 40, "a new unit to join the rejoined room")


async def test_a_full_room_turns_the_newcomer_away_and_leaves_the_others_alone(tmp_path):
    site = Site(tmp_path, room="small", server_process=True, max_room_size=2)
    await site.start_server()
    try:
        a, b = await site.spawn(1), await site.spawn(2)
        await wait_for(lambda: everyone_receives_everyone(site, [a, b]), 40, "two units connected")
        c = await site.spawn(3)
        await wait_for(lambda: (c.status() or {}).get("state") == "error", 30, "the third unit to be turned away")
        assert "full" in c.status()["message"]
        assert c.status()["peers"] == []
        await asyncio.sleep(1)
        for unit, other in ((a, "unit-2"), (b, "unit-1")):
            assert [p["name"] for p in unit.status()["peers"]] == [other]
    finally:
        await site.close()
