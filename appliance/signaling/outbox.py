"""Per-connection outbound queue, flushed once per event-loop turn with one socket write.

Under a join storm one connection receives many frames in the same loop iteration (offers,
answers, a burst of candidates from several peers). Writing each through the socket costs a
system call per frame; queueing them and flushing the queue once per turn costs one.

Frames still go through aiohttp's WebSocket writer (framing, permessage-deflate, close
handling, flow control); only the writer's calls to ``transport.write`` are gathered while
a flush runs and handed to the real transport in one ``write``
(:func:`appliance.signaling.aiohttp_hooks.gathering_writes`). If the peer stops reading,
the writer's flow control blocks the flush, the queue grows, and past a bound the
connection is closed as a slow consumer instead of buffering without limit.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

from aiohttp import WSMsgType, web

from appliance.signaling.aiohttp_hooks import gathering_writes

log = logging.getLogger(__name__)


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
            if ws.closed or not ws.prepared:  # prepared: aiohttp has given it a writer
                return
            with gathering_writes(ws):
                try:
                    while queue:
                        await ws.send_frame(queue.popleft(), WSMsgType.TEXT)
                    if self._ping:
                        self._ping = False
                        await ws.ping()
                except (ConnectionError, RuntimeError):
                    self._closed = True
                    return
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
