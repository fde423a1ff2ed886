"""The ``[display]`` section of the unit config: which screen, what size, what to show."""

from __future__ import annotations

from dataclasses import dataclass

from appliance.config import setting


@dataclass(frozen=True)
class DisplayConfig:
    backend: str = setting(
        "kmsdrm",
        help="kmsdrm: HDMI on a Pi with no desktop; window: a window on a desktop; "
        "offscreen: no screen at all (tests, --snapshot)",
        choices=("kmsdrm", "window", "offscreen"),
    )
    renderer: str = setting(
        "auto",
        help="gpu: compose with SDL's renderer (one streaming texture per tile); software: pygame "
        "surfaces; auto: gpu on kmsdrm and window, software offscreen",
        choices=("auto", "gpu", "software"),
    )
    width: int = setting(0, help="output width in pixels; 0 uses the display's own mode (1280 offscreen)", min=0, max=7680)
    height: int = setting(0, help="output height in pixels; 0 uses the display's own mode (720 offscreen)", min=0, max=4320)
    fps: int = setting(30, help="most frames composed per second", min=1, max=120)
    vsync: bool = setting(True, help="wait for the display's vertical blank before showing a frame")
    self_view: bool = setting(True, help="show this unit's own camera in a small corner tile")
    self_view_size: float = setting(0.2, help="self-view width as a fraction of the screen width", min=0.08, max=0.4)
    font: str = setting("", help="a TrueType font file; empty: DejaVu Sans, else pygame's built-in font")
    clock_24h: bool = setting(True, help="24-hour clock on the idle screen and the top bar")
