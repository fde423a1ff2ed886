"""LAN discovery: the server's DNS-SD advert, seen by a zeroconf browser bound to loopback only."""

from __future__ import annotations

import asyncio

from zeroconf import IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from appliance import __version__
from appliance.signaling.mdns import SERVICE_TYPE
from appliance.signaling.server import SignalServer

from .conftest import make_config


async def test_advert_seen_on_loopback(tmp_path) -> None:
    cfg = make_config(mdns={"interfaces": ["127.0.0.1"], "instance": "wallmesh-test"}, tls_on_loopback=True)
    async with SignalServer(cfg, state_dir=tmp_path) as server:
        azc = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
        found: asyncio.Queue[str] = asyncio.Queue()

        def on_change(zeroconf, service_type, name, state_change) -> None:
            if state_change is ServiceStateChange.Added:
                found.put_nowait(name)

        browser = AsyncServiceBrowser(azc.zeroconf, [SERVICE_TYPE], handlers=[on_change])
        try:
            name = await asyncio.wait_for(found.get(), 15)
            assert name.startswith("wallmesh-test")
            info = AsyncServiceInfo(SERVICE_TYPE, name)
            assert await info.async_request(azc.zeroconf, 3000)
            props = {k.decode(): (v or b"").decode() for k, v in info.properties.items()}
            assert info.port == server.port
            assert props["port"] == str(server.port)
            assert props["version"] == __version__ and props["proto"] == "1"
            assert props["fp"] == server.fingerprint and props["scheme"] == "https"
            assert info.parsed_addresses() == ["127.0.0.1"]
        finally:
            await browser.async_cancel()
            await azc.async_close()
