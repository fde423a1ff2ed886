"""The unit daemon's own behaviour around the wall: mute at call end, the error screen's
sentences, a wall that never blocks the loop and redraws as soon as a frame arrives.

These build a real :class:`UnitDaemon` from config without starting its devices or
signaling (nothing here needs a camera or a server); the wall uses the offscreen
display and gpiozero's mock pins.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from appliance.display import messages
from appliance.errors import AuthError
from appliance.unit import config
from appliance.unit.app import UnitDaemon
from appliance.wall.states import UnitState


def unit_conf(tmp_path, **extra):
    data = {
        "room": "daemon-test",
        "state_dir": str(tmp_path / "state"),
        "headless": True,
        "server": {"url": "http://127.0.0.1:9", "name": "unit-t", "device_id": "dev-t"},
        "video": {"type": "pattern", "width": 160, "height": 120, "fps": 15},
        "audio": {"source": "synthetic", "sink": "null"},
        "ice": {"loopback": True},
        "display": {"backend": "offscreen", "width": 320, "height": 180, "fps": 1, "self_view": False},
        "buttons": {"pin_factory": "mock"},
        "leds": {"kind": "none"},
        **extra,
    }
    return config.cfg.build(config.UnitConfig, data, "<test>")


@pytest.fixture
async def daemon(request, tmp_path):
    d = UnitDaemon(unit_conf(tmp_path, **getattr(request, "param", {})))
    yield d
    await d.close()


@pytest.mark.parametrize(
    "daemon, resets",
    [({}, True), ({"call": {"mute_resets": True}}, True), ({"call": {"mute_resets": False}}, False)],
    indirect=["daemon"],
)
async def test_mute_at_call_end_follows_call_mute_resets(daemon, resets):
    daemon.machine.to(UnitState.JOINING, "test")
    daemon.machine.to(UnitState.IN_CALL, "test")
    await daemon.set_muted(True)
    assert daemon.media.muted and daemon.machine.muted
    await daemon.hangup()
    assert daemon.machine.state == UnitState.IDLE
    assert daemon.machine.muted is not resets
    assert daemon.media.muted is not resets  # what leaves the microphone follows the machine


async def test_error_screens_show_sentences_for_the_room_not_server_text(daemon):
    await daemon.on_signaling_error(AuthError("unauthorized", "device secret dev-t/3f9a refused by store"))
    assert daemon.machine.state == UnitState.ERROR
    assert daemon.machine.message == messages.for_code("unauthorized")
    assert "3f9a" not in daemon.wall_model().message
    daemon.machine.to(UnitState.JOINING, "retry")
    await daemon.on_server_message({"type": "error", "code": "room_full", "message": "room daemon-test has 6/6", "ref": "join"})
    assert daemon.machine.message == messages.for_code("room_full")
    assert "6/6" not in daemon.machine.message


async def test_closing_the_wall_leaves_the_event_loop_running(daemon):
    from appliance.unit.frontpanel import FrontPanel

    wall = FrontPanel(daemon.conf, daemon)
    wall._start_controls()
    assert wall.buttons is not None and wall.buttons.buttons
    ticks = 0
    closing = True

    async def tick():
        nonlocal ticks
        while closing:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    before = ticks
    await wall.close()  # gpiozero's close joins a thread per button (~0.1 s): off the loop
    closing = False
    await ticker
    assert not wall.buttons.buttons  # the pins were released
    assert ticks > before + 1, "the event loop stood still while the buttons closed"


async def test_a_new_frame_rebuilds_the_wall_at_once_not_at_the_next_display_tick(daemon):
    """Display at 1 fps: without a wake-up per frame a new picture waits up to a second."""
    from appliance.unit.frontpanel import FrontPanel

    wall = FrontPanel(daemon.conf, daemon)
    await wall.start()
    try:
        delays = []
        for _ in range(5):
            await asyncio.sleep(0.1)
            seen = wall.model
            t0 = time.monotonic()
            daemon.mesh.on_frame()  # what every peer's video receiver calls per frame
            while wall.model is seen and time.monotonic() - t0 < 2.0:
                await asyncio.sleep(0.005)
            delays.append(time.monotonic() - t0)
        assert max(delays) < 0.3, f"model rebuilt {delays} s after the frames (display period 1 s)"
    finally:
        await wall.close()


async def test_volume_buttons_show_the_volume_on_the_wall(daemon, monkeypatch):
    from appliance.unit import app

    monkeypatch.setattr(app, "NOTICE_SECONDS", 0.2)
    await daemon.change_volume(+5)
    assert daemon.wall_model().notice == "Volume 75%"
    await daemon.change_volume(+50)
    assert daemon.volume == 100 and daemon.wall_model().notice == "Volume 100%"
    await daemon.change_volume(+5)  # at the top: the press still answers
    assert daemon.wall_model().notice == "Volume 100%"
    await asyncio.sleep(0.25)
    assert daemon.wall_model().notice == ""


async def test_muted_microphone_meter_shows_nothing(daemon):
    daemon.mic_meter.update(0.1)
    assert daemon.wall_model().mic_level > 0.5
    daemon.machine.to(UnitState.JOINING, "test")
    await daemon.set_muted(True)
    daemon.watch_audio_once()
    model = daemon.wall_model()
    assert model.muted and model.mic_level == 0.0
