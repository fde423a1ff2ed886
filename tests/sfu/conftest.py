"""Fixtures for the conference-server tests: a real Janus in a namespace of its own, and a site using it.

Janus never gathers on loopback, so :class:`~appliance.signaling.sfu.lab.JanusLab` runs it in a
network namespace the test creates, reached over a veth pair; units gather on the host end's
address, the signaling server reaches Janus's API on the namespace end. Both go when the test ends.
"""

from __future__ import annotations

import pytest

from appliance.demo.site import Site
from appliance.signaling.sfu.lab import JanusLab, LabUnavailable


@pytest.fixture
async def janus(tmp_path):
    lab = JanusLab(tmp_path / "server")
    try:
        await lab.start()
    except LabUnavailable as exc:
        pytest.skip(f"no Janus lab here: {exc}")
    try:
        yield lab
    finally:
        await lab.close()


def sfu_config(lab: JanusLab, **extra) -> dict:
    return {"sfu": {"type": "janus", "url": lab.url, "probe_s": 0.5, **extra}}


def unit_extra(lab: JanusLab) -> dict:
    """Units gather ICE candidates on the host end of the lab's veth pair (Janus ignores loopback)."""
    return {"ice": {"loopback": False, "addresses": [lab.host_ip], "resolve_mdns": False}, "video": {"fps": 15}}


@pytest.fixture
async def sfu_site(tmp_path, janus):
    """A site whose mesh holds two: the third participant moves the room to Janus."""
    site = Site(tmp_path, room="sfu", max_room_size=2, server_extra=sfu_config(janus, return_below=2, return_after_s=2.0))
    await site.start_server()
    try:
        yield site
    finally:
        for unit in site.units:
            if unit.alive is False and unit.proc.returncode not in (0, -9, -15):
                print(f"--- {unit.name} exited {unit.proc.returncode}:\n{unit.log_tail(40)}")
        await site.close()


@pytest.fixture
async def http():
    import aiohttp

    async with aiohttp.ClientSession() as session:
        yield session
