"""Refusing cross-origin use of ``/ws`` and of the state-changing HTTP API.

Browsers attach an ``Origin`` header to every WebSocket handshake and to every POST, and a
page on another site can send both without the user's knowing: a WebSocket is not bound by
the same-origin policy, and a ``text/plain`` POST needs no CORS preflight. So a request
that carries an ``Origin`` must name one of this site's own origins, or it is refused with
403 before any handler (or the WebSocket upgrade) runs. A request without ``Origin`` is a
unit or a command-line tool, not a page, and is let through. No CORS header is ever sent,
so no other origin can read an answer either.

The site's own origins are:

* the server's URL (``url`` in the config, or the one derived from the bind address);
* each entry of ``[http] allowed_origins`` (a reverse proxy's public URL);
* the origin the request itself was addressed to (scheme and ``Host``), when that host is
  an IP literal, ``localhost`` or an mDNS ``.local`` name: what a browser on the LAN types.
  A DNS name outside those is accepted only when configured, because a name under an
  attacker's control can be re-pointed at this server (DNS rebinding) and would then look
  same-origin.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware

log = logging.getLogger(__name__)

#: Methods that change nothing; a foreign page's GET cannot read the answer anyway.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def normalise(origin: str) -> str | None:
    """``scheme://host[:port]`` lower-cased with the default port dropped; None if not an origin."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in ("http", "https", "ws", "wss") or not host or parts.path not in ("", "/") or parts.query:
        return None
    scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == (443 if scheme == "https" else 80):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _local_name(host: str) -> bool:
    """True for a host nobody outside the LAN can point here: an IP literal, localhost, *.local."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith((".local", ".localhost")):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class OriginPolicy:
    """Which ``Origin`` values may use this server: its own URL and the configured extras."""

    def __init__(self, url: str = "", allowed: tuple[str, ...] = ()) -> None:
        self.fixed = {o for o in (normalise(u) for u in (url, *allowed) if u) if o}

    def own_origin(self, request: web.Request) -> str | None:
        """The origin this request was addressed to, if its host is a LAN-only name."""
        host = request.host
        scheme = "https" if request.secure else "http"
        origin = normalise(f"{scheme}://{host}")
        if origin is None or not _local_name(urlsplit(origin).hostname or ""):
            return None
        return origin

    def admits(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:
            return True  # a unit or a tool; browsers always send one here
        seen = normalise(origin)
        return seen is not None and (seen in self.fixed or seen == self.own_origin(request))


def guarded(request: web.Request) -> bool:
    """``/ws`` always (the upgrade is a GET), and every other unsafe method."""
    return request.path == "/ws" or request.method not in SAFE_METHODS


def middleware(policy_of: Callable[[web.Request], OriginPolicy]) -> Middleware:
    """An aiohttp middleware refusing foreign origins with 403 and a JSON error."""

    @web.middleware
    async def check_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
        if guarded(request) and not policy_of(request).admits(request):
            log.warning("refused %s %s from origin %.100r (%s)", request.method, request.path,
                        request.headers.get("Origin"), request.remote)
            body = {"error": {"code": "forbidden_origin", "message": "requests from this web origin are not accepted"}}
            response = web.Response(body=orjson.dumps(body), status=403, content_type="application/json")
            response.force_close()
            return response
        return await handler(request)

    return check_origin
