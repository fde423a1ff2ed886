"""A small LAN made of network namespaces: a switch, hosts on it, and faults on their links.

The switch is a Linux bridge in a namespace of its own (the "hub"); each host is another
namespace joined to it by a veth pair, with ``eth0`` and an address of the lab's subnet on
its side and a switch port on the hub's. The signaling server and coturn run in the hub on
the bridge's address, the unit daemons each in their host, so every packet between units
crosses a link the lab can spoil and nothing reaches the machine's real interfaces.

Faults use what this kernel has (no ``netem``): nftables random drop
(``numgen random mod 100 < N drop``) on a host's link, ``tc`` token-bucket rate limits, a
switch port set down and up for a partition (the host sees its carrier go, as when a cable
is pulled), and nftables rules that drop UDP between hosts so only a TURN relay works.

The benches and the tests use the same :class:`Lab`, so a bench figure comes from the same
code a test checks. Everything is torn down in :meth:`Lab.close` (deleting a namespace takes
its veth ends, bridge and rules with it); a new lab first removes those of killed runs.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import secrets
import socket
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from appliance.errors import WallmeshError

SUBNET = "10.88.0"  # every lab has its own namespaces, so labs never see each other's addresses
HUB_ADDRESS = f"{SUBNET}.1"
PREFIX = "wmlab"
CLONE_NEWNET = 0x40000000
FAULT_TABLE = "wmfault"


class LabError(WallmeshError, RuntimeError):
    """The lab cannot be built here (not root, no ``ip``/``nft``/``tc``) or a command failed."""


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(list(cmd), check=False, capture_output=True, text=True, timeout=15)
    except FileNotFoundError as exc:
        raise LabError(f"{cmd[0]} is missing (scripts/setup installs iproute2 and nftables)") from exc
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(cmd)}: {done.stderr.strip() or done.returncode}")
    return done


def missing() -> str | None:
    """Why a lab cannot be built on this machine, or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft", "tc"):
        if _which(tool) is None:
            return f"{tool} is missing (scripts/setup installs iproute2 and nftables)"
    return None


def _which(tool: str) -> str | None:
    import shutil

    return shutil.which(tool)


def in_namespace(name: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on a short-lived thread that entered namespace ``name`` (a namespace is per
    thread); sockets it makes keep that namespace after the thread ends."""
    box: dict[str, Any] = {}
    libc = ctypes.CDLL(None, use_errno=True)

    def body() -> None:
        try:
            fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({name}): {os.strerror(err)}")
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller below
            box["error"] = exc

    thread = threading.Thread(target=body, name=f"netns-{name}", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


@dataclass
class Host:
    """One machine on the lab's switch: a namespace with ``eth0`` at :attr:`address`."""

    lab: Lab
    name: str
    netns: str
    address: str
    port: str  # the switch port (the veth end in the hub)
    interface: str = "eth0"
    loss: int = 0  # percent of frames dropped each way on the link
    udp_blocked: list[str] = field(default_factory=list)  # addresses no UDP goes to or comes from

    def exec_prefix(self) -> list[str]:
        """Prefix for a command line that runs on this host."""
        return ["ip", "netns", "exec", self.netns]

    def set_loss(self, percent: int) -> None:
        """Drop ``percent`` % of the frames on this host's link, each direction (0: none)."""
        if not 0 <= percent <= 100:
            raise ValueError("loss is a percentage 0..100")
        self.loss = percent
        self.lab.apply_rules()

    def block_udp_with(self, others: list[Host]) -> None:
        """Drop UDP between this host and ``others``, both ways (the switch's own address,
        where the server and TURN listen, stays reachable)."""
        self.udp_blocked = [h.address for h in others]
        self.lab.apply_rules()

    def set_rate(self, kbit: int | None) -> None:
        """Limit what this host sends to ``kbit`` kbit/s with a token bucket (None: no limit)."""
        _run(*self.exec_prefix(), "tc", "qdisc", "del", "dev", self.interface, "root", check=False)
        if kbit:
            burst = max(16, kbit // 8)  # about 1/8 s of traffic, at least a few full packets
            _run(*self.exec_prefix(), "tc", "qdisc", "add", "dev", self.interface, "root", "tbf",
                 "rate", f"{kbit}kbit", "burst", f"{burst}kbit", "latency", "300ms")

    def set_link(self, up: bool) -> None:
        """Set this host's switch port up or down (the host sees its carrier come and go)."""
        _run("ip", "-n", self.lab.hub, "link", "set", self.port, "up" if up else "down")

    def socket(self, kind: int = socket.SOCK_STREAM) -> socket.socket:
        """A socket made on this host (connect it to the host's own 127.0.0.1 services)."""
        return in_namespace(self.netns, lambda: socket.socket(socket.AF_INET, kind))

    async def http_get(self, port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        """A plain HTTP/1.0 GET to 127.0.0.1:``port`` on this host: (status, body)."""
        sock = await asyncio.to_thread(self.socket)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port)), timeout)
        except (OSError, TimeoutError):
            sock.close()
            raise
        reader, writer = await asyncio.open_connection(sock=sock)
        try:
            writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            await writer.drain()
            raw = await asyncio.wait_for(reader.read(), timeout)
        finally:
            writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
        return status, body


class Lab:
    """The switch namespace and its hosts; use as ``async with Lab.create() as lab``."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.hub = f"{tag}-hub"
        self.address = HUB_ADDRESS
        self.hosts: dict[str, Host] = {}
        self._namespaces: list[str] = []
        self._closed = False

    @classmethod
    def create(cls) -> Lab:
        why = missing()
        if why:
            raise LabError(why)
        Lab.sweep()
        lab = cls(f"{PREFIX}{os.getpid()}x{secrets.token_hex(2)}")
        try:
            lab._add_namespace(lab.hub)
            _run("ip", "-n", lab.hub, "link", "add", "br0", "type", "bridge")
            _run("ip", "-n", lab.hub, "addr", "add", f"{lab.address}/24", "dev", "br0")
            _run("ip", "-n", lab.hub, "link", "set", "br0", "up")
        except BaseException:
            lab.close()
            raise
        return lab

    def _add_namespace(self, name: str) -> None:
        _run("ip", "netns", "add", name)
        self._namespaces.append(name)
        _run("ip", "-n", name, "link", "set", "lo", "up")

    def exec_prefix(self) -> list[str]:
        """Prefix for a command line that runs on the switch's namespace (server, TURN)."""
        return ["ip", "netns", "exec", self.hub]

    def socket(self, kind: int = socket.SOCK_STREAM) -> socket.socket:
        """A socket made on the switch's namespace (it can bind :attr:`address`)."""
        return in_namespace(self.hub, lambda: socket.socket(socket.AF_INET, kind))

    def add_host(self, name: str) -> Host:
        """A new host on the switch, addressed ``10.88.0.(n + 1)`` in order of creation."""
        if name in self.hosts:
            raise ValueError(f"host {name} exists")
        if len(self.hosts) >= 200:
            raise LabError("the lab's /24 is full")
        netns = f"{self.tag}-h{len(self.hosts) + 1}"
        port = f"port{len(self.hosts) + 1}"
        address = f"{SUBNET}.{len(self.hosts) + 2}"
        self._add_namespace(netns)
        _run("ip", "-n", self.hub, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", netns)
        _run("ip", "-n", self.hub, "link", "set", port, "master", "br0")
        _run("ip", "-n", self.hub, "link", "set", port, "up")
        _run("ip", "-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
        _run("ip", "-n", netns, "link", "set", "eth0", "up")
        host = Host(self, name, netns, address, port)
        self.hosts[name] = host
        return host

    def apply_rules(self) -> None:
        """Rewrite the switch's fault table from every host's settings, at once.

        The faults live on the switch (a bridge table in the hub), never on a host: a frame a
        host's own netfilter dropped on the way out would fail its ``sendto`` with EPERM, which
        no lossy cable does."""
        lines = [f"table bridge {FAULT_TABLE}", f"delete table bridge {FAULT_TABLE}", f"table bridge {FAULT_TABLE} {{",
                 "  chain from_port { type filter hook prerouting priority 0; policy accept;"]
        for host in self.hosts.values():
            if host.udp_blocked:
                others = ", ".join(host.udp_blocked)
                lines.append(f"    ip saddr {host.address} ip daddr {{ {others} }} meta l4proto udp drop")
                lines.append(f"    ip saddr {{ {others} }} ip daddr {host.address} meta l4proto udp drop")
            if host.loss:
                lines.append(f'    iifname "{host.port}" numgen random mod 100 < {host.loss} drop')
        lines += ["  }", "  chain to_port { type filter hook postrouting priority 0; policy accept;"]
        for host in self.hosts.values():
            if host.loss:
                lines.append(f'    oifname "{host.port}" numgen random mod 100 < {host.loss} drop')
        lines += ["  }", "}"]
        try:
            done = subprocess.run([*self.exec_prefix(), "nft", "-f", "-"], check=False, input="\n".join(lines) + "\n",
                                  capture_output=True, text=True, timeout=15)
        except FileNotFoundError as exc:
            raise LabError("nft is missing (scripts/setup installs nftables)") from exc
        if done.returncode != 0:
            raise LabError(f"nft on the lab's switch: {done.stderr.strip()}")

    def close(self) -> None:
        """Delete every namespace of the lab (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for name in reversed(self._namespaces):
            _run("ip", "netns", "del", name, check=False)
        self._namespaces.clear()

    @staticmethod
    def sweep() -> list[str]:
        """Delete the namespaces of labs whose process is gone (a run that was killed before
        it could close its lab); a lab of a running process is never touched."""
        out = _run("ip", "netns", "list", check=False).stdout
        gone = []
        for line in out.splitlines():
            name = line.split()[0] if line.strip() else ""
            pid = name[len(PREFIX):].partition("x")[0]
            if name.startswith(PREFIX) and pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                _run("ip", "netns", "del", name, check=False)
                gone.append(name)
        return gone

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
