"""Per-connection outbound queue, flushed once per event-loop turn with one socket write.

Under a join storm one connection receives many frames in the same loop iteration (offers,
answers, a burst of candidates from several peers). Writing each through the socket costs a
system call per frame; queueing them and flushing the queue once per turn costs one.

Frames still go through aiohttp's WebSocket writer (framing, permessage-deflate, close
handling, flow control); only the writer's calls to ``transport.write`` are gathered while
a flush runs and handed to the real transport in one ``write``
(:func:`appliance.signaling.aiohttp_hooks.gathering_writes`). If the peer stops reading,
the writer's flow control blocks the flush and the queue grows; past a bound in frames
*or* bytes (whichever comes first) the connection is evicted as a slow consumer, and its
queue is dropped at once rather than held until the socket is finally torn down.

The outbox holds no strong reference back to its connection (the overflow callback is
kept as a weak method), and once closed it lets go of the WebSocket and its flushing task,
so an evicted connection is freed by reference counting alone: the server collects the
old generation rarely (see ``server.tune_gc``), and a cycle through a queue of 64 KiB
frames would hold them until it does.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import weakref
from collections.abc import Callable

from aiohttp import WSMsgType, web

from appliance import protocol
from appliance.signaling.aiohttp_hooks import gathering_writes

log = logging.getLogger(__name__)

#: Frames one connection may have waiting before it is evicted as a slow consumer.
MAX_FRAMES = 4096
#: Bytes one connection may have waiting: sixteen frames of the largest size, ample for a
#: join storm in a full room (an offer or answer from every peer, and their candidates).
MAX_BYTES = 16 * protocol.MAX_FRAME_BYTES


class Outbox:
    """Queue of text frames for one WebSocket; :meth:`put` never blocks.

    ``on_overflow`` is called once when the queue passes ``max_frames`` or ``max_bytes``;
    a bound method is held weakly (so the connection owning this outbox is not kept
    alive by it), any other callable strongly.
    """

    def __init__(
        self,
        ws: web.WebSocketResponse,
        *,
        max_frames: int = MAX_FRAMES,
        max_bytes: int = MAX_BYTES,
        on_overflow: Callable[[], object] | None = None,
    ) -> None:
        self._queue: collections.deque[bytes] = collections.deque()
        self._bytes = 0
        self._wake = asyncio.Event()
        self._max = max_frames
        self._max_bytes = max_bytes
        self._on_overflow: Callable[[], Callable[[], object] | None] | None = None
        if on_overflow is not None:
            if hasattr(on_overflow, "__self__") and hasattr(on_overflow, "__func__"):
                self._on_overflow = weakref.WeakMethod(on_overflow)
            else:
                self._on_overflow = lambda: on_overflow
        self._ping = False
        self._closed = False
        self._task: asyncio.Task[None] | None = asyncio.get_running_loop().create_task(self._run(ws))

    @property
    def queued_bytes(self) -> int:
        """Bytes of frames waiting to be handed to the WebSocket writer."""
        return self._bytes

    @property
    def queued_frames(self) -> int:
        return len(self._queue)

    def put(self, payload: bytes) -> None:
        if self._closed:
            return
        self._queue.append(payload)
        self._bytes += len(payload)
        if len(self._queue) > self._max or self._bytes > self._max_bytes:
            log.info("slow consumer: %d frames, %d bytes waiting", len(self._queue), self._bytes)
            self._drop()
            callback = self._on_overflow() if self._on_overflow is not None else None
            self._on_overflow = None
            if callback is not None:
                callback()
            return
        self._wake.set()

    def ping(self) -> None:
        """Send a WebSocket ping with the next flush."""
        self._ping = True
        self._wake.set()

    def _drop(self) -> None:
        """Accept nothing more and forget what is waiting."""
        self._closed = True
        self._queue.clear()
        self._bytes = 0
        self._wake.set()

    async def _run(self, ws: web.WebSocketResponse) -> None:
        queue = self._queue
        while True:
            await self._wake.wait()
            self._wake.clear()
            if ws.closed or not ws.prepared:  # prepared: aiohttp has given it a writer
                return
            with gathering_writes(ws):
                try:
                    while queue:
                        payload = queue.popleft()
                        self._bytes -= len(payload)
                        await ws.send_frame(payload, WSMsgType.TEXT)
                        del payload
                    if self._ping:
                        self._ping = False
                        await ws.ping()
                except (ConnectionError, RuntimeError):
                    self._closed = True
                    return
            if self._closed:
                return

    async def close(self, timeout: float = 1.0) -> bool:
        """Send what is already queued (for at most ``timeout`` s), accept nothing more and
        stop the flushing task; idempotent. False when the peer did not take the queue in
        time: what was left is dropped, and the caller should abort the transport (a
        close frame behind those bytes would never be read either)."""
        self._closed = True
        self._wake.set()
        task, self._task = self._task, None
        flushed = True
        if task is not None and task is not asyncio.current_task():
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.shield(task)
            except TimeoutError:
                flushed = False
                task.cancel()
        self._drop()
        self._on_overflow = None
        return flushed
