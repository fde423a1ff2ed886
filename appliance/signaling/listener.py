"""The server's listening sockets and accept loop: a cap per client address, quiet at the fd limit.

asyncio's own accept loop (``loop.create_server``) takes every connection it is offered,
and when the process runs out of descriptors it logs a traceback for every attempt, many
thousand a second. This one binds the sockets itself and accepts in a reader callback:

* a client address over ``[http] max_connections_per_address`` open sockets has its new
  socket closed at once (counted, logged at most once per interval), so one host on the
  LAN cannot hold the descriptors every other client needs;
* when ``accept()`` fails for want of descriptors or memory, the listener pauses a moment
  (the client waits in the backlog) and logs one line per interval with the count of
  failures since the last;
* the TLS handshake has the request-head deadline too.

Each accepted socket is handed to aiohttp with ``loop.connect_accepted_socket`` and its
ordinary protocol; a thin protocol in front counts the socket until it closes.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

from appliance.errors import WallmeshError

log = logging.getLogger(__name__)

#: accept() failures that mean "no resources right now": wait, then try again.
EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class ListenError(WallmeshError, OSError):
    """The server cannot listen where it was told (port in use, address not on this host)."""


class QuietLog:
    """A warning logged at most once per ``interval_s``, with how many were held back meanwhile."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0) -> None:
        self.log = logger
        self.interval_s = interval_s
        self.held = 0
        self._last = float("-inf")

    def warning(self, now: float, msg: str, *args: object) -> None:
        if now - self._last < self.interval_s:
            self.held += 1
            return
        held, self.held, self._last = self.held, 0, now
        if held:
            self.log.warning("%s (and %d more like it in the last %.0f s)", msg % args, held, self.interval_s)
        else:
            self.log.warning(msg, *args)


def bind(host: str, port: int, backlog: int) -> list[socket.socket]:
    """Listening sockets for ``host`` (every address it resolves to) on ``port``.

    One-line :class:`ListenError` when the port is taken or the address is not this host's.
    """
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {host!r}: {exc.strerror}; check host in the config or --host") from None
    socks: list[socket.socket] = []
    seen = set()
    try:
        for family, kind, proto, _, resolved in infos:
            if (family, resolved) in seen:
                continue
            seen.add((family, resolved))
            addr: tuple[Any, ...] = resolved
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(socks) > 1:  # every address on the port the first one got
                addr = (addr[0], socks[0].getsockname()[1], *addr[2:])
            try:
                sock.bind(addr)
            except OSError as exc:
                raise ListenError(_bind_problem(exc, str(addr[0]), int(addr[1]))) from None
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def _bind_problem(exc: OSError, host: str, port: int) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is in use (another wallmesh signal, or another program); stop it or choose another --port"
    if exc.errno == errno.EACCES:
        return f"not allowed to listen on port {port} on {host} (ports below 1024 need CAP_NET_BIND_SERVICE); choose another --port"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine; check host in the config or --host"
    return f"cannot listen on {host} port {port}: {exc.strerror}"


class _Counted(asyncio.Protocol):
    """In front of aiohttp's protocol: forwards everything, and gives the slot back on close."""

    __slots__ = ("inner", "release")

    def __init__(self, inner: asyncio.Protocol, release: Callable[[], None]) -> None:
        self.inner = inner
        self.release = release

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self.inner.connection_lost(exc)
        finally:
            self.release()


class Listener:
    """Accepts connections on bound sockets, within the caps; see the module."""

    def __init__(
        self, socks: list[socket.socket], *, handshake_timeout_s: float = 10.0,
        max_per_address: int = 0, unlimited: frozenset[str] = frozenset(),
        on_refused: Callable[[], None] = lambda: None, on_open: Callable[[int], None] = lambda n: None,
        retry_s: float = 0.5, log_interval_s: float = 10.0,
    ) -> None:
        self.socks = socks
        self.factory: Callable[[], Any] = lambda: None
        self.ssl: ssl.SSLContext | None = None
        self.handshake_timeout_s = handshake_timeout_s
        self.max_per_address = max_per_address
        self.unlimited = unlimited
        self.on_refused = on_refused
        self.on_open = on_open  # +1 / -1 as sockets open and close
        self.retry_s = retry_s
        self.per_address: collections.Counter[str] = collections.Counter()
        self.open = 0
        self._accept_errors = QuietLog(log, log_interval_s)
        self._refusals = QuietLog(log, log_interval_s)
        self._starting: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def port(self) -> int:
        return int(self.socks[0].getsockname()[1])

    def start(self, protocol_factory: Callable[[], Any], ssl_context: ssl.SSLContext | None = None) -> None:
        """Start accepting for ``protocol_factory`` (aiohttp's ``runner.server``)."""
        self.factory, self.ssl = protocol_factory, ssl_context
        self._loop = asyncio.get_running_loop()
        for sock in self.socks:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def close(self) -> None:
        """Stop accepting and close the listening sockets; idempotent. Open connections are the
        aiohttp server's to close; handshakes still running are cut off."""
        if self._closed:
            return
        self._closed = True
        for sock in self.socks:
            if self._loop is not None:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        for task in self._starting:
            task.cancel()

    def _accept(self, lsock: socket.socket) -> None:
        loop = self._loop
        assert loop is not None
        for _ in range(128):  # then let the loop breathe; the reader fires again
            try:
                sock, addr = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                self._accept_errors.warning(loop.time(), "cannot accept connections: %s (open sockets: %d)",
                                            exc.strerror, self.open)
                if exc.errno in EXHAUSTED:  # pause; the waiting clients stay in the backlog
                    loop.remove_reader(lsock.fileno())
                    loop.call_later(self.retry_s, self._resume, lsock)
                return
            ip = addr[0]
            if self.max_per_address and ip not in self.unlimited and self.per_address[ip] >= self.max_per_address:
                sock.close()
                self.on_refused()
                self._refusals.warning(loop.time(), "refused a connection from %s: it has %d open (the cap)", ip, self.max_per_address)
                continue
            sock.setblocking(False)
            self.per_address[ip] += 1
            self.open += 1
            self.on_open(1)
            task = loop.create_task(self._connect(sock, ip))
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)

    def _resume(self, lsock: socket.socket) -> None:
        if not self._closed and self._loop is not None:
            self._loop.add_reader(lsock.fileno(), self._accept, lsock)

    async def _connect(self, sock: socket.socket, ip: str) -> None:
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            self.open -= 1
            self.on_open(-1)
            left = self.per_address[ip] - 1
            if left:
                self.per_address[ip] = left
            else:
                del self.per_address[ip]

        loop = self._loop
        assert loop is not None
        try:
            await loop.connect_accepted_socket(
                lambda: _Counted(self.factory(), release), sock, ssl=self.ssl,
                ssl_handshake_timeout=self.handshake_timeout_s if self.ssl else None,
            )
        except (OSError, ssl.SSLError, TimeoutError, asyncio.CancelledError) as exc:
            # a failed or timed-out TLS handshake, or a client gone before it started
            log.debug("connection from %s ended before HTTP: %r", ip, exc)
            sock.close()
            release()
