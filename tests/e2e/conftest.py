"""Fixtures for the browser client's end-to-end tests: the real signaling server, headless Chromium.

The server runs in the test's event loop on an ephemeral loopback port with its embedded store
in a temporary directory. Chromium is Debian's ``/usr/bin/chromium`` with a fake camera, driven
over the DevTools protocol (``chromium.py``), and runs in a network namespace of its own that
holds only ``lo`` (``netns.py``), the server relayed into it on the same port: media can only
ever travel over loopback.
"""

from __future__ import annotations

import asyncio
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
units_helper = _load_helper("units")

USERS = {"alice": "correct horse battery", "bob": "staple 42 staple", "mallory": "not so secret"}


class ServerHandle:
    """The real signaling server, restartable on the same port with the same state (keys, users)."""

    def __init__(self, state_dir, **config) -> None:
        self.state_dir = state_dir
        self.config = config
        self.server = None
        self.port = 0

    async def start(self) -> None:
        from appliance.signaling.config import Mdns, SignalConfig
        from appliance.signaling.server import SignalServer

        conf = SignalConfig(host="127.0.0.1", port=self.port, mdns=Mdns(enabled=False), **self.config)
        self.server = SignalServer(conf, state_dir=str(self.state_dir))
        await self.server.start()
        self.port = self.server.port

    async def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            await server.stop()

    async def restart(self, down_for: float = 0.0) -> None:
        await self.stop()
        await asyncio.sleep(down_for)
        await self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin(self):
        return self.server.admin


async def start_server(state_dir, **config) -> ServerHandle:
    """A running signaling server serving the browser client, with the test users."""
    handle = ServerHandle(state_dir, **config)
    await handle.start()
    try:
        for name, password in USERS.items():
            await handle.admin.add_user(name, password)
    except BaseException:
        await handle.stop()
        raise
    return handle


@pytest.fixture
async def server_factory(tmp_path):
    """Factory for a server with a non-default config (``ice=Ice(...)`` and the like)."""
    started: list[ServerHandle] = []

    async def make(**config) -> ServerHandle:
        handle = await start_server(tmp_path / f"signal-{len(started)}", **config)
        started.append(handle)
        return handle

    try:
        yield make
    finally:
        for handle in started:
            await handle.stop()


@pytest.fixture
async def signal_server(tmp_path):
    handle = await start_server(tmp_path / "signal")
    try:
        yield handle
    finally:
        await handle.stop()


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
    await netns.expose_host_port(signal_server.port)
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
