"""Everything wallmesh's signaling server does inside aiohttp: one socket write per flush.

A WebSocket connection under a join storm receives many frames in the same loop turn
(offers, answers, bursts of candidates); :class:`~appliance.signaling.outbox.Outbox`
sends them together. Frames still go through aiohttp's own WebSocket writer (framing,
permessage-deflate, close handling, flow control); only the writer's calls to
``transport.write`` are gathered while :func:`gathering_writes` is in force, and handed
to the real transport in one ``write``. aiohttp has no public way to do that: its
writer (the response's private ``_writer``) holds the transport as a plain attribute.

This is the only wallmesh module allowed to touch aiohttp's underscore names
(``tests/test_internals.py`` enforces it). :func:`check`, run when the server starts,
refuses an aiohttp outside the range wallmesh requires; if a writer has no transport to
swap at run time, the hook is reported off once and every frame is written on its own.
"""

from __future__ import annotations

from typing import Any, Self

import aiohttp
from aiohttp import web
from aiohttp.http_websocket import WebSocketWriter

from appliance.compat import hook_off, installed_version, require_tested

#: The aiohttp release this hook was last verified against; pyproject.toml allows a range.
TESTED = "3.14.5"
OFF = "each WebSocket frame is its own socket write"


def writer_hook_ok() -> bool:
    """True when aiohttp's WebSocket response has a ``_writer`` whose transport is an attribute."""
    init = getattr(WebSocketWriter, "__init__", None)
    return hasattr(web.WebSocketResponse, "_writer") and init is not None and "transport" in init.__code__.co_names


def check() -> list[str]:
    """Refuse an aiohttp outside wallmesh's range; return (and log once) the hooks it does not allow."""
    require_tested("aiohttp", installed_version("aiohttp", getattr(aiohttp, "__version__", None)), tested=TESTED)
    if writer_hook_ok():
        return []
    hook_off("aiohttp", "gathered WebSocket writes", OFF, "WebSocketResponse has no _writer with a transport")
    return ["gathered WebSocket writes"]


class GatheringTransport:
    """Stands in for the real transport during a flush; collects writes, forwards the rest."""

    __slots__ = ("chunks", "real", "size")

    LIMIT = 256 * 1024  # hand over at least this often so the writer's flow control sees it

    def __init__(self, real: Any) -> None:
        self.real = real
        self.chunks: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> None:
        self.chunks.append(bytes(data))
        self.size += len(data)
        if self.size >= self.LIMIT:
            self.release()

    def is_closing(self) -> bool:
        return self.real.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def release(self) -> None:
        chunks, self.chunks, self.size = self.chunks, [], 0
        if chunks and not self.real.is_closing():
            self.real.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))


class GatheredWrites:
    """``with gathering_writes(ws):`` — the writes of ``ws``'s frames in the block go out as one.

    A plain context-manager class (no generator): it runs once per flush of every connection.
    """

    __slots__ = ("gather", "writer", "ws")

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.writer: Any = None
        self.gather: GatheringTransport | None = None

    def __enter__(self) -> Self:
        writer = getattr(self.ws, "_writer", None)  # aiohttp's WebSocketWriter (set by prepare())
        if writer is None:
            return self
        transport = getattr(writer, "transport", None)
        if transport is None:
            hook_off("aiohttp", "gathered WebSocket writes", OFF)
            return self
        self.writer, self.gather = writer, GatheringTransport(transport)
        writer.transport = self.gather
        return self

    def __exit__(self, *exc: object) -> None:
        gather, writer, self.gather, self.writer = self.gather, self.writer, None, None
        if gather is None:
            return
        if writer.transport is gather:
            writer.transport = gather.real
        gather.release()


def gathering_writes(ws: web.WebSocketResponse) -> GatheredWrites:
    """A block in which ``ws``'s frame writes are gathered into one socket write (see the module)."""
    return GatheredWrites(ws)

