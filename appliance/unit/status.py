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
    app = web.Application(client_max_size=4096)
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
