"""The wall unit's push-buttons and LEDs on the Pi's GPIO header, through gpiozero.

Every device gets the ``pin_factory`` it is given (gpiozero's ``MockFactory`` in
tests and on a laptop, lgpio on a Pi), never gpiozero's global default. gpiozero
calls button callbacks on its own threads; :class:`ButtonPanel` hands each event
to the event loop with ``loop.call_soon_threadsafe`` and runs the commands one
after another from a queue, so a press and its release can never overtake each
other. :class:`LedPanel` follows the controller's status (``subscribe``), so the
LEDs show the unit's real state, including changes made remotely or by a
restart, not just the last button pressed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from appliance.controls.actions import ButtonActions
from appliance.controls.config import ButtonsConfig, LedsConfig
from appliance.errors import DeviceError, WallmeshError
from appliance.wall.controller import UnitController, Unsubscribe
from appliance.wall.status import UnitStatus

log = logging.getLogger(__name__)

BUTTONS = ("call", "mute", "camera", "volume_up", "volume_down")


def make_pin_factory(name: str) -> Any:
    """The gpiozero pin factory a config names; ``None`` lets gpiozero choose (``auto``)."""
    if name == "auto":
        return None
    try:
        if name == "mock":
            from gpiozero.pins.mock import MockFactory, MockPWMPin

            return MockFactory(pin_class=MockPWMPin)
        if name == "lgpio":
            from gpiozero.pins.lgpio import LGPIOFactory

            return LGPIOFactory()
        if name == "rpigpio":
            from gpiozero.pins.rpigpio import RPiGPIOFactory

            return RPiGPIOFactory()
        if name == "pigpio":
            from gpiozero.pins.pigpio import PiGPIOFactory

            return PiGPIOFactory()
        from gpiozero.pins.native import NativeFactory

        return NativeFactory()
    except (ImportError, OSError, RuntimeError) as exc:
        raise DeviceError("GPIO", "buttons.pin_factory", f"cannot use the {name} pin library: {exc}") from exc


def _gpio_error(what: str, key: str, exc: Exception) -> DeviceError:
    return DeviceError(what, key, f"cannot open the pin: {exc}; check the pin number and that the unit's user is in the gpio group")


class ButtonPanel:
    """The unit's buttons; events become controller commands on ``loop``."""

    def __init__(
        self,
        config: ButtonsConfig,
        controller: UnitController,
        loop: asyncio.AbstractEventLoop,
        pin_factory: Any = None,
    ) -> None:
        from gpiozero import Button
        from gpiozero.exc import GPIOZeroError

        self.config = config
        self.loop = loop
        self.actions = ButtonActions(controller, config.volume_step)
        self.buttons: dict[str, Any] = {}
        self.handled = 0
        self.last_latency: float | None = None  # seconds from the pin event to the command done
        self._queue: asyncio.Queue[tuple[str, str, float]] = asyncio.Queue()
        self._worker: asyncio.Task | None = None
        pull_up: bool | None = config.pull_up
        active: bool | None = None
        if config.active_state != "auto":
            pull_up, active = None, config.active_state == "high"
        try:
            for name in BUTTONS:
                pin = getattr(config, name)
                if not pin:
                    continue
                volume = name.startswith("volume")
                button = Button(
                    pin,
                    pull_up=pull_up,
                    active_state=active,
                    bounce_time=config.bounce_time or None,
                    hold_time=config.volume_repeat if volume else config.hold_time,
                    hold_repeat=volume,
                    pin_factory=pin_factory,
                )
                button.when_pressed = self._callback(name, "pressed")
                button.when_released = self._callback(name, "released")
                if name == "call":
                    button.when_held = self._callback(name, "held")
                elif volume:  # holding a volume button keeps stepping
                    button.when_held = self._callback(name, "pressed")
                self.buttons[name] = button
        except (GPIOZeroError, OSError) as exc:
            self.close()
            raise _gpio_error(f"{name} button", f"buttons.{name}", exc) from exc

    def start(self) -> None:
        """Start running commands (call on the loop)."""
        if self._worker is None:
            self._worker = self.loop.create_task(self._run(), name="buttons")

    def _callback(self, name: str, event: str):
        def on_event() -> None:  # on a gpiozero thread
            at = time.monotonic()
            try:
                self.loop.call_soon_threadsafe(self._queue.put_nowait, (name, event, at))
            except RuntimeError:  # the loop is closed: the unit is shutting down
                log.debug("button %s %s after shutdown, ignored", name, event)

        return on_event

    async def _run(self) -> None:
        while True:
            name, event, at = await self._queue.get()
            log.debug("button %s %s", name, event)
            try:
                await self.actions.handle(name, event)
            except WallmeshError as exc:
                log.warning("button %s %s: %s", name, event, exc)
            except Exception:  # this task runs every button: one failed command must not end them all
                log.exception("button %s %s: the command failed", name, event)
            self.handled += 1
            self.last_latency = time.monotonic() - at

    def close(self) -> None:
        """Release the pins and stop the command queue (idempotent).

        gpiozero joins each button's hold thread, up to ~0.1 s apiece, so the
        buttons are closed side by side; from the event loop prefer :meth:`aclose`.
        """
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
        buttons = list(self.buttons.values())
        self.buttons.clear()
        closers = [threading.Thread(target=b.close, name="button-close") for b in buttons]
        for t in closers:
            t.start()
        for t in closers:
            t.join()

    async def aclose(self) -> None:
        """:meth:`close` without blocking the event loop."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
        await asyncio.to_thread(self.close)


class LedPanel:
    """The unit's LEDs, following the controller's status documents."""

    def __init__(self, config: LedsConfig, pin_factory: Any = None) -> None:
        from gpiozero import LED, RGBLED
        from gpiozero.exc import GPIOZeroError

        self.config = config
        self.leds: dict[str, Any] = {}
        self.rgb: Any = None
        self._mode: dict[str, Any] = {}
        key = "leds"
        try:
            if config.kind == "separate":
                for name in ("mute", "in_call", "status"):
                    key = f"leds.{name}"
                    pin = getattr(config, name)
                    if pin:
                        self.leds[name] = LED(pin, active_high=config.active_high, pin_factory=pin_factory)
            elif config.kind == "rgb":
                key = "leds.rgb_red"
                self.rgb = RGBLED(
                    config.rgb_red,
                    config.rgb_green,
                    config.rgb_blue,
                    active_high=config.active_high,
                    pwm=config.rgb_pwm,
                    pin_factory=pin_factory,
                )
        except (GPIOZeroError, OSError) as exc:
            self.close()
            raise _gpio_error("LED", key, exc) from exc

    def attach(self, controller: UnitController) -> Unsubscribe:
        """Follow ``controller`` from now on; returns the unsubscribe function."""
        self.update(controller.status())
        return controller.subscribe(self.update)

    def update(self, status: UnitStatus) -> None:
        """Show ``status`` (a ``GET /status`` document); cheap, and idempotent per state."""
        state, muted = status.get("state", "idle"), bool(status.get("muted"))
        if state == "error":
            status_mode = "fast"
        elif state in ("joining", "reconnecting"):
            status_mode = "blink"
        else:
            status_mode = "off"
        if self.leds:
            self._set("mute", "on" if muted else "off")
            self._set("in_call", "on" if state in ("in_call", "reconnecting") else "off")
            self._set("status", status_mode)
        if self.rgb is not None:
            self._set_rgb(state, muted, status_mode)

    def _set(self, name: str, mode: str) -> None:
        led = self.leds.get(name)
        if led is None or self._mode.get(name) == mode:
            return
        self._mode[name] = mode
        if mode == "on":
            led.on()
        elif mode == "off":
            led.off()
        else:
            t = self.config.blink_fast if mode == "fast" else self.config.blink
            led.blink(on_time=t, off_time=t, background=True)

    def _set_rgb(self, state: str, muted: bool, status_mode: str) -> None:
        if status_mode == "fast":
            mode = ("blink", (1, 0, 0), self.config.blink_fast)
        elif status_mode == "blink":
            mode = ("blink", (1, 1, 0) if state == "reconnecting" else (0, 0, 1), self.config.blink)
        elif state == "in_call":
            mode = ("on", (1, 0, 0) if muted else (0, 1, 0), 0)
        else:
            mode = ("on", (0, 0, 0), 0)
        if self._mode.get("rgb") == mode:
            return
        self._mode["rgb"] = mode
        kind, colour, t = mode
        if kind == "on":
            self.rgb.color = colour
        else:
            self.rgb.blink(on_time=t, off_time=t, on_color=colour, off_color=(0, 0, 0), background=True)

    def close(self) -> None:
        """Turn the LEDs off and release their pins (idempotent)."""
        for led in self.leds.values():
            led.close()
        self.leds.clear()
        if self.rgb is not None:
            self.rgb.close()
            self.rgb = None
