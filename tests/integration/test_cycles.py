"""200 join/leave cycles against a running unit leave its memory, descriptors and tasks flat.

Unit A stays in the room; unit B hangs up and joins again through its status
endpoint (what the call button does). Each cycle, A builds a real peer connection
to B and tears it down when B leaves. A's figures come from its ``GET /status``.
"""

from __future__ import annotations

import os
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


def processes(status: dict) -> dict[str, dict]:
    """RSS, descriptors and shared-memory files of the unit's process and each media worker, from /proc."""
    pids = {"unit": status["process"]["pid"]}
    for w in status["media"].get("workers", []):
        pids[f"worker {w['index']}"] = w["pid"]
    out = {}
    for what, pid in pids.items():
        fds = os.listdir(f"/proc/{pid}/fd")
        links = []
        for fd in fds:
            try:
                links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
            except OSError:
                continue
        rss = next(int(line.split()[1]) for line in open(f"/proc/{pid}/status") if line.startswith("VmRSS:"))
        shm = sum(1 for link in links if link.startswith(("/memfd:", "/dev/shm/")))
        out[what] = {"pid": pid, "rss_kb": rss, "fds": len(fds), "shm": shm}
    return out


async def test_join_leave_cycles_leave_the_daemon_flat(site):
    a = await site.spawn(1, {"video": {"width": 160, "height": 120, "fps": 15}})
    b = await site.spawn(2, {"video": {"width": 160, "height": 120, "fps": 15}})
    await wait_for(lambda: a.status() and b.status() and a.status()["peers"], 40, "the two units to meet")
    a_url, b_url = a.status()["status_url"], b.status()["status_url"]
    samples = []
    procs: list[dict[str, dict]] = []
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
                procs.append(processes(st))
    warm, end = samples
    print(f"after 20 cycles: {warm}; after {CYCLES}: {end}")
    assert end["fds"] <= warm["fds"] + 4, f"file descriptors grew: {warm['fds']} -> {end['fds']}"
    assert end["tasks"] <= warm["tasks"] + 4, f"asyncio tasks grew: {warm['tasks']} -> {end['tasks']}"
    assert end["rss_kb"] <= warm["rss_kb"] + 30 * 1024, f"RSS grew: {warm['rss_kb']} -> {end['rss_kb']} kB"
    first, last = procs
    print(f"processes after 20 cycles: {first}; after {CYCLES}: {last}")
    assert set(first) == set(last) and len(first) == (site.workers if site.workers and site.workers > 1 else 0) + 1
    for what, f in first.items():
        e = last[what]
        assert e["pid"] == f["pid"], f"{what} was restarted during the cycles"
        assert e["fds"] <= f["fds"] + 4, f"{what}: file descriptors grew: {f['fds']} -> {e['fds']}"
        assert e["shm"] == f["shm"], f"{what}: shared memory files {f['shm']} -> {e['shm']}"
        assert e["rss_kb"] <= f["rss_kb"] + 30 * 1024, f"{what}: RSS grew: {f['rss_kb']} -> {e['rss_kb']} kB"
