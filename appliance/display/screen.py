"""Where composed frames go: SDL's KMS/DRM output, a desktop window, or an offscreen surface.

On a Pi with no desktop, SDL's ``kmsdrm`` driver drives HDMI directly (it loads
libdrm, libgbm, EGL and GLES from the system; the process needs the ``video``
and ``render`` groups, not root). There, full-screen software blits would push
a 1080p frame over to the GPU every time, so :class:`RendererScreen` composes with
SDL's renderer (``pygame._sdl2.video``): every tile is a streaming texture and
the GPU scales and places it. :class:`WindowScreen` is the classic pygame
display surface (software), and :class:`SurfaceScreen` draws into a plain
surface with no video driver at all, for tests and ``--snapshot``.

A screen is opened and used by one thread only (the display thread).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Literal, Protocol

from appliance.display.config import DisplayConfig
from appliance.errors import DeviceError

if TYPE_CHECKING:
    import pygame
    from pygame._sdl2.video import Renderer

log = logging.getLogger(__name__)

DRIVERS = {"kmsdrm": "kmsdrm", "window": None, "offscreen": "dummy"}
OFFSCREEN_SIZE = (1280, 720)


class _Output(Protocol):
    """What every screen does, whichever way it composes."""

    size: tuple[int, int]

    def present(self) -> None: ...

    def snapshot(self) -> pygame.Surface: ...

    def pump(self) -> bool: ...

    def close(self) -> None: ...


class SoftwareScreen(_Output, Protocol):
    """Composed in software onto ``surface`` (:class:`SurfaceScreen`, :class:`WindowScreen`)."""

    gpu: Literal[False]
    surface: pygame.Surface


class GpuScreen(_Output, Protocol):
    """Composed by SDL's ``renderer`` (:class:`RendererScreen`)."""

    gpu: Literal[True]
    renderer: Renderer


# ``gpu`` tells the two apart: the compositor takes the software or the GPU path by it.
Screen = SoftwareScreen | GpuScreen


class SurfaceScreen:
    """Software composition into an in-memory surface; nothing is shown."""

    gpu: Literal[False] = False

    def __init__(self, size: tuple[int, int] = OFFSCREEN_SIZE) -> None:
        import pygame

        width, height = size
        self.size = (width, height)
        self.surface = pygame.Surface(self.size)
        self.presented = 0

    def present(self) -> None:
        self.presented += 1

    def snapshot(self) -> pygame.Surface:
        return self.surface.copy()

    def pump(self) -> bool:
        return True

    def close(self) -> None:
        pass


class WindowScreen:
    """Software composition onto pygame's display surface (a window, or full screen on KMS)."""

    gpu: Literal[False] = False

    def __init__(self, size: tuple[int, int], fullscreen: bool, vsync: bool) -> None:
        import pygame

        flags = pygame.FULLSCREEN if fullscreen else 0
        self.surface = pygame.display.set_mode(size, flags, vsync=int(vsync and fullscreen))
        pygame.display.set_caption("wallmesh")
        pygame.mouse.set_visible(not fullscreen)
        self.size = self.surface.get_size()
        self.presented = 0

    def present(self) -> None:
        import pygame

        pygame.display.flip()
        self.presented += 1

    def snapshot(self) -> pygame.Surface:
        return self.surface.copy()

    def pump(self) -> bool:
        return _pump()

    def close(self) -> None:
        import pygame

        pygame.display.quit()


class RendererScreen:
    """GPU composition with SDL's renderer; ``renderer`` is a ``pygame._sdl2.video.Renderer``."""

    gpu: Literal[True] = True

    def __init__(self, size: tuple[int, int], fullscreen: bool, vsync: bool) -> None:
        import pygame
        from pygame._sdl2 import video

        self.window = video.Window("wallmesh", size=size, fullscreen_desktop=fullscreen)
        self.renderer = video.Renderer(self.window, accelerated=-1, vsync=vsync)
        self.size = self.window.size
        if fullscreen:
            pygame.mouse.set_visible(False)
        self.presented = 0

    def present(self) -> None:
        self.renderer.present()
        self.presented += 1

    def snapshot(self) -> pygame.Surface:
        return self.renderer.to_surface()

    def pump(self) -> bool:
        return _pump()

    def close(self) -> None:
        self.window.destroy()


def open_screen(config: DisplayConfig) -> Screen:
    """Open the output the config names; a missing display is a :class:`DeviceError` a person can act on."""
    size = (config.width, config.height)
    gpu = config.renderer == "gpu" or (config.renderer == "auto" and config.backend != "offscreen")
    if config.backend == "offscreen" and not gpu:
        return SurfaceScreen(size if all(size) else OFFSCREEN_SIZE)
    import pygame

    driver = DRIVERS[config.backend]
    if driver and os.environ.get("SDL_VIDEODRIVER") != driver:
        os.environ["SDL_VIDEODRIVER"] = driver  # SDL reads its driver from the environment
    try:
        pygame.display.init()
        if not all(size):
            desktop = pygame.display.get_desktop_sizes()
            size = desktop[0] if desktop and config.backend == "kmsdrm" else OFFSCREEN_SIZE
        fullscreen = config.backend == "kmsdrm"
        cls = RendererScreen if gpu else WindowScreen
        screen = cls(size, fullscreen, config.vsync)
    except pygame.error as exc:
        hint = {
            "kmsdrm": "is an HDMI display connected, and is the unit's user in the video and render groups?",
            "window": "is there a desktop session (DISPLAY or WAYLAND_DISPLAY)?",
            "offscreen": "SDL's dummy driver failed",
        }[config.backend]
        raise DeviceError("display", "display.backend", f"cannot open {config.backend} output: {exc}; {hint}") from exc
    log.info("display: %s %dx%d (%s)", config.backend, screen.size[0], screen.size[1], "gpu" if gpu else "software")
    return screen


def _pump() -> bool:
    """Handle window events; False when the window was closed."""
    import pygame

    alive = True
    for event in pygame.event.get():
        if event.type == pygame.QUIT:
            alive = False
    return alive
