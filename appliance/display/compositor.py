"""The compositor: draws a :class:`~appliance.wall.model.WallModel` onto a screen.

Each call to :meth:`Compositor.draw` composes one frame: the scene's base, the
newest picture of every tile, then the overlays (names, icons), and presents it.
A tile's picture is converted only when a new frame arrived (the previous one is
kept, so a stream that hiccups freezes on its last picture instead of flashing
black); frames that arrived and were replaced before a draw are simply never
converted. Pictures keep their shape: they are letterboxed into their tile.

Two paths, one scene:

* software (tests, snapshots, ``WindowScreen``): PyAV's swscale converts and
  scales a decoded frame straight to the tile's size in one pass;
* GPU (``RendererScreen``, the Pi): one streaming texture per tile at the
  source's size; the GPU scales it while drawing.

The compositor runs on the display thread (see :mod:`appliance.display.runner`),
never on the event loop. It records how long each draw took and the latency it
added to every new frame (frame decoded → presented) for ``wallmesh bench``.
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pygame

from appliance.display.config import DisplayConfig
from appliance.display.layout import Rect, fit
from appliance.display.screen import Screen
from appliance.display.screens import Scene, SceneBuilder, Slot
from appliance.display.theme import Fonts
from appliance.display.tiles import SELF
from appliance.wall.model import WallModel

if TYPE_CHECKING:
    from pygame._sdl2.video import Renderer

log = logging.getLogger(__name__)


@dataclass
class Picture:
    """The last picture drawn in one slot, and what it was made from."""

    frame: Any
    frame_time: float | None
    src_size: tuple[int, int]
    box: Rect | None = None
    surface: pygame.Surface | None = None
    keep: Any = None  # memory the surface borrows (a reformatted frame)
    texture: Any = None


def frame_size(frame: Any) -> tuple[int, int]:
    """(width, height) of an ``av.VideoFrame`` or an HxWx3 array; ValueError for anything else."""
    if hasattr(frame, "width") and hasattr(frame, "height") and hasattr(frame, "reformat"):
        return int(frame.width), int(frame.height)
    shape = getattr(frame, "shape", None)
    if shape is not None and len(shape) == 3 and shape[2] == 3:
        return int(shape[1]), int(shape[0])
    raise ValueError(f"not a picture: {type(frame).__name__}")


def _drawable(frame: Any) -> bool:
    if frame is None:
        return False
    try:
        frame_size(frame)
    except ValueError:
        return False
    return True


def _rgb_array(frame: Any):
    import numpy as np

    if hasattr(frame, "to_ndarray"):
        return frame.to_ndarray(format="rgb24")
    arr = np.asarray(frame)
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


class Compositor:
    """Composes wall frames on ``screen``; ``options`` is the ``[display]`` config."""

    def __init__(self, screen: Screen, options: DisplayConfig | None = None, fonts: Fonts | None = None) -> None:
        self.screen = screen
        self.options = options or DisplayConfig()
        width, height = screen.size
        self.size = (width, height)
        self.builder = SceneBuilder(self.size, fonts or Fonts(self.options.font), self.options)
        self._pictures: dict[str, Picture] = {}
        self._reformatters: dict[str, Any] = {}
        self._last_base: Any = None
        self._base_texture: Any = None
        self._overlay_textures: list = []
        self._live_textures: list = []
        self._last_live_key: tuple | None = None
        self._last_live_rects: list = []
        self._bad: set[str] = set()
        self.frames = 0
        self.last_scene: Scene | None = None
        self.draw_ms: collections.deque[float] = collections.deque(maxlen=1000)
        self.added_ms: collections.deque[float] = collections.deque(maxlen=5000)

    def draw(self, model: WallModel) -> Scene:
        """Compose and present one frame of ``model``; returns the scene drawn."""
        start = time.perf_counter()
        live = {t.peer_id for t in model.tiles} | {SELF}
        for key in [k for k in self._pictures if k not in live]:
            del self._pictures[key]
            self._reformatters.pop(key, None)
        pictures = set(self._pictures) | {t.peer_id for t in model.tiles if _drawable(t.frame)}
        if _drawable(model.self_view):
            pictures.add(SELF)
        scene = self.builder.build(model, pictures)
        fresh: list[float] = []
        if self.screen.gpu:
            self._draw_gpu(self.screen.renderer, scene, fresh)
        else:
            self._draw_software(self.screen.surface, scene, fresh)
        self.screen.present()
        presented = time.monotonic()
        self.added_ms.extend((presented - t) * 1000 for t in fresh)
        self.draw_ms.append((time.perf_counter() - start) * 1000)
        self.frames += 1
        self.last_scene = scene
        return scene

    def save_snapshot(self, path: str) -> None:
        """Write the last composed frame as a PNG (``--snapshot``)."""
        pygame.image.save(self.screen.snapshot(), str(path))

    # pictures --------------------------------------------------------------

    def _update(self, slot: Slot, fresh: list[float]) -> Picture | None:
        """The slot's picture, refreshed when a new frame came; None when there has never been one."""
        pic = self._pictures.get(slot.key)
        new = slot.frame is not None and (pic is None or slot.frame is not pic.frame or slot.frame_time != pic.frame_time)
        if new:
            try:
                size = frame_size(slot.frame)
            except ValueError as exc:
                if slot.key not in self._bad:
                    log.warning("display: tile %s: %s; keeping the last picture", slot.key, exc)
                    self._bad.add(slot.key)
                return pic
            pic = Picture(slot.frame, slot.frame_time, size, texture=pic.texture if pic else None)
            self._pictures[slot.key] = pic
            if slot.frame_time is not None:
                fresh.append(slot.frame_time)
        return pic

    def _draw_software(self, target: pygame.Surface, scene: Scene, fresh: list[float]) -> None:
        """Redraw only what changed: everything after a scene change, else the tiles with new frames.

        A tile is redrawn from the base up (panel, picture, then the overlays on it),
        so alpha overlays never blend twice and pictures never leave traces. A live
        overlay (the mic meter) that changed is redrawn the same way, inside its own area.
        """
        full = scene.base is not self._last_base
        self._last_base = scene.base
        live_rects = [surface.get_rect(topleft=pos) for surface, pos in scene.live]
        dirty = None
        if not full and scene.live_key != self._last_live_key:
            changed_rects = live_rects + self._last_live_rects
            if changed_rects:
                dirty = changed_rects[0].unionall(changed_rects[1:])
        self._last_live_key, self._last_live_rects = scene.live_key, live_rects
        layers = scene.overlays + scene.live
        if full:
            target.blit(scene.base, (0, 0))
        for slot in scene.slots:
            changed = len(fresh)
            pic = self._update(slot, fresh)
            if pic is None:
                continue
            box = fit(pic.src_size[0], pic.src_size[1], slot.box)
            if pic.surface is None or pic.box != box:
                pic.surface, pic.keep = self._scaled(slot.key, pic.frame, box)
                pic.box = box
            elif not full and len(fresh) == changed:
                continue  # nothing new in this tile
            area = pygame.Rect(slot.box)
            if not full:
                target.blit(scene.base, area, area)
            target.blit(pic.surface, (box.x, box.y))
            if not full:
                # overlays are redrawn only inside this tile: outside it they are still there
                self._layers(target, area, layers)
        if full:
            for surface, pos in layers:
                target.blit(surface, pos)
        elif dirty is not None:
            target.blit(scene.base, dirty, dirty)
            for slot in scene.slots:
                pic = self._pictures.get(slot.key)
                if pic is not None and pic.surface is not None and pic.box is not None and dirty.colliderect(pygame.Rect(pic.box)):
                    target.set_clip(dirty)
                    target.blit(pic.surface, (pic.box.x, pic.box.y))
                    target.set_clip(None)
            self._layers(target, dirty, layers)

    @staticmethod
    def _layers(target: pygame.Surface, area: pygame.Rect, layers: list) -> None:
        """Blit the overlays that touch ``area``, clipped to it."""
        target.set_clip(area)
        for surface, pos in layers:
            if area.colliderect(surface.get_rect(topleft=pos)):
                target.blit(surface, pos)
        target.set_clip(None)

    def _scaled(self, key: str, frame: Any, box: Rect):
        if hasattr(frame, "reformat"):
            from av.video.reformatter import VideoReformatter

            reformatter = self._reformatters.get(key)
            if reformatter is None:
                reformatter = self._reformatters[key] = VideoReformatter()
            # 32-bit output blits much faster than 24-bit (no per-pixel repacking)
            # area averaging when shrinking (sharp and cheap), bilinear when enlarging
            interpolation = "AREA" if box.w < frame.width else "BILINEAR"
            rgb = reformatter.reformat(frame, width=box.w, height=box.h, format="rgb0", interpolation=interpolation)
            plane = rgb.planes[0]
            return pygame.image.frombuffer(plane, (box.w, box.h), "RGBX", plane.line_size), rgb
        arr = _rgb_array(frame)
        src = pygame.image.frombuffer(arr, (arr.shape[1], arr.shape[0]), "RGB")
        if src.get_size() == (box.w, box.h):
            return src, arr
        return pygame.transform.smoothscale(src, (box.w, box.h)), None

    def _unscaled(self, key: str, frame: Any):
        """The frame at its own size for a texture upload (the GPU scales it).

        Decoded frames become BGRA, the byte order of SDL's default ARGB8888
        texture, so the upload is a plain copy.
        """
        if hasattr(frame, "reformat"):
            from av.video.reformatter import VideoReformatter

            reformatter = self._reformatters.get(key)
            if reformatter is None:
                reformatter = self._reformatters[key] = VideoReformatter()
            bgra = reformatter.reformat(frame, format="bgra")
            plane = bgra.planes[0]
            return pygame.image.frombuffer(plane, (bgra.width, bgra.height), "BGRA", plane.line_size), bgra
        arr = _rgb_array(frame)
        return pygame.image.frombuffer(arr, (arr.shape[1], arr.shape[0]), "RGB"), arr

    def _draw_gpu(self, renderer: Renderer, scene: Scene, fresh: list[float]) -> None:
        from pygame._sdl2.video import Texture

        if self._base_texture is None or scene.base is not self._last_base:
            self._base_texture = Texture.from_surface(renderer, scene.base)
            self._overlay_textures = [(Texture.from_surface(renderer, s), pos, s.get_size()) for s, pos in scene.overlays]
            self._last_base = scene.base
        self._base_texture.draw(dstrect=(0, 0, *self.size))
        for slot in scene.slots:
            fresh_before = len(fresh)
            pic = self._update(slot, fresh)
            if pic is None:
                continue
            if pic.texture is None or pic.texture.get_rect().size != pic.src_size:
                pic.texture = Texture(renderer, pic.src_size, streaming=True)
                pic.surface = None
            if pic.surface is None or len(fresh) > fresh_before:
                pic.surface, pic.keep = self._unscaled(slot.key, pic.frame)
                pic.texture.update(pic.surface)
            pic.texture.draw(dstrect=tuple(fit(pic.src_size[0], pic.src_size[1], slot.box)))
        if scene.live_key != self._last_live_key or (not self._live_textures and scene.live):
            self._live_textures = [(Texture.from_surface(renderer, s), pos, s.get_size()) for s, pos in scene.live]
            self._last_live_key = scene.live_key
        for texture, pos, size in self._overlay_textures + self._live_textures:
            texture.draw(dstrect=(pos[0], pos[1], size[0], size[1]))
