"""Which addresses a unit offers as ICE host candidates, and which remote ones it accepts.

aioice gathers host candidates from every interface except loopback, and its
default RTCConfiguration reaches for a public STUN server. Neither fits here:
a wall unit offers the addresses of its LAN interface(s) and uses only the ICE
servers its own signaling server hands out; tests and the demo run on
127.0.0.1, which aioice would skip.

:class:`IcePolicy` is built from config. :func:`gathering` is a context in
which aioice gathers the policy's addresses, and only there: code outside it sees
aioice's own behaviour. :func:`process_default` is the one way for a bench or test to
put a whole process on loopback for a while. Both go through
:mod:`appliance.mesh.aioice_hooks`, the one module that replaces aioice's lookup;
assigning aioice's function directly would outlive its caller and leak into later code.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from appliance.mesh import aioice_hooks

log = logging.getLogger(__name__)

_CANDIDATE_HOST = re.compile(r"^(a=)?candidate:\S+ \d+ \S+ \d+ (\S+) ")


@dataclass(frozen=True)
class IcePolicy:
    """Host-candidate addresses and what to do with remote mDNS (``.local``) candidates."""

    addresses: tuple[str, ...] = ()  # empty: aioice's default (every non-loopback interface)
    resolve_mdns: bool = True
    ice_servers: tuple[dict[str, Any], ...] = field(default=())

    @classmethod
    def from_config(cls, ice: Any) -> IcePolicy:
        """Build from the ``[ice]`` config section (see ``appliance.unit.config.IceConfig``)."""
        if ice.loopback:
            return cls(addresses=("127.0.0.1",), resolve_mdns=False)
        if ice.addresses:
            return cls(addresses=tuple(ice.addresses), resolve_mdns=ice.resolve_mdns)
        if ice.interfaces:
            return cls(addresses=tuple(interface_addresses(ice.interfaces)), resolve_mdns=ice.resolve_mdns)
        return cls(resolve_mdns=ice.resolve_mdns)

    def with_servers(self, servers: Sequence[dict[str, Any]]) -> IcePolicy:
        return IcePolicy(self.addresses, self.resolve_mdns, tuple(servers))

    def rtc_configuration(self) -> Any:
        """An RTCConfiguration with exactly the servers given by the site (never a public default)."""
        from aiortc import RTCConfiguration, RTCIceServer

        servers = []
        for s in self.ice_servers:
            urls = s.get("urls")
            if not urls:
                continue
            servers.append(RTCIceServer(urls=urls, username=s.get("username"), credential=s.get("credential")))
        return RTCConfiguration(iceServers=servers)

    def accepts_candidate(self, candidate_line: str) -> bool:
        """False for a ``.local`` candidate this policy must not resolve (loopback/test mode)."""
        host = candidate_host(candidate_line)
        if host is None:
            return True
        return self.resolve_mdns or not host.endswith(".local")

    def filter_sdp(self, sdp: str) -> str:
        """Drop remote candidate lines this policy does not accept (keeps everything else)."""
        if self.resolve_mdns:
            return sdp
        lines = sdp.split("\r\n")
        kept = [ln for ln in lines if not ln.startswith("a=candidate:") or self.accepts_candidate(ln)]
        return "\r\n".join(kept)


def candidate_host(line: str) -> str | None:
    m = _CANDIDATE_HOST.match(line.strip())
    return m.group(2) if m else None


def interface_addresses(names: Sequence[str]) -> list[str]:
    """IPv4 and global IPv6 addresses of the named interfaces (unknown names are skipped with a warning)."""
    import ifaddr

    wanted = set(names)
    out: list[str] = []
    seen: set[str] = set()
    for adapter in ifaddr.get_adapters():
        if adapter.nice_name not in wanted and adapter.name not in wanted:
            continue
        seen.add(adapter.nice_name)
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                out.append(ip.ip)
            elif ip.ip[2] == 0 and not ipaddress.IPv6Address(ip.ip[0]).is_link_local:
                out.append(ip.ip[0])
    for missing in sorted(wanted - seen):
        log.warning("ice: interface %s not found; no host candidates from it", missing)
    return out


@contextlib.contextmanager
def gathering(policy: IcePolicy) -> Iterator[None]:
    """Within this block (and tasks it starts), aioice gathers the policy's addresses."""
    with aioice_hooks.host_addresses(policy.addresses or None):
        yield


@contextlib.contextmanager
def process_default(policy: IcePolicy) -> Iterator[None]:
    """For the whole process while the block runs, code outside any :func:`gathering`
    gathers the policy's addresses (benches and tests whose bare RTCPeerConnections
    must stay on loopback); restored on exit, so nothing leaks to later code."""
    with aioice_hooks.process_host_addresses(policy.addresses or None):
        yield
