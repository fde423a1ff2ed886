"""200 join/leave cycles against a running unit leave its memory, descriptors and tasks flat.

Unit A stays in the room; unit B hangs up and joins again through its status
endpoint (what the call button does). Each cycle, A builds a real peer connection
to B and tears it down when B leaves. A's figures come from its ``GET /status``.
"""

from __future__ import annotations

import time

import aiohttp
import pytest

from appliance.demo.site import wait_for

pytestmark = pytest.mark.slow

CYCLES = 200


async def get_status(session: aiohttp.ClientSession, url: str) -> dict:
    async with session.get(url + "/status") as resp:
        assert resp.status == 200
        return await resp.json()


async def until_status(session, url, check, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        st = await get_status(session, url)
        if check(st):
            return st
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {st}")
        await _sleep(0.02)


async def _sleep(s: float) -> None:
    import asyncio

    await asyncio.sleep(s)


def connected_to(name):
    return lambda st: any(p["name"] == name and p["connection"] == "connected" for p in st["peers"])


async def test_join_leave_cycles_leave_the_daemon_flat(site):
    a = await site.spawn(1, {"video": {"width": 160, "height": 120, "fps": 15}})
    b = await site.spawn(2, {"video": {"width": 160, "height": 120, "fps": 15}})
    await wait_for(lambda: a.status() and b.status() and a.status()["peers"], 40, "the two units to meet")
    a_url, b_url = a.status()["status_url"], b.status()["status_url"]
    samples = []
    async with aiohttp.ClientSession() as session:
        for cycle in range(CYCLES):
            async with session.post(b_url + "/actions/hangup") as resp:
                assert resp.status == 200, await resp.text()
            await until_status(session, a_url, lambda st: not st["peers"], 15, f"A to drop B (cycle {cycle})")
            async with session.post(b_url + "/actions/join") as resp:
                assert resp.status == 200, await resp.text()
            st = await until_status(session, a_url, connected_to("unit-2"), 20, f"A to connect to B (cycle {cycle})")
            if cycle in (20, CYCLES - 1):
                await _sleep(1.0)  # let closed connections finish their teardown
                st = await get_status(session, a_url)
                samples.append(st["process"])
    warm, end = samples
    print(f"after 20 cycles: {warm}; after {CYCLES}: {end}")
    assert end["fds"] <= warm["fds"] + 4, f"file descriptors grew: {warm['fds']} -> {end['fds']}"
    assert end["tasks"] <= warm["tasks"] + 4, f"asyncio tasks grew: {warm['tasks']} -> {end['tasks']}"
    assert end["rss_kb"] <= warm["rss_kb"] + 30 * 1024, f"RSS grew: {warm['rss_kb']} -> {end['rss_kb']} kB"
