"""The unit's local status endpoint: ``GET /status`` and ``POST /actions/{name}`` on loopback.

Operators (``curl localhost:PORT/status``), fleet tools and the tests read the
unit through it, and the actions do exactly what the buttons do. It serves any
:class:`~appliance.wall.controller.UnitController`; it holds no state itself.

``GET /status`` answers the controller's ``status()`` as JSON: a
:class:`~appliance.wall.status.UnitStatus`, from the unit daemon the fuller
:class:`~appliance.wall.status.DaemonStatus` (state, room, mute, camera, volume,
signaling, media, process figures, and one
:class:`~appliance.wall.status.PeerStatus` per peer). :mod:`appliance.wall.status`
lists every field and what it means.

Actions: ``join``, ``hangup``, ``mute``, ``unmute``, ``camera-on``, ``camera-off``,
``volume-up``, ``volume-down``, ``restart``. Each answers with the status
document after the action; an unknown action is a 404, a refused one a 409, both
as ``{"error": {"code", "message"}}`` like the signaling server's API.

Only the unit's own tools may drive it. A web page open in a browser on the unit
could otherwise reach ``127.0.0.1`` too (a plain form post, or a name of its own
rebound to loopback) and hang up a call or turn the camera on. So every request
must name the endpoint itself in ``Host`` (a loopback name or address, or the
address it arrived on, with the port it is served on), must carry no browser
``Origin`` and no ``Sec-Fetch-Site`` other than ``none`` (typed into the address
bar), else 403 ``forbidden``; an action with a body must send it as
``application/json``, else 415 ``unsupported_media_type``. curl, urllib, aiohttp
and the fleet tools send none of what is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Self

from aiohttp import web

from appliance.errors import WallmeshError
from appliance.netaddr import is_loopback
from appliance.wall.controller import UnitController

log = logging.getLogger(__name__)

CONTROLLER = web.AppKey("controller", UnitController)

VOLUME_STEP = 5

Action = Callable[[UnitController], Awaitable[None]]

ACTIONS: dict[str, Action] = {
    "join": lambda c: c.join(),
    "hangup": lambda c: c.hangup(),
    "mute": lambda c: c.set_muted(True),
    "unmute": lambda c: c.set_muted(False),
    "camera-on": lambda c: c.set_camera(True),
    "camera-off": lambda c: c.set_camera(False),
    "volume-up": lambda c: c.change_volume(VOLUME_STEP),
    "volume-down": lambda c: c.change_volume(-VOLUME_STEP),
    "restart": lambda c: c.restart_call(),
}


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _host_port(header: str) -> tuple[str, int] | None:
    """``host`` and port of a ``Host`` header (port 80 when it names none); None when malformed."""
    if header.startswith("["):
        host, sep, rest = header[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        port = rest[1:]
    else:
        host, _, port = header.partition(":") if header.count(":") <= 1 else ("", "", "")
    if not host:
        return None
    if not port:
        return host.lower(), 80
    if not port.isdigit() or len(port) > 5:
        return None
    return host.lower(), int(port)


def refusal(request: web.Request) -> web.Response | None:
    """Why ``request`` may not reach the unit (a 403 or 415 answer), or None when it may."""
    sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
    named = _host_port(request.headers.get("Host", ""))
    if named is None or sockname is None:
        return _error(403, "forbidden", "the request must name this endpoint in its Host header")
    host, port = named
    local_host, local_port = str(sockname[0]), int(sockname[1])
    if port != local_port or not (is_loopback(host) or host == local_host.lower()):
        return _error(403, "forbidden", f"this endpoint answers only as 127.0.0.1:{local_port}, localhost or [::1], not {host}")
    if "Origin" in request.headers:
        return _error(403, "forbidden", "requests from web pages are refused")
    if request.headers.get("Sec-Fetch-Site", "none") != "none":
        return _error(403, "forbidden", "requests from web pages are refused")
    if request.method == "POST" and request.body_exists and request.content_type != "application/json":
        return _error(415, "unsupported_media_type", "an action's body, when there is one, must be application/json")
    return None


@web.middleware
async def local_only(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Answer :func:`refusal`'s 403/415 before any handler runs."""
    refused = refusal(request)
    if refused is not None:
        log.warning("status endpoint: refused %s %s (%s)", request.method, request.path, refused.status)
        return refused
    return await handler(request)


async def get_status(request: web.Request) -> web.Response:
    return web.json_response(request.app[CONTROLLER].status())


async def post_action(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    action = ACTIONS.get(name)
    if action is None:
        allowed = ", ".join(sorted(ACTIONS))
        return _error(404, "unknown_action", f"no action {name!r}; actions: {allowed}")
    controller = request.app[CONTROLLER]
    log.info("status endpoint: action %s", name)
    try:
        await action(controller)
    except WallmeshError as exc:
        log.warning("status endpoint: action %s refused: %s", name, exc)
        return _error(409, "refused", str(exc))
    return web.json_response(controller.status())


def create_app(controller: UnitController) -> web.Application:
    """The status application for ``controller`` (small bodies only: actions take none)."""
    app = web.Application(middlewares=[local_only], client_max_size=4096)
    app[CONTROLLER] = controller
    app.router.add_get("/status", get_status)
    app.router.add_post("/actions/{name}", post_action)
    return app


class StatusServer:
    """Runs :func:`create_app` on ``host:port`` (port 0 picks a free one; see :attr:`port`)."""

    def __init__(self, controller: UnitController, host: str = "127.0.0.1", port: int = 0) -> None:
        self.controller = controller
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        if not is_loopback(self.host):
            log.warning("status endpoint bound to %s, not loopback: anyone on that network can hang up", self.host)
        runner = web.AppRunner(create_app(self.controller), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:  # port taken, address not here: release the runner, let the caller explain
            await runner.cleanup()
            raise
        self._runner = runner
        addresses = runner.addresses
        if addresses:
            self.port = addresses[0][1]
        log.info("status endpoint on http://%s:%d/status", self.host, self.port)
        return self.port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
