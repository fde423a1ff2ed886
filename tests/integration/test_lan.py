"""Two units on a LAN the test builds: a network namespace with a veth pair, no loopback shortcuts.

This is the production path end to end: the server binds a LAN address, so it
serves HTTPS with its generated certificate and advertises ``_wallmesh._tcp`` by
mDNS; the units discover it, learn and pin its certificate fingerprint from the
advert, and gather ICE host candidates from their configured interface only
(``ice.loopback`` off). Nothing leaves the namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from appliance.demo.site import Site, wait_for

pytestmark = pytest.mark.slow

SERVER, UNIT1, UNIT2 = "10.77.0.1", "10.77.0.1", "10.77.0.2"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def lan():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("building a network namespace needs root and iproute2 (scripts/setup installs iproute2)")
    name = f"wmlan{os.getpid()}"
    try:
        ip("netns", "add", name)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"this machine does not allow network namespaces: {exc.stderr.decode().strip()}")
    try:
        ip("-n", name, "link", "set", "lo", "up")
        ip("-n", name, "link", "add", "wm0", "type", "veth", "peer", "name", "wm1")
        ip("-n", name, "addr", "add", f"{UNIT1}/24", "dev", "wm0")
        ip("-n", name, "addr", "add", f"{UNIT2}/24", "dev", "wm1")
        ip("-n", name, "link", "set", "wm0", "up")
        ip("-n", name, "link", "set", "wm1", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def unit_extra(interface: str, address: str) -> dict:
    return {
        "server": {"url": "discover", "discover_interfaces": [address], "discover_timeout_s": 5.0},
        "ice": {"loopback": False, "interfaces": [interface]},
    }


def peers_receiving(unit) -> set:
    st = unit.status() or {}
    return {p["name"] for p in st.get("peers", []) if p["frames"] > 10 and p["latency_ms"] is not None}


async def test_units_discover_pin_and_connect_over_a_lan(lan, tmp_path):
    site = Site(tmp_path, room="lan", server_process=True, netns=lan, server_host=SERVER)
    try:
        url = await site.start_server()
        assert url.startswith(f"https://{SERVER}:")
        a = await site.spawn(1, unit_extra("wm0", UNIT1))
        b = await site.spawn(2, unit_extra("wm1", UNIT2))
        await wait_for(
            lambda: peers_receiving(a) == {"unit-2"} and peers_receiving(b) == {"unit-1"}, 60, "video both ways on the LAN"
        )
        fingerprint = json.loads((site.server_dir / "server.json").read_text())["fingerprint"]
        for unit in (a, b):
            pinned = (tmp_path / unit.name / "state" / "server-fingerprint").read_text().strip()
            assert pinned == fingerprint.replace(":", "").lower()
    finally:
        await site.close()
