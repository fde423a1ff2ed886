"""The signaling server's aiohttp application: HTTP API, ``/ws``, ``/metrics``, static files.

:func:`create_app` takes every backend as a parameter (store, key ring, hasher) and keeps
them in typed ``web.AppKey`` state (:mod:`~appliance.signaling.state`, which ``/ws`` reads
too); background jobs (store probe, revocation poll, heartbeat sweep) run inside a
``cleanup_ctx`` so they stop with the app.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import WSCloseCode, web

from appliance import protocol
from appliance.errors import AuthError, StoreUnavailable
from appliance.signaling import origin, webclient, ws
from appliance.signaling.auth import Hasher, LoginThrottle, TokenService
from appliance.signaling.config import SignalConfig
from appliance.signaling.metrics import Metrics
from appliance.signaling.rooms import Hub, Participant
from appliance.signaling.state import SERVICES, Services
from appliance.signaling.store import Conflict, Store

log = logging.getLogger(__name__)

DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def json_error(status: int, code: str, message: str) -> web.Response:
    return json_response({"error": {"code": code, "message": message}}, status)


# The page runs only its own files: module scripts and one stylesheet from this server, no
# inline script or style, no eval; it talks to this server (fetch and the WebSocket) and
# to nothing else; it cannot be framed. API replies carry the same policy (a JSON body
# opened as a page runs nothing either).
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob: mediastream:; connect-src 'self'{ws}; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_HOST_RE = re.compile(r"^[A-Za-z0-9.:\[\]-]{1,255}$")
#: Replies that carry a token or a device secret: never kept by a browser or proxy cache.
NO_STORE = frozenset({"/api/auth/login", "/api/auth/device", "/api/devices/enroll"})


def content_security_policy(request: web.Request) -> str:
    """The page's policy; ``connect-src`` names this server's WebSocket origin explicitly
    (older browsers do not count ws(s) as 'self')."""
    host = request.host
    ws = (" wss://" if request.secure else " ws://") + host if _HOST_RE.match(host) else ""
    return CSP.format(ws=ws)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every response (page, files, API, errors): CSP, nosniff, no referrer; no-store on tokens."""
    headers = response.headers
    headers["Content-Security-Policy"] = content_security_policy(request)
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    headers["X-Frame-Options"] = "DENY"
    if request.path in NO_STORE:
        headers["Cache-Control"] = "no-store"


_STATUS_CODES = {
    400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 408: "request_timeout", 413: "too_large",
    415: "unsupported_media_type",
}


@web.middleware
async def api_errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Every failure under /api is a JSON body {error: {code, message}}."""
    try:
        response = await handler(request)
    except StoreUnavailable:
        return json_error(503, "store_unavailable", "the store is unreachable; try again shortly")
    except web.HTTPException as exc:
        if not request.path.startswith("/api/") or exc.status < 400:
            raise
        response = json_error(exc.status, _STATUS_CODES.get(exc.status, "error"), exc.reason)
        if exc.status == 408:
            response.force_close()  # the rest of that body is not worth waiting for
        return response
    if response.status >= 400 and request.path.startswith("/api/") and response.content_type != "application/json":
        return json_error(response.status, _STATUS_CODES.get(response.status, "error"), response.reason or "error")
    return response


def rate_limited(exc: AuthError) -> web.Response:
    """429 for a throttled login or a full hashing queue, with when to come back."""
    response = json_error(429, "rate_limited", exc.message)
    response.headers["Retry-After"] = str(getattr(exc, "retry_after", 1))
    return response


async def _body(request: web.Request, *keys: str) -> dict[str, str]:
    # JSON only: a form or text/plain body is what a page on another origin can send
    # without a CORS preflight; application/json it cannot
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(reason="send the body as Content-Type: application/json")
    try:
        # a body trickled in byte by byte would hold the handler (and a socket) forever
        async with asyncio.timeout(request.app[SERVICES].config.http.body_timeout_s):
            raw = await request.read()
    except TimeoutError:
        raise web.HTTPRequestTimeout(reason="the request body did not arrive in time") from None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise web.HTTPBadRequest(reason="body must be a JSON object") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(reason="body must be a JSON object")
    out = {}
    for key in keys:
        value = data.get(key)
        if not isinstance(value, str) or not value or len(value) > 1024:
            raise web.HTTPBadRequest(reason=f"'{key}' must be a non-empty string")
        out[key] = value
    return out


async def login(request: web.Request) -> web.Response:
    s = request.app[SERVICES]
    body = await _body(request, "username", "password")
    username = body["username"]
    address, account = request.remote or "?", "user:" + username
    try:
        async with s.throttle.attempt(address, account):
            user = await s.store.get_user(username)
            ok = await s.hasher.verify(user["hash"] if user else None, body["password"])
    except AuthError as exc:  # throttled, or the hashing queue is full
        s.metrics.login_failures.labels(exc.code).inc()
        return rate_limited(exc)
    if not ok:
        s.throttle.failed(address, account)
        s.metrics.login_failures.labels("invalid_credentials").inc()
        return json_error(401, "invalid_credentials", "unknown user or wrong password")
    s.metrics.logins.labels("user").inc()
    ttl = s.config.tokens.user_ttl_s
    token = s.tokens.issue("user", username, username, user["rooms"], ttl)  # type: ignore[index]
    return json_response({"token": token, "expires_in": ttl})


async def enroll(request: web.Request) -> web.Response:
    s = request.app[SERVICES]
    data = await _body(request, "enrollment_token", "device_id")
    device_id = data["device_id"]
    try:
        raw = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raw = {}
    name = raw.get("name") or device_id
    if not DEVICE_ID_RE.match(device_id) or not isinstance(name, str) or len(name) > protocol.MAX_NAME_CHARS:
        return json_error(400, "bad_request", "device_id must match " + DEVICE_ID_RE.pattern + " and name be at most 64 characters")
    try:
        claims = s.tokens.verify(data["enrollment_token"], "enroll")
    except AuthError:
        s.metrics.login_failures.labels("enrollment").inc()
        return json_error(401, "unauthorized", "enrollment token refused")
    record = await s.store.get_enrollment(claims.jti)
    if record is None or record.get("revoked"):
        s.metrics.login_failures.labels("enrollment").inc()
        return json_error(401, "unauthorized", "enrollment token refused")
    secret = secrets.token_urlsafe(32)
    try:
        secret_hash = await s.hasher.hash(secret)
        await s.store.add_device(device_id, name, secret_hash, record["rooms"], claims.jti)
    except AuthError as exc:
        return rate_limited(exc)
    except Conflict:
        return json_error(409, "device_exists", "a device with this id is already enrolled")
    log.info("device %s enrolled", device_id)
    return json_response({"device_id": device_id, "device_secret": secret}, 201)


async def device_login(request: web.Request) -> web.Response:
    s = request.app[SERVICES]
    body = await _body(request, "device_id", "device_secret")
    address, account = request.remote or "?", "device:" + body["device_id"]
    try:
        async with s.throttle.attempt(address, account):
            device = await s.store.get_device(body["device_id"])
            ok = await s.hasher.verify(device["hash"] if device else None, body["device_secret"])
    except AuthError as exc:
        s.metrics.login_failures.labels(exc.code).inc()
        return rate_limited(exc)
    if not ok or device is None or device.get("revoked"):
        s.throttle.failed(address, account)
        s.metrics.login_failures.labels("invalid_credentials").inc()
        return json_error(401, "invalid_credentials", "unknown device, wrong secret or revoked")
    s.metrics.logins.labels("device").inc()
    ttl = s.config.tokens.device_ttl_s
    token = s.tokens.issue("device", device["_id"], device.get("name") or device["_id"], device["rooms"], ttl)
    return json_response({"token": token, "expires_in": ttl})


async def health(request: web.Request) -> web.Response:
    s = request.app[SERVICES]
    if s.store.available:  # kept current by the store probe; never waits on a dead store
        return json_response({"status": "ok", "store": "ok"})
    body = {"status": "degraded", "store": "unreachable", "error": {"code": "store_unavailable", "message": "the store is unreachable"}}
    return json_response(body, 503)


async def metrics(request: web.Request) -> web.Response:
    s = request.app[SERVICES]
    m = s.metrics
    m.connections.set(len(s.connections))
    m.rooms.set(len(s.hub.rooms))
    m.members.set(s.hub.members)
    m.store_up.set(1 if s.store.available else 0)
    m.asyncio_tasks.set(len(asyncio.all_tasks()))
    sfu = s.hub.sfu
    if sfu is not None:
        rooms = getattr(sfu, "rooms", {})
        m.sfu_rooms.set(sum(1 for r in rooms.values() if getattr(r, "mode", "") == "sfu"))
        m.sfu_up.set(sum(1 for i in getattr(sfu, "instances", ()) if i.alive))
    return web.Response(body=m.render(), headers={"Content-Type": m.content_type})




async def _revocations(s: Services) -> None:
    """Re-read revoked devices and removed users; close their live connections
    (the CLI may revoke or remove from another process while we run)."""
    horizon = s.config.tokens.user_ttl_s  # a user token older than this has expired anyway
    while True:
        try:
            s.revoked = await s.store.revoked_devices()
            cutoff = time.time() - horizon - 60
            removed = await s.store.removed_users(cutoff)
            s.removed_users = {n: at for n, at in s.removed_users.items() if at > cutoff}
            for name, at in removed.items():
                s.user_removed(name, at)
        except StoreUnavailable:
            pass  # keep what we knew; logins fail closed meanwhile
        if s.revoked or s.removed_users:
            for who in list(s.hub.participants.values()):
                if s.refuses(who.claims):
                    what = "device" if who.kind == "device" else "user"
                    log.warning("%s %s no longer admitted: closing peer %s", what, who.claims.sub, who.peer_id)
                    who.send(protocol.encode_server(protocol.error("unauthorized", f"this {what} was revoked or removed")))
                    who.close(protocol.CLOSE_UNAUTHORIZED, "revoked")
        await asyncio.sleep(s.config.revocation_poll_s)


async def _heartbeat(s: Services, *, cycle_s: float = 0.5, tick_s: float = 0.05, pings_per_tick: int = 50) -> None:
    """Ping quiet connections; evict those silent past the timeout (peer-left at once).

    Every connection is looked at once per ``cycle_s``, a slice per ``tick_s``, so a
    server with thousands of connections never holds the loop for a whole sweep, and
    pings to connections that went quiet together are spread over several ticks.
    """
    hb = s.config.heartbeat
    loop = asyncio.get_running_loop()
    snapshot: list[Any] = []
    index = chunk = 0
    while True:
        await asyncio.sleep(tick_s)
        if index >= len(snapshot):
            snapshot, index = list(s.connections), 0
            chunk = max(1, math.ceil(len(snapshot) * tick_s / cycle_s))
        now = loop.time()
        budget = pings_per_tick
        live = s.connections
        for conn in snapshot[index:index + chunk]:
            if conn not in live:
                continue  # ended since the snapshot was taken
            idle = now - conn.last_rx
            if idle > hb.timeout_s:
                log.info("evicting %s: silent for %.1f s", conn.participant.peer_id if conn.participant else conn.remote, idle)
                conn.close(WSCloseCode.GOING_AWAY, "timeout")
            elif budget and idle > conn.ping_after and conn.pinged_at < conn.last_rx:
                budget -= 1
                conn.pinged_at = now  # one ping per silence; its pong (or any frame) resets it
                conn.outbox.ping()
        index += chunk


def create_app(
    config: SignalConfig,
    *,
    store: Store,
    tokens: TokenService,
    hasher: Hasher,
    url: str = "",
    fingerprint: str | None = None,
    static_dir: Path | None = None,
    sfu: Any = None,
) -> web.Application:
    """Build the app around the given backends; background jobs live and die with it.

    ``sfu`` is an :class:`appliance.signaling.sfu.broker.SfuBroker` (built unbound: its
    ``members_of`` is pointed at this app's hub here), or None for a mesh-only site."""
    policies: dict[str, origin.OriginPolicy] = {}

    def policy_of(request: web.Request) -> origin.OriginPolicy:
        """The origin policy for the server's current URL (known only once it listens)."""
        current = request.app[SERVICES].url
        policy = policies.get(current)
        if policy is None:
            policies.clear()
            policy = policies[current] = origin.OriginPolicy(current, config.http.allowed_origins)
        return policy

    app = web.Application(middlewares=[origin.middleware(policy_of), api_errors], client_max_size=protocol.MAX_FRAME_BYTES)
    m = Metrics()
    store.on_calllog_dropped = m.calllog_dropped.inc

    def on_call(event: str, room: str, who: Participant) -> None:
        store.log_call(event, room, who.peer_id, who.claims.sub, who.kind, who.name)

    hub = Hub(max_room_size=config.max_room_size, on_call=on_call, sfu=sfu)
    if sfu is not None:
        sfu.members_of = lambda room: hub.rooms.get(room, {})
    services = Services(
        config=config, store=store, tokens=tokens, hasher=hasher, metrics=m,
        hub=hub,
        throttle=LoginThrottle(failures=config.rate.login_failures, window_s=config.rate.login_window_s),
        url=url, fingerprint=fingerprint,
    )
    app[SERVICES] = services

    async def background(app: web.Application) -> AsyncIterator[None]:
        tasks = [
            asyncio.create_task(store.watch(1.0), name="store-watch"),
            asyncio.create_task(_revocations(services), name="revocations"),
            asyncio.create_task(_heartbeat(services), name="heartbeat"),
        ]
        if sfu is not None:
            tasks.append(asyncio.create_task(sfu.run(), name="sfu"))
        yield
        for task in tasks:
            task.cancel()
        _, stuck = await asyncio.wait(tasks, timeout=5)
        if sfu is not None:
            await sfu.close()
        for task in stuck:
            log.error("background task %s did not stop when cancelled", task.get_name())

    async def close_connections(app: web.Application) -> None:
        """On shutdown, say goodbye (1001) to every client instead of letting handlers be cut off."""
        conns = list(services.connections)
        for conn in conns:
            conn.close(WSCloseCode.GOING_AWAY, "server stopping")
        closing = [c.closing for c in conns if c.closing is not None]
        if closing:
            await asyncio.wait(closing, timeout=3)

    app.on_response_prepare.append(security_headers)
    app.cleanup_ctx.append(background)
    app.on_shutdown.append(close_connections)

    app.router.add_post("/api/auth/login", login)
    app.router.add_post("/api/auth/device", device_login)
    app.router.add_post("/api/devices/enroll", enroll)
    app.router.add_get("/api/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/ws", ws.handle)
    webclient.add_routes(app, static_dir)
    return app
