"""Buttons to screen: presses on mock pins, seen on the offscreen wall display and /status.

The whole wall of a unit with no peers yet: the real state machine behind a
LocalController, gpiozero MockFactory buttons and LEDs, the status endpoint and
the display thread composing offscreen. The event loop runs in debug mode with a
tight slow-callback threshold: nothing the wall does may block it.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import pytest
from gpiozero.pins.mock import MockFactory
from wallmesh_pixels import near, pixels, text_pixels

from appliance.config import loads
from appliance.controls.config import ButtonsConfig, LedsConfig
from appliance.controls.gpio import ButtonPanel, LedPanel
from appliance.display import theme
from appliance.display.config import DisplayConfig
from appliance.display.layout import Rect, metrics
from appliance.display.runner import DisplayLoop
from appliance.unit.status import StatusServer
from appliance.wall.local import LocalController
from appliance.wall.machine import StateMachine

SIZE = (1280, 720)


@pytest.fixture
async def wall(tmp_path, caplog):
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    # 0.1 s: a real block (joining gpiozero's threads, composing a frame on the loop) shows up,
    # a loaded shared machine pre-empting a short callback does not
    loop.slow_callback_duration = 0.1
    factory = MockFactory()
    controller = LocalController(StateMachine(name="Wall 1", room="boardroom"))
    buttons = ButtonPanel(loads(ButtonsConfig, "hold_time = 0.3\nbounce_time = 0.0"), controller, loop, pin_factory=factory)
    buttons.start()
    leds = LedPanel(loads(LedsConfig, ""), pin_factory=factory)
    unsubscribe = leds.attach(controller)
    config = DisplayConfig(backend="offscreen", renderer="software", width=SIZE[0], height=SIZE[1], self_view=False)
    display = DisplayLoop(config, controller.wall_model)
    await asyncio.to_thread(display.start)
    controller.subscribe(lambda _s: display.wake())
    async with StatusServer(controller) as server, aiohttp.ClientSession(server.url) as http:

        class Wall:
            pass

        w = Wall()
        w.factory, w.controller, w.display, w.http, w.dir = factory, controller, display, http, tmp_path
        yield w
        slow = [r for r in caplog.records if "Executing" in r.getMessage() and "took" in r.getMessage()]
    # shutdown joins gpiozero's threads; only the running wall must never block the loop
    unsubscribe()
    await buttons.aclose()
    leds.close()
    await asyncio.to_thread(display.stop)
    assert not slow, f"the event loop was blocked: {slow[0].getMessage()}"


async def press(wall, pin, hold=0.05):
    wall.factory.pin(pin).drive_low()
    await asyncio.sleep(hold)
    wall.factory.pin(pin).drive_high()


def snapshot(wall, name):
    """A snapshot of what the wall shows now (runs on a worker thread, like any file I/O)."""
    import pygame

    path = str(wall.dir / f"{name}.png")
    assert wall.display.snapshot(path)
    return pygame.image.load(path)


async def shows(wall, name, predicate, timeout=5.0):
    """Wait until the wall's screen satisfies ``predicate`` (generous cap: the 100 ms bar is
    measured by ``wallmesh bench display``); returns that snapshot."""
    deadline = time.monotonic() + timeout
    while True:
        shot = await asyncio.to_thread(snapshot, wall, name)
        if await asyncio.to_thread(predicate, shot):
            return shot
        if time.monotonic() > deadline:
            raise AssertionError(f"the wall never showed {name}")
        await asyncio.sleep(0.02)


def top_centre(shot):
    return pixels(shot, Rect(SIZE[0] // 4, 0, SIZE[0] // 2, metrics(SIZE).bar))


def is_idle(shot):
    return near(pixels(shot, Rect(0, int(SIZE[1] * 0.78), SIZE[0], int(SIZE[1] * 0.17))), theme.CALL, 20) > 100


async def test_buttons_drive_the_screen(wall, caplog):
    caplog.set_level(logging.DEBUG, logger="asyncio")
    await shows(wall, "idle", is_idle)

    await press(wall, "GPIO17")
    await shows(
        wall,
        "alone",
        lambda s: not is_idle(s) and text_pixels(pixels(s, Rect(0, int(SIZE[1] * 0.4), SIZE[0], int(SIZE[1] * 0.3)))) > 500,
    )
    assert wall.controller.status()["state"] == "in_call"

    await press(wall, "GPIO27")
    await shows(wall, "muted", lambda s: near(top_centre(s), theme.MUTED, 10) > 500)
    async with wall.http.get("/status") as resp:
        assert (await resp.json())["muted"] is True
    assert wall.factory.pin("GPIO5").state, "mute LED"

    await press(wall, "GPIO22")
    await shows(wall, "camera-off", lambda s: near(top_centre(s), theme.PANEL_LIGHT, 6) > 300)
    assert wall.controller.wall_model().camera is False

    await press(wall, "GPIO17")
    await shows(wall, "idle-again", is_idle)
    async with wall.http.get("/status") as resp:
        body = await resp.json()
    assert body["state"] == "idle" and body["muted"] is False


async def test_status_action_reaches_the_screen(wall):
    async with wall.http.post("/actions/join") as resp:
        assert resp.status == 200
    async with wall.http.post("/actions/mute") as resp:
        assert resp.status == 200
    await shows(wall, "remote-mute", lambda s: near(top_centre(s), theme.MUTED, 10) > 500)
    await asyncio.sleep(0.05)
    assert wall.factory.pin("GPIO5").state
