"""The ``/ws`` endpoint: one coroutine per connection speaking wire protocol v1.

A connection must say ``hello`` with a valid token within the hello timeout, else it is
closed with 4401. After that every text frame is parsed by :mod:`appliance.protocol`;
a bad one gets a typed ``error`` and is never relayed. Sustained flooding (4429) or
sustained garbage (4400) closes the connection. Liveness is judged by *any* frame
received (including pongs), so a loop delayed by a storm does not drop healthy clients.
"""

from __future__ import annotations

import asyncio
import logging
import random

from aiohttp import WSCloseCode, WSMsgType, web

from appliance import protocol
from appliance.errors import AuthError, ProtocolError
from appliance.signaling.outbox import Outbox
from appliance.signaling.rooms import Participant
from appliance.signaling.state import SERVICES, Services
from appliance.signaling.turn import ice_servers

log = logging.getLogger(__name__)

# aiohttp reads (and inflates) frames up to this size, so that a frame just over the
# protocol limit can be answered with ``too_large``; anything larger, compressed or not,
# is refused by aiohttp itself with close code 1009 before it is held in memory.
READ_LIMIT = 4 * protocol.MAX_FRAME_BYTES
# How long a closing client may take to answer our close frame before its socket is aborted.
CLOSE_WAIT_S = 5.0


class Bucket:
    """Token bucket: ``rate`` per second, up to ``burst`` at once."""

    __slots__ = ("burst", "level", "rate", "stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.level, self.stamp = rate, burst, burst, now

    def take(self, now: float) -> bool:
        level = self.level + (now - self.stamp) * self.rate
        self.stamp = now
        level = min(level, self.burst)
        if level < 1.0:
            self.level = level
            return False
        self.level = level - 1.0
        return True


class Connection:
    """The server side of one WebSocket."""

    def __init__(self, services: Services, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.s = services
        self.ws = ws
        self.remote = request.remote or "?"
        self.transport = request.transport
        self.loop = asyncio.get_running_loop()
        now = self.loop.time()
        rate = services.config.rate
        self.flood = Bucket(rate.frames_per_s, rate.burst, now)
        self.abuse = Bucket(max(1.0, rate.strikes / 10), rate.strikes, now)
        self.outbox = Outbox(ws, on_overflow=self._slow_consumer)  # held weakly: no cycle through the queue
        self.participant: Participant | None = None
        self.last_rx = now
        self.pinged_at = now
        # Spread pings over time so that clients which connected together are not all
        # pinged in the same loop turn (never earlier than idle_s: a client keeping itself
        # alive at that period is never pinged at all).
        self.ping_after = services.config.heartbeat.idle_s * random.uniform(1.0, 1.1)
        self._closing = False
        self._close_task: asyncio.Task[None] | None = None
        # The task reading this socket, and whether close() interrupted it. aiohttp's
        # close() run beside a pending receive() drops the TCP connection right after the
        # close frame, and a client that is still answering a ping then sees 1006 instead
        # of our close code; so the reader is stopped first, then the handshake is done.
        self._reader: asyncio.Task[None] | None = None
        self._interrupted = False
        self._reader_done = asyncio.Event()

    # --- output ---------------------------------------------------------------

    def reply(self, msg: protocol.ServerMessage) -> None:
        """Queue one server frame for this client."""
        self.outbox.put(protocol.encode_server(msg))

    def error(self, code: str, message: str, ref: str | None = None) -> None:
        self.s.metrics.errors.labels(code).inc()
        self.reply(protocol.error(code, message, ref))

    def _slow_consumer(self) -> None:
        self.close(WSCloseCode.TRY_AGAIN_LATER, "slow consumer")

    @property
    def closing(self) -> asyncio.Task[None] | None:
        """The task closing this connection, once :meth:`close` was called."""
        return self._close_task

    def close(self, code: int, reason: str) -> None:
        """Close from anywhere (hub, revocation poller, heartbeat); never blocks the caller."""
        if self._closing:
            return
        self._closing = True
        self.s.metrics.closes.labels(reason).inc()
        if self.participant is not None:
            self.s.hub.remove(self.participant, reason)
        reader = self._reader
        if reader is not None and reader is not asyncio.current_task() and not self._reader_done.is_set():
            self._interrupted = True
            reader.cancel()  # serve() takes this cancel back (see there); the reader itself just returns
        self._close_task = self.loop.create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        if not await self.outbox.close():  # what was queued (e.g. the error saying why) goes first
            # the client is not reading: a close frame would queue behind what it never
            # took, so drop the connection now instead of holding its buffers for the handshake
            log.info("%s: not reading, dropping the connection (%s)", self._who(), reason)
            self._abort()
        try:
            async with asyncio.timeout(CLOSE_WAIT_S):
                await self._reader_done.wait()
        except TimeoutError:
            pass
        try:
            async with asyncio.timeout(CLOSE_WAIT_S + 1):
                await self.ws.close(code=code, message=reason.encode()[:120])
        except (TimeoutError, ConnectionError):
            pass
        # A vanished client never answers the close handshake, and one that stopped reading
        # never takes the bytes aiohttp's own close() left in the transport's buffer (a
        # graceful close waits for them forever). After a completed handshake the buffer
        # is empty and the transport already closed: then this is a no-op.
        self._abort()

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _who(self) -> str:
        return self.participant.peer_id if self.participant is not None else self.remote

    # --- input ----------------------------------------------------------------

    async def serve(self) -> None:
        s = self.s
        s.connections.add(self)
        task = self._reader = asyncio.current_task()
        try:
            if await self._hello():
                await self._loop()
        except asyncio.CancelledError:
            # close() from another task stops the reader with one cancel; anything else
            # (the server shutting down) is a real cancellation and goes on up
            if not self._interrupted or task is None or task.uncancel() > 0:
                raise
        finally:
            self._reader_done.set()
            s.connections.discard(self)
            if self.participant is not None:
                s.hub.remove(self.participant, "disconnected")
            if self._close_task is not None:
                await self._close_task  # the close code chosen by close() must win
            await self.outbox.close()
            # the participant holds this connection's close(): break that cycle (and the
            # one through the reader task) so the connection is freed as soon as it ends
            self.participant = None
            self._reader = None

    async def _hello(self) -> bool:
        deadline = self.loop.time() + self.s.config.heartbeat.hello_timeout_s
        while True:
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                self.error("unauthorized", "no hello in time")
                self.close(protocol.CLOSE_UNAUTHORIZED, "hello timeout")
                return False
            try:
                msg = await self.ws.receive(timeout=remaining)
            except TimeoutError:
                continue
            if msg.type == WSMsgType.PING:
                await self.ws.pong(msg.data)
                continue
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                return False
            if not self._admit():
                if self._closing:
                    return False
                continue
            try:
                hello = protocol.parse_client(msg.data)
            except ProtocolError as exc:
                self.error(exc.code, exc.message, exc.ref)
                continue
            if not isinstance(hello, protocol.Hello):
                self.error("unauthorized", "send hello first", type(hello).__name__.lower())
                continue
            return self._welcome(hello)

    def _welcome(self, hello: protocol.Hello) -> bool:
        s = self.s
        claims = None
        for kind in ("user", "device"):
            try:
                claims = s.tokens.verify(hello.token, kind)
                break
            except AuthError:
                continue
        if claims is None or s.refuses(claims):
            self.error("unauthorized", "token refused", "hello")
            self.close(protocol.CLOSE_UNAUTHORIZED, "unauthorized")
            return False
        # hello's name is already clean (protocol.parse_client); a token's name came from an
        # enrollment or an account and is cleaned the same way before anyone sees it
        name = hello.name or protocol.clean_name(claims.name) or protocol.clean_name(claims.sub) or claims.kind
        who = self.participant = Participant(claims, name, self.outbox.put, self.close)
        s.hub.add(who)
        self.reply(protocol.welcome(who.peer_id, ice_servers(s.config.ice, who.peer_id), s.config.max_room_size))
        log.info("peer %s connected (%s %s from %s)", who.peer_id, claims.kind, claims.sub, self.remote)
        return True

    def _admit(self) -> bool:
        """Count a frame against the flood bucket; False (and maybe a close) when over."""
        now = self.loop.time()
        self.last_rx = now
        if self.flood.take(now):
            return True
        self.error("rate_limited", "slow down")
        if not self.abuse.take(now):
            self.close(protocol.CLOSE_RATE_LIMITED, "rate limited")
        return False

    async def _loop(self) -> None:
        ws, hub, peer, metrics = self.ws, self.s.hub, self.participant, self.s.metrics
        assert peer is not None
        while True:
            msg = await ws.receive()
            kind = msg.type
            if kind is WSMsgType.TEXT:
                metrics.received += 1
                if not self._admit():
                    if self._closing:
                        return
                    continue
                try:
                    m = protocol.parse_client(msg.data)
                    if type(m) is protocol.Signal:
                        hub.relay(peer, m.to, m.data)
                        metrics.relayed += 1
                    elif type(m) is protocol.Join:
                        self.reply(hub.join(peer, m.room))
                    elif type(m) is protocol.State:
                        hub.set_state(peer, m.muted, m.camera)
                    elif type(m) is protocol.Leave:
                        self.reply(hub.leave(peer))
                    elif type(m) is protocol.Ping:
                        self.reply(protocol.pong(m.id))
                    else:
                        raise ProtocolError("bad_message", "already said hello", "hello")
                except ProtocolError as exc:
                    self.error(exc.code, exc.message, exc.ref)
                    if exc.code in ("bad_message", "too_large") and not self.abuse.take(self.loop.time()):
                        self.close(protocol.CLOSE_BAD_MESSAGES, "malformed frames")
                if self._closing:
                    return  # closed by this frame (abuse, flood): stop reading, let the handshake run
            elif kind is WSMsgType.PONG:
                self.last_rx = self.loop.time()
            elif kind is WSMsgType.PING:
                self.last_rx = self.loop.time()
                await ws.pong(msg.data)
            elif kind is WSMsgType.BINARY:
                self.last_rx = self.loop.time()
                self.error("bad_message", "frames are JSON text")
                if not self.abuse.take(self.loop.time()):
                    self.close(protocol.CLOSE_BAD_MESSAGES, "malformed frames")
                    return
            else:  # CLOSE, CLOSING, CLOSED, ERROR (aiohttp already answered a protocol error)
                if kind is WSMsgType.ERROR:
                    log.info("peer %s: connection error %s", peer.peer_id, type(msg.data).__name__)
                return


async def handle(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    ws = web.WebSocketResponse(
        autoping=False, max_msg_size=READ_LIMIT, compress=True, decode_text=False, timeout=CLOSE_WAIT_S,
    )
    await ws.prepare(request)
    conn = Connection(services, ws, request)
    try:
        await conn.serve()
    finally:
        if not ws.closed:
            await ws.close()
    return ws
