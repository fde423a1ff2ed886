"""Chromium in a room that goes through a real Janus: it publishes once and receives every unit.

Janus runs in a network namespace of its own (``appliance.signaling.sfu.lab``); Chromium runs in
that same namespace (so it reaches Janus on the namespace's own address, and the units over the
veth pair), the signaling server stays on the host's loopback, relayed in on the same port. The
mesh holds two: two units make a mesh, the browser is the third and takes the room to Janus.
"""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from appliance.demo import server as demo_server
from appliance.demo.site import Site, wait_for
from appliance.signaling.config import Sfu
from appliance.signaling.sfu.lab import JanusLab, LabUnavailable

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ROOM = "e2e-sfu"
chromium = sys.modules["wallmesh_e2e_chromium"]
netns_helper = sys.modules["wallmesh_e2e_netns"]


@pytest.fixture
async def lab(tmp_path):
    janus = JanusLab(tmp_path / "janus")
    try:
        await janus.start()
    except LabUnavailable as exc:
        pytest.skip(f"no Janus lab here: {exc}")
    try:
        yield janus
    finally:
        await janus.close()


async def test_a_browser_takes_a_room_of_units_to_janus_and_receives_them(lab, server_factory, tmp_path):
    from tests.e2e.conftest import USERS

    sfu = Sfu(type="janus", url=lab.url, secret_file=str(lab.secret_file), admin_key_file=str(lab.admin_key_file),
              probe_s=0.5, return_below=2, return_after_s=3)
    server = await server_factory(max_room_size=2, sfu=sfu)
    inside = netns_helper.Netns(lab.netns)   # the lab's namespace; Chromium runs there
    await inside.expose_host_port(server.port)
    site = Site(tmp_path / "units", room=ROOM)
    site.url = server.url
    site.server_dir.mkdir(parents=True, exist_ok=True)
    site.token_file.write_text(await server.admin.enrollment_token(ttl_s=3600, rooms=("*",)) + "\n")
    unit = {"ice": {"loopback": False, "addresses": [lab.host_ip], "resolve_mdns": False}, "video": {"fps": 15}}
    browser = None
    try:
        units = [await site.spawn(i, unit) for i in (1, 2)]
        await wait_for(lambda: all((u.status() or {}).get("peers") and u.status()["peers"][0]["frames"] > 5 for u in units),
                       60, "the two units' mesh")
        browser = await chromium.Browser.launch(netns=inside)
        alice = await browser.new_page(server.url.rstrip("/") + "/")
        await alice.sign_in_and_join("alice", USERS["alice"], ROOM)

        async def browser_decodes_both_through_janus():
            stats = await alice.eval("wallmesh.stats()")
            by_name = {p["name"]: p for p in stats["peers"].values()}
            ok = all((by_name.get(n) or {}).get("via") == "sfu"
                     and ((by_name[n].get("video") or {}).get("framesDecoded", 0) >= 10) for n in ("unit-1", "unit-2"))
            return by_name if ok else None

        deadline = asyncio.get_running_loop().time() + 60
        while not await browser_decodes_both_through_janus():
            if asyncio.get_running_loop().time() > deadline:
                stats = await alice.eval("wallmesh.stats()")
                raise AssertionError(f"Chromium does not decode both units through Janus:\n{json.dumps(stats)[:3000]}\n"
                                     f"{alice.console_messages()[-10:]}\n{units[0].log_tail(20)}")
            await asyncio.sleep(0.5)
        assert (await alice.eval("wallmesh.state()"))["mode"] == "sfu"

        def units_receive_alice():
            return all(any(p["name"] == "alice" and p["frames"] >= 10 for p in (u.status() or {}).get("peers", [])) for u in units)

        await wait_for(units_receive_alice, 60, "both units to receive the browser through Janus")
        assert {(u.status() or {}).get("room_mode") for u in units} == {"sfu"}

        # one unit leaves: the two left fit a mesh, and after return_after_s they are one again
        await units.pop().stop()

        async def browser_decodes_unit1_over_the_mesh():
            if (await alice.eval("wallmesh.state()"))["mode"] != "mesh":
                return None
            stats = await alice.eval("wallmesh.stats()")
            mesh = [p for p in stats["peers"].values() if p["name"] == "unit-1" and p.get("via") != "sfu"]
            return mesh if mesh and (mesh[0].get("video") or {}).get("framesDecoded", 0) >= 10 else None

        deadline = asyncio.get_running_loop().time() + 60
        while not await browser_decodes_unit1_over_the_mesh():
            if asyncio.get_running_loop().time() > deadline:
                stats = await alice.eval("wallmesh.stats()")
                raise AssertionError(f"Chromium is not back on a mesh with unit-1:\n{json.dumps(stats)[:3000]}\n"
                                     f"{alice.console_messages()[-10:]}\n{units[0].log_tail(20)}")
            await asyncio.sleep(0.5)
        await wait_for(lambda: (units[0].status() or {}).get("room_mode") == "mesh" and (units[0].status() or {}).get("room_upload_kbps") is None,
                       30, "unit-1 back on a mesh, its SFU publisher closed")
        frames = {p["name"]: p["frames"] for p in units[0].status()["peers"]}
        await asyncio.sleep(3)
        later = {p["name"]: p["frames"] for p in units[0].status()["peers"]}
        assert later.get("alice", 0) > frames.get("alice", 0) + 5, (frames, later)
    finally:
        if browser is not None:
            await browser.close()
        await site.close()
        await inside.close()
