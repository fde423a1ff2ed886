"""A unit in trouble says so on its wall and keeps running: no server at its URL, no camera.

Real daemons with the offscreen display and gpiozero's mock pins; the screen is read back
from the display thread's own frames and compared with the same model composed here.
"""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import av
import numpy as np
import pygame

from appliance.demo import server as demo_server
from appliance.demo.site import wait_for
from appliance.display import messages
from appliance.display.compositor import Compositor
from appliance.display.screen import SurfaceScreen
from appliance.unit import config
from appliance.unit.app import UnitDaemon
from appliance.wall.states import UnitState

SIZE = (640, 360)


def unit_conf(tmp_path, url, token_file, **extra):
    data = {
        "room": "trouble",
        "state_dir": str(tmp_path / "unit"),
        "headless": False,
        "server": {"url": url, "name": "Wall 1", "device_id": "wall-1", "enrollment_token_file": str(token_file),
                   "backoff_max_s": 1.0},
        "video": {"type": "pattern", "width": 160, "height": 120, "fps": 15},
        "audio": {"source": "synthetic", "sink": "null"},
        "ice": {"loopback": True},
        "status": {"host": "127.0.0.1", "port": 0},
        "display": {"backend": "offscreen", "width": SIZE[0], "height": SIZE[1], "fps": 10, "self_view": False},
        "buttons": {"pin_factory": "mock", "bounce_time": 0.0},
        "leds": {"kind": "none"},
        **extra,
    }
    return config.cfg.build(config.UnitConfig, data, "<test>")


def free_port() -> int:
    """A loopback port nothing listens on (bound, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def screen_of(daemon, path):
    """What the display thread draws now, as an HxWx3 array."""
    assert daemon.front_panel.display.snapshot(str(path))
    return pygame.surfarray.array3d(pygame.image.load(str(path))).transpose(1, 0, 2)


def composed(daemon, **change):
    """The daemon's current wall model (with ``change`` applied) composed here."""
    model = daemon.wall_model()
    for key, value in change.items():
        setattr(model, key, value)
    comp = Compositor(SurfaceScreen(SIZE), daemon.conf.display)
    comp.draw(model)
    return pygame.surfarray.array3d(comp.screen.surface).transpose(1, 0, 2)


async def shows(daemon, expected, path, timeout=5.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if np.array_equal(await asyncio.to_thread(screen_of, daemon, path), expected):
            return True
        await asyncio.sleep(0.1)
    return False


async def press(daemon, button, hold=0.05):
    pin = daemon.front_panel.buttons.buttons[button].pin
    pin.drive_low()
    await asyncio.sleep(hold)
    pin.drive_high()


async def test_a_server_nobody_answers_at_is_said_on_the_wall_not_joining_forever(tmp_path):
    token = tmp_path / "enroll.token"
    token.write_text("a-fleet-token\n")
    daemon = UnitDaemon(unit_conf(tmp_path, f"http://127.0.0.1:{free_port()}", token))
    try:
        await daemon.start()
        assert daemon.machine.state in (UnitState.JOINING, UnitState.ERROR)
        await wait_for(lambda: daemon.wall_model().state == UnitState.ERROR, 10, "the error screen")
        model = daemon.wall_model()
        assert model.message == messages.UNREACHABLE
        status = daemon.status()
        assert status["state"] == "error" and status["message"] == messages.UNREACHABLE
        assert status["signaling"]["error"], "the details stay in /status"
        error_screen = composed(daemon)
        assert not np.array_equal(error_screen, composed(daemon, state=UnitState.JOINING))
        assert await shows(daemon, error_screen, tmp_path / "wall.png"), "the wall shows the sentence, not 'Joining…'"
        await asyncio.sleep(2.5)  # more failed rounds on the backoff: the sentence stays
        assert daemon.wall_model().message == messages.UNREACHABLE
    finally:
        await daemon.close()


def write_clip(path) -> None:
    """A short real video file: the camera 'plugged back in'."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=15)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for i in range(15):
            img = np.full((120, 160, 3), (i * 16) % 256, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


async def test_a_missing_camera_is_shown_and_the_unit_recovers_when_it_is_back(tmp_path):
    (tmp_path / "server").mkdir(mode=0o700)
    server = await demo_server.start(tmp_path / "server")
    clip = tmp_path / "camera" / "clip.mp4"
    conf = unit_conf(tmp_path, server.url, tmp_path / "server" / demo_server.TOKEN_FILE,
                     video={"type": "file", "device": str(clip), "width": 160, "height": 120, "fps": 15})
    daemon = UnitDaemon(conf)
    daemon.device_retry_s = 0.5
    try:
        await daemon.start()  # does not raise: the unit keeps running
        assert daemon.machine.state == UnitState.ERROR
        assert daemon.wall_model().message == "Camera not found — call IT"
        assert await shows(daemon, composed(daemon), tmp_path / "wall.png"), "the wall shows the camera sentence"
        async with aiohttp.ClientSession(daemon.status_server.url) as local:
            async with local.get("/status") as resp:
                status = await resp.json()
            assert status["state"] == "error" and status["message"] == "Camera not found — call IT"
            assert str(clip) in status["media"]["error"]
            await asyncio.sleep(1.5)  # a few retries, and the signaling session meanwhile
            assert daemon.mesh.room is None, "no join while the camera is missing"
            assert daemon.signal.connected.is_set(), "the session is up (it would join at once)"

            # the buttons still answer, and so does the status endpoint
            await press(daemon, "volume_up")
            await wait_for(lambda: daemon.volume == 75, 5, "the volume press")
            await press(daemon, "call")
            await asyncio.sleep(0.3)
            assert daemon.machine.state == UnitState.ERROR and daemon.mesh.room is None
            async with local.post("/actions/join") as resp:
                assert resp.status == 409 and "clip.mp4" in (await resp.json())["error"]["message"]
            async with local.post("/actions/hangup") as resp:
                assert resp.status == 200 and (await resp.json())["state"] == "error", "the screen keeps saying it"
            async with local.post("/actions/join") as resp:
                assert resp.status == 409

            clip.parent.mkdir()
            await asyncio.to_thread(write_clip, clip)
            await wait_for(lambda: daemon.mesh.room == "trouble", 15, "the join once the camera is back")
            await wait_for(lambda: daemon.machine.state == UnitState.IN_CALL, 5, "in the call")
            async with local.get("/status") as resp:
                status = await resp.json()
            assert status["media"]["error"] is None and status["media"]["encoder"] is not None
            assert status["message"] == ""
    finally:
        await daemon.close()
        await server.stop()
