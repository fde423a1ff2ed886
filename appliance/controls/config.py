"""The ``[buttons]`` and ``[leds]`` sections of the unit config.

Pins are gpiozero pin names: ``"GPIO17"`` (Broadcom numbering, like ``"BCM17"``
or plain ``"17"``) or ``"BOARD11"`` (the header's physical pin); an empty string
means the unit has no such button or LED.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.config import setting

PIN = r"^$|^(GPIO|BCM)?[0-9]{1,2}$|^BOARD[0-9]{1,2}$"
FACTORIES = ("auto", "lgpio", "rpigpio", "pigpio", "native", "mock")


@dataclass(frozen=True)
class ButtonsConfig:
    pin_factory: str = setting(
        "auto",
        help="gpiozero pin library; auto picks what the Pi has, mock simulates the pins (laptop, tests)",
        choices=FACTORIES,
    )
    call: str = setting("GPIO17", help="call / hang-up: joins when idle, leaves when in a call", pattern=PIN)
    mute: str = setting("GPIO27", help="microphone mute toggle", pattern=PIN)
    camera: str = setting("GPIO22", help="camera privacy toggle (stop / resume sending video)", pattern=PIN)
    volume_up: str = setting("GPIO23", help="speaker volume up", pattern=PIN)
    volume_down: str = setting("GPIO24", help="speaker volume down", pattern=PIN)
    pull_up: bool = setting(
        True,
        help="true: the Pi's pull-up, buttons switch to ground; false: pull-down, buttons switch to 3.3 V "
        "(ignored when active_state is set)",
    )
    active_state: str = setting(
        "auto",
        help="auto follows pull_up; high or low: the buttons have their own resistors and read "
        "pressed at that level",
        choices=("auto", "high", "low"),
    )
    bounce_time: float = setting(0.03, help="seconds of contact bounce to ignore (0 = none)", min=0.0, max=1.0)
    hold_time: float = setting(5.0, help="seconds the call button is held to restart the call", min=0.1, max=30.0)
    volume_step: int = setting(5, help="volume change per press, in percent points", min=1, max=50)
    volume_repeat: float = setting(
        0.4, help="while a volume button is held, repeat the step every this many seconds", min=0.05, max=5.0
    )


@dataclass(frozen=True)
class LedsConfig:
    kind: str = setting(
        "separate",
        help="separate: mute, in-call and status LEDs; rgb: one RGB LED shows it all; none",
        choices=("separate", "rgb", "none"),
    )
    mute: str = setting("GPIO5", help="red LED, on while the microphone is muted", pattern=PIN)
    in_call: str = setting("GPIO6", help="green LED, on while in a call", pattern=PIN)
    status: str = setting("GPIO13", help="status LED: blinks while joining or reconnecting, fast on error", pattern=PIN)
    rgb_red: str = setting("GPIO16", help="RGB LED red leg (kind = rgb)", pattern=PIN)
    rgb_green: str = setting("GPIO20", help="RGB LED green leg (kind = rgb)", pattern=PIN)
    rgb_blue: str = setting("GPIO21", help="RGB LED blue leg (kind = rgb)", pattern=PIN)
    rgb_pwm: bool = setting(False, help="drive the RGB LED with PWM for mixed colours (needs PWM-capable pins)")
    active_high: bool = setting(True, help="true: the LED lights when the pin is high (anode to the pin)")
    blink: float = setting(0.5, help="seconds on (and off) of the slow status blink", min=0.05, max=5.0)
    blink_fast: float = setting(0.1, help="seconds on (and off) of the fast error blink", min=0.02, max=2.0)
