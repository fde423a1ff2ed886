"""Rooms beyond the mesh cap through a real Janus: units publish once and receive everyone."""

from __future__ import annotations

import asyncio

import pytest

from appliance.demo.site import receiving, wait_for

pytestmark = pytest.mark.slow


def _names_seen(unit, min_frames=3):
    return set(receiving(unit.status(), min_frames))


async def _all_receive(units, timeout):
    names = {u.name for u in units}

    def ok():
        return all(_names_seen(u) >= names - {u.name} for u in units)

    await wait_for(ok, timeout, "every unit receiving every other")


def _fresh_frames(unit):
    return {p["name"]: p["frames"] for p in (unit.status() or {}).get("peers", [])}


async def test_third_unit_moves_the_room_to_janus_and_back(sfu_site, janus):
    from tests.sfu.conftest import unit_extra
    extra = unit_extra(janus)
    units = [await sfu_site.spawn(i, extra) for i in (1, 2)]
    await _all_receive(units, 40)
    assert all(u.status().get("room_mode", "mesh") == "mesh" for u in units)

    units.append(await sfu_site.spawn(3, extra))
    await _all_receive(units, 40)
    assert {u.status().get("room_mode") for u in units} == {"sfu"}
    # frames keep coming through Janus (not a leftover of the mesh)
    before = [_fresh_frames(u) for u in units]
    await asyncio.sleep(3)
    after = [_fresh_frames(u) for u in units]
    for b, a, u in zip(before, after, units):
        for name in {x.name for x in units} - {u.name}:
            assert a[name] > b[name] + 5, f"{u.name} gets no new frames from {name}: {b} -> {a}"

    await units.pop().stop()
    # the room stayed at two (return_below) for return_after_s: back to a mesh
    await wait_for(lambda: all(u.status().get("room_mode") == "mesh" for u in units), 30, "the room back to a mesh")
    await _all_receive(units, 30)
    await asyncio.sleep(1)
    before = [_fresh_frames(u) for u in units]
    await asyncio.sleep(3)
    after = [_fresh_frames(u) for u in units]
    for b, a, u in zip(before, after, units):
        other = next(x.name for x in units if x is not u)
        assert a[other] > b[other] + 5, f"{u.name}: mesh frames from {other} stopped: {b} -> {a}"
    assert all(u.status().get("room_upload_kbps") is None for u in units), "the SFU publisher is still open"


async def _frames_flow(units, seconds=3.0, at_least=5):
    before = [_fresh_frames(u) for u in units]
    await asyncio.sleep(seconds)
    after = [_fresh_frames(u) for u in units]
    names = {x.name for x in units}
    return all(a.get(n, 0) > b.get(n, 0) + at_least for b, a, u in zip(before, after, units) for n in names - {u.name})


async def test_a_janus_killed_mid_call_is_rebuilt_and_the_room_carries_on(sfu_site, janus):
    from tests.sfu.conftest import unit_extra
    extra = unit_extra(janus)
    units = [await sfu_site.spawn(i, extra) for i in (1, 2, 3)]
    await _all_receive(units, 60)
    await wait_for(lambda: {u.status().get("room_mode") for u in units} == {"sfu"}, 20, "the room on the SFU")
    assert await _frames_flow(units)

    await janus.kill_janus()
    await asyncio.sleep(4.0)  # past the linger of the replaced mesh links (3 s)
    before = [_fresh_frames(u) for u in units]
    await asyncio.sleep(1.5)
    after = [_fresh_frames(u) for u in units]
    assert before == after, "frames still flow without Janus: they did not come through it"
    # three do not fit the mesh of two: the room stays on the SFU and waits for it to come back
    assert {u.status().get("room_mode") for u in units} == {"sfu"}
    await janus.start_janus()

    async def recovered():
        return await _frames_flow(units)

    for _ in range(30):
        if await recovered():
            break
    else:
        raise AssertionError("the room did not recover after Janus came back")
    assert {u.status().get("room_mode") for u in units} == {"sfu"}
