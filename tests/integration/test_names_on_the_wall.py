"""Who is on the wall: a real signaling server, a real unit daemon drawing offscreen, and a
participant signed in as bob who calls himself "\u202eecila" (which reads "alice").

The unit's tile must show the cleaned name and, on its own line, the account the server
vouches for; its ``/status`` says the same.
"""

from __future__ import annotations

import asyncio

import aiohttp
import numpy as np
import orjson
import pygame

from appliance.demo import server as demo_server
from appliance.demo.site import wait_for
from appliance.display.compositor import Compositor
from appliance.display.screen import SurfaceScreen
from appliance.unit import config
from appliance.unit.app import UnitDaemon

SIZE = (1280, 720)
PASSWORD = "correct horse battery"


def unit_conf(tmp_path, url):
    data = {
        "room": "names",
        "state_dir": str(tmp_path / "unit"),
        "headless": False,
        "server": {
            "url": url, "name": "Wall 1", "device_id": "wall-1",
            "enrollment_token_file": str(tmp_path / "server" / demo_server.TOKEN_FILE),
        },
        "video": {"type": "pattern", "width": 160, "height": 120, "fps": 15},
        "audio": {"source": "synthetic", "sink": "null"},
        "ice": {"loopback": True},
        "status": {"host": "127.0.0.1", "port": 0},
        "display": {"backend": "offscreen", "width": SIZE[0], "height": SIZE[1], "fps": 10, "self_view": False},
        "buttons": {"pin_factory": "mock"},
        "leds": {"kind": "none"},
    }
    return config.cfg.build(config.UnitConfig, data, "<test>")


async def test_the_wall_shows_the_account_of_a_participant_with_a_borrowed_name(tmp_path):
    (tmp_path / "server").mkdir(mode=0o700)
    server = await demo_server.start(tmp_path / "server")
    await server.admin.add_user("bob", PASSWORD)
    daemon = UnitDaemon(unit_conf(tmp_path, server.url))
    http = aiohttp.ClientSession()
    try:
        await daemon.start()
        await wait_for(lambda: daemon.mesh.room == "names", 20, "the unit in its room")
        async with http.post(server.url + "/api/auth/login", json={"username": "bob", "password": PASSWORD}) as resp:
            token = (await resp.json())["token"]
        ws = await http.ws_connect(server.ws_url)
        await ws.send_str(orjson.dumps({"type": "hello", "token": token, "name": "\u202eecila"}).decode())
        await ws.send_str(orjson.dumps({"type": "join", "room": "names"}).decode())

        tiles = await wait_for(lambda: daemon.wall_model().tiles, 10, "bob's tile")
        (tile,) = tiles
        assert (tile.name, tile.account, tile.identity) == ("ecila", "bob", "signed in as bob")
        async with aiohttp.ClientSession(daemon.status_server.url) as local:
            async with local.get("/status") as resp:
                (peer,) = (await resp.json())["peers"]
        assert (peer["name"], peer["account"], peer["kind"]) == ("ecila", "bob", "user")

        # what the display thread drew, against the same model drawn here with and without the account
        display = daemon.front_panel.display
        path = tmp_path / "wall.png"

        def drawn():
            assert display.snapshot(str(path))
            return pygame.surfarray.array3d(pygame.image.load(str(path))).transpose(1, 0, 2)

        def local_render(model):
            comp = Compositor(SurfaceScreen(SIZE), daemon.conf.display)
            comp.draw(model)
            return pygame.surfarray.array3d(comp.screen.surface).transpose(1, 0, 2)

        model = daemon.wall_model()
        with_account = local_render(model)
        model.tiles[0].account = ""
        without = local_render(model)
        rows, cols = np.nonzero((with_account != without).any(axis=2))
        assert rows.size, "the account line is drawn"
        box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))

        async def shows_account():
            for _ in range(50):
                shot = await asyncio.to_thread(drawn)
                if np.array_equal(shot[box], with_account[box]):
                    return True
                await asyncio.sleep(0.1)
            return False

        assert await shows_account(), "the wall shows bob's account above the borrowed name"
        await ws.close()
    finally:
        await http.close()
        await daemon.close()
        await server.stop()
