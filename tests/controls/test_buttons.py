"""Buttons and LEDs on gpiozero MockFactory pins, observed through /status and the LED pins."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from appliance.config import loads
from appliance.controls.config import ButtonsConfig, LedsConfig
from appliance.controls.gpio import ButtonPanel, LedPanel, make_pin_factory
from appliance.errors import ConfigError, DeviceError
from appliance.unit.status import StatusServer
from appliance.wall.local import LocalController
from appliance.wall.machine import StateMachine

HOLD = 0.4  # the call button's hold time in these tests (5 s on a unit)


async def until(predicate, timeout=5.0, what="condition"):
    """Poll until ``predicate()`` is true; generous cap (the 100 ms figure lives in the bench)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


_LOOP = asyncio.new_event_loop()  # sync tests only build panels; nothing runs on it


class Wall:
    """A unit with no peers: real state machine, buttons, LEDs and status endpoint."""

    def __init__(self, factory, controller, buttons, leds, http):
        self.factory, self.controller, self.buttons, self.leds, self.http = factory, controller, buttons, leds, http

    def pin(self, name):
        return self.factory.pin(name)

    async def press(self, pin, hold=0.05):
        self.pin(pin).drive_low()
        await asyncio.sleep(hold)
        self.pin(pin).drive_high()

    async def status(self):
        async with self.http.get("/status") as resp:
            return await resp.json()

    def led(self, pin):
        return bool(self.pin(pin).state)


@pytest.fixture
async def wall(request):
    opts = getattr(request, "param", {})
    factory = MockFactory(pin_class=MockPWMPin)
    controller = LocalController(StateMachine(name="Wall 1", room="boardroom"), join_delay=opts.get("join_delay", 0.0))
    bcfg = loads(ButtonsConfig, f"hold_time = {HOLD}\nbounce_time = 0.0")
    lcfg = loads(LedsConfig, opts.get("leds", ""))
    buttons = ButtonPanel(bcfg, controller, asyncio.get_running_loop(), pin_factory=factory)
    buttons.start()
    leds = LedPanel(lcfg, pin_factory=factory)
    unsubscribe = leds.attach(controller)
    async with StatusServer(controller) as server, aiohttp.ClientSession(server.url) as http:
        yield Wall(factory, controller, buttons, leds, http)
    unsubscribe()
    buttons.close()
    leds.close()
    buttons.close()
    leds.close()


async def test_call_press_joins_and_lights_in_call(wall):
    assert (await wall.status())["state"] == "idle"
    assert not wall.led("GPIO6")
    await wall.press("GPIO17")
    await until(lambda: wall.controller.status()["state"] == "in_call", what="in_call")
    assert (await wall.status())["state"] == "in_call"
    assert wall.led("GPIO6"), "in-call LED on"
    assert not wall.led("GPIO13"), "status LED off once in the call"
    await asyncio.sleep(0.1)
    assert (await wall.status())["state"] == "in_call", "the press that joined must not hang up on release"


async def test_second_press_hangs_up_and_resets_mute(wall):
    await wall.press("GPIO17")
    await until(lambda: wall.controller.status()["state"] == "in_call")
    await wall.press("GPIO27")
    await until(lambda: wall.led("GPIO5"), what="mute LED")
    await wall.press("GPIO17")
    await until(lambda: wall.controller.status()["state"] == "idle", what="idle")
    body = await wall.status()
    assert body["state"] == "idle" and body["muted"] is False, "rooms are shared: mute resets at call end"
    assert not wall.led("GPIO6") and not wall.led("GPIO5")


async def test_mute_press_is_reflected_in_status_led_and_model(wall):
    await wall.press("GPIO27")
    await until(lambda: wall.led("GPIO5"), what="mute LED on")
    assert (await wall.status())["muted"] is True
    assert wall.controller.wall_model().muted is True
    await wall.press("GPIO27")
    await until(lambda: not wall.led("GPIO5"), what="mute LED off")
    assert (await wall.status())["muted"] is False


async def test_mute_led_follows_remote_changes(wall):
    async with wall.http.post("/actions/mute") as resp:
        assert resp.status == 200
    await until(lambda: wall.led("GPIO5"), what="mute LED after a remote mute")
    # the next press toggles against the real state: unmute
    await wall.press("GPIO27")
    await until(lambda: not wall.led("GPIO5"), what="unmuted by the button")
    assert (await wall.status())["muted"] is False


async def test_camera_privacy_toggle(wall):
    await wall.press("GPIO22")
    await until(lambda: wall.controller.status()["camera"] is False, what="camera off")
    assert (await wall.status())["camera"] is False
    assert wall.controller.wall_model().camera is False
    await wall.press("GPIO22")
    await until(lambda: wall.controller.status()["camera"] is True, what="camera on")


async def test_volume_buttons(wall):
    await wall.press("GPIO23")
    await until(lambda: wall.controller.status()["volume"] == 75)
    await wall.press("GPIO24")
    await wall.press("GPIO24")
    await until(lambda: wall.controller.status()["volume"] == 65)


async def test_holding_volume_keeps_stepping(wall):
    await wall.press("GPIO23", hold=0.05)
    await until(lambda: wall.controller.status()["volume"] == 75)
    wall.controller.volume = 50
    await wall.press("GPIO23", hold=0.4 * 3 + 0.2)  # volume_repeat is 0.4 s by default
    await until(lambda: wall.controller.status()["volume"] >= 50 + 5 * 3, what="one step on press, then one per repeat")
    await until(lambda: wall.buttons._queue.empty(), what="queued presses handled")
    await asyncio.sleep(0.1)
    assert wall.controller.status()["volume"] <= 50 + 5 * 5


async def test_long_press_restarts_the_call_without_hanging_up(wall):
    seen = []
    wall.controller.subscribe(lambda s: seen.append(s["state"]))
    await wall.press("GPIO17")
    await until(lambda: wall.controller.status()["state"] == "in_call")
    seen.clear()
    await wall.press("GPIO17", hold=HOLD + 0.3)
    await until(lambda: wall.controller.restarts == 1, what="restart")
    await asyncio.sleep(0.1)
    assert (await wall.status())["state"] == "in_call"
    assert "idle" not in seen, seen
    assert seen[:2] == ["joining", "in_call"]


async def test_long_press_when_idle_just_joins(wall):
    await wall.press("GPIO17", hold=HOLD + 0.2)
    await until(lambda: wall.controller.status()["state"] == "in_call")
    assert wall.controller.restarts == 0


@pytest.mark.parametrize("wall", [{"join_delay": 0.8}], indirect=True)
async def test_status_led_blinks_while_joining(wall):
    await wall.press("GPIO17")
    await until(lambda: wall.controller.status()["state"] == "joining")
    samples = set()
    for _ in range(40):
        samples.add(wall.led("GPIO13"))
        await asyncio.sleep(0.015)
    assert samples == {True, False}, "status LED blinks while joining"
    await until(lambda: wall.controller.status()["state"] == "in_call", timeout=2)
    await asyncio.sleep(0.05)
    assert not wall.led("GPIO13")


@pytest.mark.parametrize("wall", [{"leds": "blink = 0.5\nblink_fast = 0.05"}], indirect=True)
async def test_status_led_blinks_fast_on_error(wall):
    wall.controller.machine.fail("Camera not found — call IT")
    pin = wall.pin("GPIO13")
    changes = []
    last = pin.state
    start = time.monotonic()
    while len(changes) < 6 and time.monotonic() - start < 5:  # generous cap for a loaded machine
        if pin.state != last:
            changes.append(time.monotonic())
            last = pin.state
        await asyncio.sleep(0.005)
    # 0.05 s per change expected; the slow blink (0.5 s) would need 2.5 s for these six changes
    assert len(changes) >= 6 and changes[5] - start < 1.5, f"fast blink expected, saw {len(changes)} changes"


@pytest.mark.parametrize("wall", [{"leds": 'kind = "rgb"'}], indirect=True)
async def test_rgb_led(wall):
    red, green, blue = (wall.pin(p) for p in ("GPIO16", "GPIO20", "GPIO21"))
    assert (red.state, green.state, blue.state) == (0, 0, 0)
    await wall.press("GPIO17")
    await until(lambda: green.state == 1 and red.state == 0, what="green in call")
    await wall.press("GPIO27")
    await until(lambda: red.state == 1 and green.state == 0, what="red while muted")
    assert not wall.leds.leds, "no separate LEDs in rgb mode"


def test_active_low_external_resistors():
    factory = MockFactory()
    cfg = loads(ButtonsConfig, 'active_state = "high"\ncall = "GPIO5"\nmute = ""\ncamera = ""\nvolume_up = ""\nvolume_down = ""')
    panel = ButtonPanel(cfg, LocalController(), _LOOP, pin_factory=factory)
    try:
        assert list(panel.buttons) == ["call"]
        button = panel.buttons["call"]
        assert button.pull_up is None
        factory.pin("GPIO5").drive_high()
        assert button.is_pressed
    finally:
        panel.close()


def test_bad_pin_names_are_config_errors():
    with pytest.raises(ConfigError, match="buttons.toml: key 'mute'"):
        loads(ButtonsConfig, 'mute = "pin seventeen"', "buttons.toml")
    with pytest.raises(ConfigError, match="hold_time"):
        loads(ButtonsConfig, "hold_time = 0")
    with pytest.raises(ConfigError, match="kind"):
        loads(LedsConfig, 'kind = "disco"')


def test_pin_in_use_is_a_device_error():
    factory = MockFactory()
    cfg = loads(ButtonsConfig, 'mute = "GPIO17"')  # same pin as call
    with pytest.raises(DeviceError, match="buttons.mute"):
        ButtonPanel(cfg, LocalController(), _LOOP, pin_factory=factory)
    # the pins opened before the failure were released again
    ButtonPanel(loads(ButtonsConfig, ""), LocalController(), _LOOP, pin_factory=factory).close()


def test_mock_pin_factory_from_config():
    factory = make_pin_factory("mock")
    assert isinstance(factory, MockFactory)
    assert make_pin_factory("auto") is None


async def test_a_command_that_crashes_does_not_kill_the_buttons():
    class FlakyController(LocalController):
        """The first join fails the way an unexpected bug in the unit daemon would."""

        failed = False

        async def join(self):
            if not self.failed:
                self.failed = True
                raise RuntimeError("unexpected bug")
            await super().join()

    factory = MockFactory(pin_class=MockPWMPin)
    controller = FlakyController()
    panel = ButtonPanel(loads(ButtonsConfig, "bounce_time = 0.0"), controller, asyncio.get_running_loop(), pin_factory=factory)
    panel.start()
    try:
        for _ in range(2):
            factory.pin("GPIO17").drive_low()
            await asyncio.sleep(0.05)
            factory.pin("GPIO17").drive_high()
            await until(lambda: panel._queue.empty() and panel.handled % 2 == 0, what="press and release handled")
        await until(lambda: controller.status()["state"] == "in_call", what="the second press joins")
        assert controller.failed and panel.handled >= 4
    finally:
        await panel.aclose()
