"""The browser client's files: the static page, and ``protocol.js`` rendered from the protocol.

The page must check a room name before it connects (there is no ``welcome`` yet to carry
the rule) and must know which close codes end a session. Rather than keep a JavaScript copy
of :mod:`appliance.protocol`, the server renders those constants into a small ES module the
page imports, so the Python module stays their only source. Limits that belong to a session
(room size, frame size) are not here: the page reads them from ``welcome``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from aiohttp import web

from appliance import protocol
from appliance.signaling.state import STATIC

STATIC_DIR = Path(__file__).parent / "static"
PROTOCOL_JS = "protocol.js"


def protocol_module() -> str:
    """The text of ``protocol.js``: wire protocol constants as ES module exports."""
    close = {name.upper(): code for name, code in protocol.CLOSE_CODES.items()}
    return (
        "// wallmesh wire protocol constants, rendered by the signaling server from appliance/protocol.py.\n"
        f"export const PROTOCOL_VERSION = {protocol.VERSION};\n"
        f"export const ROOM_RE = new RegExp({json.dumps(protocol.ROOM_PATTERN)});\n"
        f"export const MAX_ROOM_CHARS = {protocol.MAX_ROOM_CHARS};\n"
        f"export const CLOSE = Object.freeze({json.dumps(close)});\n"
    )


def add_routes(app: web.Application, static_dir: Path | None) -> None:
    """Serve ``protocol.js`` and, when the directory exists, the page's static files."""
    body = protocol_module().encode()

    async def protocol_js(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="text/javascript", charset="utf-8")

    root = Path(static_dir) if static_dir else STATIC_DIR
    app[STATIC] = root
    app.router.add_get("/" + PROTOCOL_JS, protocol_js)
    if root.is_dir():
        app.router.add_get(r"/{path:(?!api/).*}", static_file)


async def static_file(request: web.Request) -> web.StreamResponse:
    """Files of the browser client; never outside its directory, never under /api."""
    root: Path = request.app[STATIC]
    rel = request.match_info.get("path", "") or "index.html"
    if rel.startswith("api/"):
        raise web.HTTPNotFound
    path = await asyncio.to_thread(_file_under, root, rel)
    if path is None:
        raise web.HTTPNotFound
    return web.FileResponse(path)


def _file_under(root: Path, rel: str) -> Path | None:
    """``root / rel`` with links resolved, if that is a file inside ``root``; else None."""
    try:
        path = (root / rel).resolve()
    except (OSError, ValueError):
        return None
    return path if path.is_relative_to(root.resolve()) and path.is_file() else None
