"""Finding the site's signaling server on the LAN by mDNS (``_wallmesh._tcp``).

The server advertises ``_wallmesh._tcp.local.`` with its port and TXT keys
``scheme`` (http|https), optionally ``path`` and ``fp`` (its certificate's
SHA-256). zeroconf listens only on the configured interfaces; tests pass
``127.0.0.1`` so nothing is sent on a real network.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from appliance.errors import WallmeshError

log = logging.getLogger(__name__)

SERVICE_TYPE = "_wallmesh._tcp.local."


class DiscoveryError(WallmeshError, TimeoutError):
    """No signaling server answered on the LAN in time."""


@dataclass(frozen=True)
class Found:
    url: str
    fingerprint: str  # hex, or "" when the advert carries none


def _txt(props: dict[bytes, bytes | None], key: str) -> str:
    value = props.get(key.encode())
    return value.decode("utf-8", "replace") if value else ""


async def discover(interfaces: Sequence[str] = (), timeout: float = 10.0) -> Found:
    """Browse for the first ``_wallmesh._tcp`` service and return its base URL."""
    from zeroconf import IPVersion, ServiceStateChange, Zeroconf
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

    kwargs: dict[str, Any] = {"interfaces": list(interfaces)} if interfaces else {}
    if interfaces and all(":" not in i for i in interfaces):
        kwargs["ip_version"] = IPVersion.V4Only
    azc = AsyncZeroconf(**kwargs)
    names: asyncio.Queue[str] = asyncio.Queue()

    def on_change(zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:  # zeroconf passes these by keyword
        if state_change in (ServiceStateChange.Added, ServiceStateChange.Updated):
            names.put_nowait(name)

    browser = AsyncServiceBrowser(azc.zeroconf, SERVICE_TYPE, handlers=[on_change])
    try:
        async with asyncio.timeout(timeout):
            while True:
                name = await names.get()
                info = AsyncServiceInfo(SERVICE_TYPE, name)
                if not await info.async_request(azc.zeroconf, 3000):
                    continue
                addrs = info.parsed_scoped_addresses()
                if not addrs or not info.port:
                    continue
                props = info.properties or {}
                scheme = _txt(props, "scheme") or "http"
                host = addrs[0]
                host = f"[{host}]" if ":" in host else host
                path = _txt(props, "path").rstrip("/")
                url = f"{scheme}://{host}:{info.port}{path}"
                log.info("discovery: found %s at %s", name, url)
                return Found(url, _txt(props, "fp"))
    except TimeoutError:
        raise DiscoveryError(f"no signaling server ({SERVICE_TYPE}) answered within {timeout:g} s") from None
    finally:
        await browser.async_cancel()
        await azc.async_close()
