"""A throw-away network namespace that holds only ``lo``, for keeping WebRTC off real interfaces.

Chromium gathers host candidates on every interface it sees (``--allow-loopback-in-peer-connection``
only adds ``lo`` to the list) and happily pairs its LAN address with a peer's 127.0.0.1, so on
the host some traffic would carry the machine's real address. Inside a namespace whose only
interface is ``lo`` there is nothing else to use.

The signaling server stays in the test process on the host's loopback; a small TCP relay makes
it reachable on the *same* 127.0.0.1 port inside the namespace, and the reverse relay lets the
test reach Chromium's DevTools port. Sockets are created inside the namespace by a short-lived
thread that enters it with setns(2) (a network namespace is per thread) and is then discarded;
the sockets keep their namespace and are used from the event loop like any other.
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
from typing import Any

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class NetnsUnavailable(RuntimeError):
    """Network namespaces cannot be created here (not root, or no ``ip`` command)."""


def _run_inside(path: str, fn: Callable[[], Any]) -> Any:
    """Runs ``fn`` on a fresh thread that has entered the namespace at ``path``."""
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({path}): {os.strerror(err)}")
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller below
            box["error"] = exc

    # The thread ends right after, so it never needs to find its way back.
    thread = threading.Thread(target=body, name="netns-enter", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:  # noqa: BLE001 - the other side is already gone
            pass


class Netns:
    """``ip netns add`` on create, ``ip netns del`` on close; relays between it and the host."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.path = f"/var/run/netns/{name}"
        self._servers: list[asyncio.base_events.Server] = []
        self._tasks: set[asyncio.Task] = set()
        self._closed = False

    @classmethod
    async def create(cls) -> "Netns":
        if os.geteuid() != 0:
            raise NetnsUnavailable("creating a network namespace needs root")
        name = f"wm-e2e-{os.getpid()}-{secrets.token_hex(3)}"
        for cmd in (["ip", "netns", "add", name], ["ip", "-n", name, "link", "set", "lo", "up"]):
            try:
                proc = await asyncio.create_subprocess_exec(
                    *cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            except FileNotFoundError as exc:
                raise NetnsUnavailable("the 'ip' command (iproute2) is missing") from exc
            _, err = await proc.communicate()
            if proc.returncode != 0:
                subprocess.run(["ip", "netns", "del", name], capture_output=True)
                raise NetnsUnavailable(f"{' '.join(cmd)}: {err.decode().strip()}")
        return cls(name)

    def exec_prefix(self) -> list[str]:
        """Prefix for a command line that should run inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def _socket_inside(self) -> socket.socket:
        return _run_inside(self.path, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))

    async def open_inside(self, port: int, host: str = "127.0.0.1"):
        """An (reader, writer) stream connected to ``host:port`` as seen inside the namespace."""
        sock = await asyncio.to_thread(self._socket_inside)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (host, port))
        except OSError:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock)

    async def expose_host_port(self, port: int) -> None:
        """Makes the host's 127.0.0.1:``port`` answer on 127.0.0.1:``port`` inside the namespace."""

        def listen() -> socket.socket:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen(128)
            return s

        sock = await asyncio.to_thread(_run_inside, self.path, listen)
        sock.setblocking(False)

        async def relay(reader, writer):
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                writer.close()
                return
            await self._relay(reader, writer, up_reader, up_writer)

        self._servers.append(await asyncio.start_server(relay, sock=sock))

    async def reach_inside_port(self, port: int) -> int:
        """A host 127.0.0.1 port that relays to 127.0.0.1:``port`` inside the namespace."""

        async def relay(reader, writer):
            try:
                in_reader, in_writer = await self.open_inside(port)
            except OSError:
                writer.close()
                return
            await self._relay(reader, writer, in_reader, in_writer)

        server = await asyncio.start_server(relay, "127.0.0.1", 0)
        self._servers.append(server)
        return server.sockets[0].getsockname()[1]

    async def _relay(self, r1, w1, r2, w2) -> None:
        tasks = [asyncio.create_task(_pipe(r1, w2)), asyncio.create_task(_pipe(r2, w1))]
        self._tasks.update(tasks)
        try:
            await asyncio.gather(*tasks)
        finally:
            self._tasks.difference_update(tasks)

    async def http_get_inside(self, port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        """A plain HTTP/1.0 GET to 127.0.0.1:``port`` inside the namespace: (status, body)."""
        reader, writer = await self.open_inside(port)
        try:
            writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            await writer.drain()
            raw = await asyncio.wait_for(reader.read(), timeout)
        finally:
            writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
        return status, body

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "del", self.name, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await proc.wait()
