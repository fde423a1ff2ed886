"""LAN discovery: a DNS-SD advert of ``_wallmesh._tcp.local.`` through zeroconf.

Units browse for this service to find their site's server. The TXT record carries the
protocol version, port, scheme and the TLS fingerprint the unit should pin. Only the
configured interface addresses are used, so tests can keep it on loopback.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

log = logging.getLogger(__name__)

SERVICE_TYPE = "_wallmesh._tcp.local."


class Advert:
    """Registers the service on start, unregisters it on stop."""

    def __init__(self, *, instance: str, port: int, addresses: list[str], properties: dict[str, str]) -> None:
        self.instance = instance
        self.port = port
        self.addresses = addresses
        self.properties = properties
        self._zc: AsyncZeroconf | None = None
        self._info: AsyncServiceInfo | None = None

    async def start(self) -> None:
        from zeroconf import InterfaceChoice, IPVersion, get_all_addresses
        from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

        ips = [a for a in self.addresses if ":" not in a]
        self._zc = AsyncZeroconf(interfaces=ips or InterfaceChoice.All, ip_version=IPVersion.V4Only)
        name = f"{self.instance}.{SERVICE_TYPE}"
        if not ips:
            ips = [a for a in get_all_addresses() if not a.startswith("127.")]
        addrs = [socket.inet_aton(a) for a in ips]
        self._info = AsyncServiceInfo(
            SERVICE_TYPE, name, port=self.port, properties=self.properties,
            addresses=addrs or None, server=f"{socket.gethostname()}.local.",
        )
        await self._zc.async_register_service(self._info, allow_name_change=True)
        log.info("mDNS: advertising %s on %s", self._info.name, ", ".join(self.addresses) or "all interfaces")

    async def stop(self) -> None:
        zc, self._zc = self._zc, None
        if zc is None:
            return
        try:
            if self._info is not None:
                await zc.async_unregister_service(self._info)
        finally:
            await zc.async_close()
