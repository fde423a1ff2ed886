"""The unit's signaling client: find the server, authenticate, join, relay, reconnect.

One long-running task owns the WebSocket. Each round: locate the server
(configured URL or mDNS), make sure the unit has a device secret (enrolling
with a fleet token if needed), trade it for a JWT, ``hello`` → ``welcome``,
``join`` → ``joined``, then hand every server frame to the handler. When the
socket drops, the round ends and the next starts after a capped, jittered
backoff. Peer connections live in the mesh, not here, so media keeps flowing
while the server is away.

TLS: an ``https`` server is pinned by the SHA-256 of its certificate
(``aiohttp.Fingerprint``) instead of a CA; the first fingerprint learned from
the mDNS advert is stored in the state directory and pinned from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, cast

from appliance import protocol
from appliance.errors import AuthError, ProtocolError, WallmeshError
from appliance.netaddr import parse_fingerprint
from appliance.unit import credentials
from appliance.unit.config import UnitConfig
from appliance.unit.links import LinkWatch
from appliance.wall.status import SignalingStatus

log = logging.getLogger(__name__)

PIN_FILE = "server-fingerprint"


class SignalHandler(Protocol):
    """What the daemon does with server frames (all called on the event loop)."""

    async def on_session(self, welcome: dict[str, Any]) -> None: ...
    async def on_joined(self, msg: dict[str, Any]) -> None: ...
    async def on_server_message(self, msg: dict[str, Any]) -> None: ...
    async def on_signaling_down(self) -> None: ...
    async def on_signaling_error(self, exc: BaseException) -> None:
        """A round was refused: the unit's credentials will not do (an :class:`AuthError`)."""

    async def on_signaling_unreachable(self, exc: BaseException) -> None:
        """A round found no session for another reason: no server at the URL or by mDNS, the
        network, a server that closed before ``welcome``. The next round follows the backoff."""


def backoff_delays(cap: float, base: float = 0.25) -> Iterator[float]:
    """Full-jitter exponential backoff: 0.25 s, 0.5 s, 1 s … up to ``cap``, each scaled by 0.5-1.0."""
    attempt = 0
    while True:
        ceiling = min(cap, base * (2**attempt))
        yield ceiling * (0.5 + 0.5 * random.random())
        attempt += 1


class SignalClient:
    """Keeps one authenticated session with the signaling server for as long as it runs."""

    def __init__(self, conf: UnitConfig, handler: SignalHandler, *, name: str) -> None:
        self.conf = conf
        self.handler = handler
        self.name = name
        self.state_dir = Path(conf.state_dir).expanduser()
        self.device_id = conf.server.device_id or credentials.default_device_id()
        self.peer_id: str | None = None
        self.room: str | None = None
        self.want_room: str | None = conf.room if conf.autojoin else None
        self.connected = asyncio.Event()
        self.sessions = 0  # completed welcome handshakes, for status and tests
        self.last_error: str | None = None
        self._ws: Any = None
        self._task: asyncio.Task[None] | None = None
        self._session: Any = None
        self._closing = False
        self._wake = asyncio.Event()  # a link came up: the next round need not wait out the backoff
        self.links = LinkWatch(conf.ice.interfaces, self.link_up)  # sets it; started with the client

    def status(self) -> SignalingStatus:
        """The ``signaling`` part of ``GET /status``."""
        return {"connected": self.connected.is_set(), "sessions": self.sessions, "error": self.last_error}

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=5))
        self._task = asyncio.create_task(self._run(), name=f"signal-{self.device_id}")
        self.links.start()

    def link_up(self, name: str) -> None:
        """A network link came (back) up: without a session, try again now, not after the backoff."""
        if not self.connected.is_set() and not self._closing:
            log.info("signal %s: link %s is up; trying the server again now", self.device_id, name)
            self._wake.set()

    async def close(self) -> None:
        self._closing = True
        await self.links.close()
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(Exception):  # best effort on the way out
                await asyncio.wait_for(self._send(protocol.Leave()), 1)
            await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- outgoing --------------------------------------------------------------------------

    async def send_signal(self, to: str, data: dict[str, Any]) -> bool:
        return await self._send(protocol.Signal(to=to, data=data))

    async def send_state(self, muted: bool, camera: bool) -> bool:
        return await self._send(protocol.State(muted=muted, camera=camera))

    async def join(self, room: str) -> None:
        self.want_room = room
        await self._send(protocol.Join(room=room))

    async def leave(self) -> None:
        self.want_room = None
        self.room = None
        await self._send(protocol.Leave())

    async def _send(self, msg: protocol.ClientMessage) -> bool:
        ws = self._ws
        if ws is None or ws.closed:
            return False
        try:
            await ws.send_str(protocol.encode_client(msg).decode())
        except (ConnectionError, RuntimeError) as exc:
            log.debug("signal %s: send %s failed: %s", self.device_id, type(msg).__name__, exc)
            return False
        return True

    # -- the connection loop ---------------------------------------------------------------

    async def _run(self) -> None:
        delays = backoff_delays(self.conf.server.backoff_max_s)
        while not self._closing:
            self._wake.clear()  # a link that comes up during this round cuts the next wait short
            try:
                await self._round()
                delays = backoff_delays(self.conf.server.backoff_max_s)  # a good session resets it
            except asyncio.CancelledError:
                raise
            except AuthError as exc:
                self.last_error = f"{exc.code}: {exc.message}"
                log.warning("signal %s: %s", self.device_id, self.last_error)
                await self.handler.on_signaling_error(exc)
            except (OSError, WallmeshError, ValueError) as exc:
                self.last_error = f"{exc.__class__.__name__}: {exc}"
                log.info("signal %s: no session (%s)", self.device_id, self.last_error)
                await self.handler.on_signaling_unreachable(exc)
            except Exception as exc:  # the supervisor of this task: log and retry
                self.last_error = f"{exc.__class__.__name__}: {exc}"
                log.exception("signal %s: unexpected failure", self.device_id)
            finally:
                was = self.connected.is_set()
                self.connected.clear()
                self._ws = None
                self.peer_id = None
                self.room = None
                if was:
                    await self.handler.on_signaling_down()
            if self._closing:
                break
            try:
                await asyncio.wait_for(self._wake.wait(), next(delays))
                delays = backoff_delays(self.conf.server.backoff_max_s)  # a new link: start the backoff afresh
            except TimeoutError:
                pass

    async def _locate(self) -> tuple[str, bytes | None]:
        server = self.conf.server
        pin = parse_fingerprint(server.fingerprint)
        if server.url != "discover":
            return server.url.rstrip("/"), pin
        from appliance.unit.discovery import discover

        found = await discover(server.discover_interfaces, server.discover_timeout_s)
        if pin is None:
            pin = self._stored_pin() or parse_fingerprint(found.fingerprint)
            if pin is not None:
                self._store_pin(pin)
        return found.url, pin

    def _stored_pin(self) -> bytes | None:
        try:
            return parse_fingerprint((self.state_dir / PIN_FILE).read_text())
        except (OSError, ValueError):
            return None

    def _store_pin(self, pin: bytes) -> None:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            (self.state_dir / PIN_FILE).write_text(pin.hex() + "\n")
        except OSError as exc:
            log.warning("signal %s: cannot store the server fingerprint: %s", self.device_id, exc)

    def _ssl(self, url: str, pin: bytes | None) -> Any:
        import aiohttp

        if not url.startswith("https://"):
            return True  # plain HTTP (a loopback server): nothing to verify
        if pin is not None:
            return aiohttp.Fingerprint(pin)
        return True  # no pin: the system CAs must vouch for the server

    async def _identity(self, base: str, ssl: Any) -> credentials.DeviceIdentity:
        ident = credentials.load_identity(self.state_dir)
        if ident is not None:
            return ident
        token_file = self.conf.server.enrollment_token_file
        if not token_file:
            raise AuthError("unauthorized", f"no device secret in {self.state_dir} and no server.enrollment_token_file")
        try:
            token = (await asyncio.to_thread(lambda: Path(token_file).expanduser().read_text())).strip()
        except OSError as exc:
            raise AuthError("unauthorized", f"cannot read server.enrollment_token_file {token_file}: {exc.strerror}") from exc
        ident = await credentials.enroll(self._session, base, ssl, token, self.device_id, self.name)
        credentials.save_identity(self.state_dir, ident)
        return ident

    async def _round(self) -> None:
        import aiohttp

        base, pin = await self._locate()
        ssl = self._ssl(base, pin)
        ident = await self._identity(base, ssl)
        token = await credentials.device_token(self._session, base, ssl, ident)
        ws_url = base.replace("http", "ws", 1) + "/ws"
        async with self._session.ws_connect(ws_url, ssl=ssl, heartbeat=5.0, max_msg_size=1 << 20) as ws:
            self._ws = ws
            await self._send(protocol.Hello(token=token, name=self.name))
            welcome = await self._expect(ws, "welcome")
            self.peer_id = str(welcome["peer_id"])
            self.sessions += 1
            self.last_error = None
            self.connected.set()
            log.info("signal %s: session %d as peer %s", self.device_id, self.sessions, self.peer_id)
            await self.handler.on_session(welcome)
            if self.want_room:
                await self._send(protocol.Join(room=self.want_room))
            async for frame in ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    if frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR):
                        break
                    continue
                msg = self._decode(frame.data)
                if msg is None:
                    continue
                kind = msg["type"]
                if kind == "joined":
                    self.room = msg.get("room")
                    await self.handler.on_joined(msg)
                elif kind == "left":
                    self.room = None
                    await self.handler.on_server_message(msg)
                else:
                    await self.handler.on_server_message(msg)
            code = ws.close_code
        if code == protocol.CLOSE_UNAUTHORIZED:
            raise AuthError("unauthorized", f"server closed the session with {code}")
        raise ConnectionError(f"signaling connection closed (code {code})")

    async def _expect(self, ws: Any, kind: str) -> dict[str, Any]:
        import aiohttp

        async with asyncio.timeout(10):
            async for frame in ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    break
                msg = self._decode(frame.data)
                if msg is None:
                    continue
                if msg["type"] == kind:
                    return msg
                if msg["type"] == "error":
                    raise ProtocolError(str(msg.get("code")), str(msg.get("message")), kind)
        raise ConnectionError(f"server closed before {kind} (code {ws.close_code})")

    def _decode(self, text: str) -> dict[str, Any] | None:
        try:
            return cast(dict[str, Any], protocol.parse_server(text))  # a TypedDict: a plain dict at run time
        except ProtocolError as exc:
            log.warning("signal %s: ignoring a bad server frame (%s: %s)", self.device_id, exc.code, exc.message)
            return None
