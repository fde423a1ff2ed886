"""A lean WebSocket client (RFC 6455) for the signaling load generator.

Two thousand clients on a two-core machine must cost the generator far less CPU than the
server it measures, or the benchmark measures itself. aiohttp's client spends most of its
time per message in futures, queues and a reader task per socket; this protocol parses the
server's frames straight in ``data_received`` and hands each text payload to a callback,
and it writes several frames with one ``transport.write``.

Deliberate shortcuts, acceptable for a load generator and nowhere else: client frames use
the all-zero masking key (servers unmask it like any other key, the XOR is the identity),
no permessage-deflate is offered, and outgoing data is buffered without back-pressure
(every phase of the benchmark sends a bounded number of frames).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
from collections.abc import Callable
from urllib.parse import urlsplit

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_MESSAGE = 1 << 20


class HandshakeError(ConnectionError):
    """The server did not upgrade the connection to a WebSocket."""


def frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """One final, masked (with the zero key) client frame."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + b"\x00\x00\x00\x00" + payload


class WsClient(asyncio.Protocol):
    """One client connection; ``on_message(payload)`` is called for every text message."""

    def __init__(self, on_message: Callable[[bytes], None], on_close: Callable[[int | None], None]) -> None:
        self.on_message = on_message
        self.on_close = on_close
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.close_code: int | None = None
        self._buf = bytearray()
        self._parts: list[bytes] = []
        self._handshake: asyncio.Future[None] | None = None
        self._expect_accept = b""

    @classmethod
    async def connect(
        cls, url: str, on_message: Callable[[bytes], None], on_close: Callable[[int | None], None], timeout: float = 30.0
    ) -> WsClient:
        """Open ``url`` (``ws://`` or ``http://`` host:port/path?query) and upgrade it."""
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "http"):
            raise ValueError(f"the load generator speaks plain ws:// only, not {parts.scheme}://")
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        loop = asyncio.get_running_loop()
        _, proto = await asyncio.wait_for(loop.create_connection(lambda: cls(on_message, on_close), host, port), timeout)
        try:
            await asyncio.wait_for(proto.upgrade(host, port, target), timeout)
        except BaseException:
            proto.abort()
            raise
        return proto

    async def upgrade(self, host: str, port: int, target: str) -> None:
        key = base64.b64encode(os.urandom(16))
        self._expect_accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        self._handshake = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(
            f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        await self._handshake

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        was_closed, self.closed = self.closed, True
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(HandshakeError(f"connection lost during the upgrade: {exc}"))
        elif not was_closed:
            self.on_close(self.close_code)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._handshake is not None and not self._handshake.done():
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buf[:end]).decode("latin-1")
            del self._buf[: end + 4]
            status = head.split("\r\n", 1)[0]
            if " 101 " not in status + " " or self._expect_accept.decode() not in head:
                self._handshake.set_exception(HandshakeError(f"no upgrade: {status!r}"))
                return
            self._handshake.set_result(None)
        self._parse()

    def _parse(self) -> None:
        buf = self._buf
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n = b1 & 0x7F
            head = 2
            if n == 126:
                if size - pos < 4:
                    break
                n = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif n == 127:
                if size - pos < 10:
                    break
                n = struct.unpack_from("!Q", buf, pos + 2)[0]
                head = 10
            masked = b1 & 0x80
            if masked:
                head += 4
            if size - pos < head + n:
                break
            payload = bytes(buf[pos + head : pos + head + n])
            if masked:  # servers must not mask, but unmask if one does
                key = buf[pos + head - 4 : pos + head]
                payload = bytes(c ^ key[i % 4] for i, c in enumerate(payload))
            pos += head + n
            self._frame(b0 & 0x80, b0 & 0x0F, payload)
            if self.closed:
                break
        del buf[:pos]

    def _frame(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode in (OP_TEXT, OP_BINARY, OP_CONT):
            if not fin or self._parts:
                self._parts.append(payload)
                if not fin:
                    return
                payload, self._parts = b"".join(self._parts), []
            self.on_message(payload)
        elif opcode == OP_PING:
            self.send_raw(frame(payload, OP_PONG))
        elif opcode == OP_CLOSE:
            self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            self.close(self.close_code or 1000)

    # --- sending ------------------------------------------------------------------------

    def send(self, payload: bytes) -> None:
        """Send one text message."""
        self.send_raw(frame(payload))

    def send_many(self, payloads: list[bytes]) -> None:
        """Send several text messages with one write (one system call)."""
        self.send_raw(b"".join(frame(p) for p in payloads))

    def send_raw(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self, code: int = 1000) -> None:
        """Send a close frame and close the connection. Idempotent."""
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(frame(struct.pack("!H", code), OP_CLOSE))
        was_closed, self.closed = self.closed, True
        self.transport.close()
        if not was_closed:
            self.on_close(self.close_code)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
