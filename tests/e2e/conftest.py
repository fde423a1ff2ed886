"""Fixtures for the browser client's end-to-end tests: the real signaling server, headless Chromium.

The server runs in the test's event loop on an ephemeral loopback port with its embedded store
in a temporary directory. Chromium is Debian's ``/usr/bin/chromium`` with a fake camera, driven
over the DevTools protocol (``chromium.py``), and runs in a network namespace of its own that
holds only ``lo`` (``netns.py``), the server relayed into it on the same port: media can only
ever travel over loopback.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def _load_helper(name: str):
    # Tests run with --import-mode=importlib, so sibling modules are loaded by path.
    spec = importlib.util.spec_from_file_location(f"wallmesh_e2e_{name}", _HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


chromium = _load_helper("chromium")
netns_helper = _load_helper("netns")

USERS = {"alice": "correct horse battery", "bob": "staple 42 staple"}


@pytest.fixture
async def signal_server(tmp_path):
    """A running signaling server serving the browser client, with two users."""
    from appliance.signaling.config import Mdns, SignalConfig
    from appliance.signaling.server import SignalServer

    conf = SignalConfig(host="127.0.0.1", port=0, mdns=Mdns(enabled=False))
    server = SignalServer(conf, state_dir=str(tmp_path / "signal"))
    await server.start()
    try:
        for name, password in USERS.items():
            await server.admin.add_user(name, password)
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def netns():
    """A fresh network namespace with only ``lo`` up; deleted afterwards."""
    try:
        ns = await netns_helper.Netns.create()
    except netns_helper.NetnsUnavailable as exc:
        pytest.skip(f"needs a network namespace to keep WebRTC on loopback: {exc}")
    try:
        yield ns
    finally:
        await ns.close()


@pytest.fixture
async def site(signal_server, netns):
    """The signaling server, reachable at the same URL inside the namespace."""
    port = int(signal_server.url.rstrip("/").rsplit(":", 1)[1])
    await netns.expose_host_port(port)
    return signal_server


@pytest.fixture
async def browser(netns):
    b = await chromium.Browser.launch(netns=netns)
    try:
        yield b
    finally:
        await b.close()


@pytest.fixture
def open_client(browser, site):
    """Factory: a fresh page (own storage) signed in as ``username`` and joined to ``room``."""

    async def open_(username: str, room: str):
        page = await browser.new_page(site.url.rstrip("/") + "/")
        await page.sign_in_and_join(username, USERS[username], room)
        return page

    return open_
