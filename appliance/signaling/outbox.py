"""Per-connection outbound queue, flushed once per event-loop turn with one socket write.

Under a join storm one connection receives many frames in the same loop iteration (offers,
answers, a burst of candidates from several peers). Writing each through the socket costs a
system call per frame; queueing them and flushing the queue once per turn costs one.

Frames still go through aiohttp's WebSocket writer (framing, permessage-deflate, close
handling, flow control); only the writer's calls to ``transport.write`` are gathered while
a flush runs and handed to the real transport in one ``write``. If the peer stops reading,
the writer's flow control blocks the flush, the queue grows, and past a bound the
connection is closed as a slow consumer instead of buffering without limit.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

from aiohttp import WSMsgType, web

log = logging.getLogger(__name__)


class _GatheringTransport:
    """Stands in for the real transport during a flush; collects writes, forwards the rest."""

    __slots__ = ("real", "chunks", "size")

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


class Outbox:
    """Queue of text frames for one WebSocket; :meth:`put` never blocks."""

    def __init__(self, ws: web.WebSocketResponse, *, max_frames: int = 4096, on_overflow: Any = None) -> None:
        self._ws = ws
        self._queue: collections.deque[bytes] = collections.deque()
        self._wake = asyncio.Event()
        self._max = max_frames
        self._on_overflow = on_overflow
        self._ping = False
        self._closed = False
        self._task = asyncio.get_running_loop().create_task(self._run())

    def put(self, payload: bytes) -> None:
        if self._closed:
            return
        self._queue.append(payload)
        if len(self._queue) > self._max:
            self._closed = True
            self._queue.clear()
            if self._on_overflow is not None:
                self._on_overflow()
            return
        self._wake.set()

    def ping(self) -> None:
        """Send a WebSocket ping with the next flush."""
        self._ping = True
        self._wake.set()

    async def _run(self) -> None:
        ws = self._ws
        queue = self._queue
        while True:
            await self._wake.wait()
            self._wake.clear()
            if ws.closed:
                return
            writer = ws._writer  # aiohttp's WebSocketWriter (set by prepare())
            if writer is None:
                return
            gather = _GatheringTransport(writer.transport)
            writer.transport = gather
            try:
                while queue:
                    await ws.send_frame(queue.popleft(), WSMsgType.TEXT)
                if self._ping:
                    self._ping = False
                    await ws.ping()
            except (ConnectionError, RuntimeError):
                self._closed = True
                return
            finally:
                if writer.transport is gather:
                    writer.transport = gather.real
                gather.release()
            if self._closed:
                return

    async def close(self) -> None:
        """Send what is already queued, accept nothing more, stop the flushing task."""
        self._closed = True
        self._wake.set()
        task = self._task
        if task is not asyncio.current_task():
            try:
                async with asyncio.timeout(1.0):
                    await asyncio.shield(task)
            except TimeoutError:
                task.cancel()
