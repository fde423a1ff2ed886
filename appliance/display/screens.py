"""Which screen the wall shows for each unit state, assembled into a :class:`Scene`.

* idle: the room's name, a large clock and "press the call button to join";
* joining: a spinner and the room being joined;
* in call: the grid of participants, or "waiting for others" when alone;
* reconnecting: the grid keeps running under an amber banner (the peers' media
  does not go through the server); with nobody connected, a full screen;
* error: one sentence a person in the room can act on ("Camera not found —
  call IT"), never a traceback.

A scene is the opaque ``base``, the ``slots`` where pictures go and the
``overlays`` drawn above them. :class:`SceneBuilder` caches the base and
overlays by a key of everything they show, so a running call redraws them only
when something visible changes (a mute, a name, the minute on the clock).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pygame

from appliance.display import icons, theme, tiles
from appliance.display.config import DisplayConfig
from appliance.display.draw import pill, text, wrap
from appliance.display.layout import Rect, metrics
from appliance.wall.model import WallModel
from appliance.wall.states import UnitState

SPINNER_RATE = 10  # spinner steps per second


@dataclass
class Slot:
    """A place for a picture: ``key`` is the peer id (or the self-view's key)."""

    key: str
    frame: Any
    frame_time: float | None
    box: Rect


@dataclass
class Scene:
    base: pygame.Surface
    overlays: list = field(default_factory=list)
    slots: list[Slot] = field(default_factory=list)
    key: tuple = ()
    screen: str = ""
    live: list = field(default_factory=list)  # overlays that change between scenes (the mic meter)
    live_key: tuple = ()


def screen_name(model: WallModel) -> str:
    """The screen for the model: idle, joining, call, alone, reconnecting or error."""
    try:
        state = UnitState(model.state)
    except ValueError:
        return "error"  # a state the display does not know: say something is wrong, never crash
    if state == UnitState.ERROR:
        return "error"
    if state == UnitState.IDLE:
        return "idle"
    if state == UnitState.JOINING:
        return "joining"
    if model.tiles:
        return "call"
    return "reconnecting" if state == UnitState.RECONNECTING else "alone"


class SceneBuilder:
    """Builds scenes for one output size; the base and overlays are rebuilt only on change."""

    def __init__(self, size: tuple[int, int], fonts: theme.Fonts, options: DisplayConfig) -> None:
        self.size = size
        self.fonts = fonts
        self.options = options
        self._cached: Scene | None = None
        self._layouts: dict[tuple[int, bool], list] = {}
        self._meters: dict[tuple[int, bool], tuple] = {}
        self.rebuilds = 0

    def build(self, model: WallModel, pictures: set[str]) -> Scene:
        name = screen_name(model)
        show_self = self.options.self_view and name in ("call", "alone") and (tiles.SELF in pictures or not model.camera)
        tile_keys = tuple(
            (t.peer_id, t.label, t.identity, t.muted, t.camera, int(t.quality), t.speaking, t.reconnecting, t.peer_id in pictures)
            for t in model.tiles
        ) if name == "call" else ()
        phase = int(time.monotonic() * SPINNER_RATE) if name in ("joining", "reconnecting") else 0
        key = (
            name, model.room, model.unit_name, model.muted, model.camera, model.message,
            model.state, tiles.clock(model.now, self.options.clock_24h), tile_keys, phase,
            show_self and tiles.SELF in pictures, model.notice,
        )
        scene = self._cached
        if scene is None or scene.key != key:
            scene = self._draw(name, model, pictures, show_self)
            scene.key = key
            self._cached = scene
            self.rebuilds += 1
        slots = []
        if name == "call":
            for t, rect in zip(model.tiles, self._rects(len(model.tiles), show_self), strict=False):
                if t.camera:
                    slots.append(Slot(t.peer_id, t.frame, t.frame_time, rect))
        live: list = []
        live_key: tuple = ()
        if show_self:
            rect = tiles.self_view(self.size, self.options.self_view_size)
            if model.camera:
                slots.append(Slot(tiles.SELF, model.self_view, model.self_view_time, rect))
            live_key = (tiles.meter_step(model.mic_level), bool(model.muted))
            if live_key not in self._meters:
                self._meters[live_key] = tiles.mic_meter(rect, *live_key)
            live = [self._meters[live_key]]
        return Scene(scene.base, scene.overlays, slots, key, name, live, live_key)

    def _rects(self, n: int, show_self: bool) -> list:
        key = (n, show_self)
        if key not in self._layouts:
            self._layouts[key] = tiles.tile_rects(self.size, n, self.options.self_view_size if show_self else None)
        return self._layouts[key]

    def _draw(self, name: str, model: WallModel, pictures: set[str], show_self: bool) -> Scene:
        base = pygame.Surface(self.size)
        base.fill(theme.BACKGROUND)
        overlays: list = []
        if name == "call":
            tiles.top_bar(base, self.fonts, model, self.options.clock_24h, len(model.tiles))
            radius = metrics(self.size).radius
            for t, rect in zip(model.tiles, self._rects(len(model.tiles), show_self), strict=False):
                overlays.extend(tiles.tile(base, self.fonts, rect, t, t.peer_id in pictures, radius))
        else:
            getattr(self, f"_{name}")(base, model)
        if show_self:
            _, pieces = tiles.self_tile(base, self.fonts, model, self.options.self_view_size, tiles.SELF in pictures)
            overlays.extend(pieces)
        if model.notice:
            overlays.append(self._notice(model.notice))
        return Scene(base, overlays, [], screen=name)

    def _notice(self, message: str):
        """A toast at the bottom centre, e.g. the volume after a press."""
        m = metrics(self.size)
        toast = pill(self.fonts, message, 34 * m.scale, theme.TEXT, (30, 36, 46, 235), bold=True)
        return toast, (int((self.size[0] - toast.get_width()) / 2), int(self.size[1] - m.margin * 2 - toast.get_height()))

    # full screens ---------------------------------------------------------

    def _centre_block(self, base, lines, top_icon=None, gap=24) -> None:
        """Draw [(text, px, colour, bold)] centred as one block, an icon above."""
        s = metrics(self.size).scale
        heights = [self.fonts.get(int(px * s), bold).get_linesize() for _, px, _, bold in lines]
        total = sum(heights) + gap * s * (len(lines) - 1) + ((top_icon.get_height() + 40 * s) if top_icon else 0)
        y = (self.size[1] - total) / 2
        cx = self.size[0] / 2
        if top_icon is not None:
            base.blit(top_icon, top_icon.get_rect(midtop=(cx, y)))
            y += top_icon.get_height() + 40 * s
        for (line, px, colour, bold), h in zip(lines, heights, strict=True):
            text(base, self.fonts, line, px * s, colour, (cx, y), "midtop", bold)
            y += h + gap * s

    def _idle(self, base, model: WallModel) -> None:
        s = metrics(self.size).scale
        now = time.localtime(model.now)
        date = time.strftime("%A %-d %B", now)
        room = self.fonts.fit(model.room or "This room", int(64 * s), int(self.size[0] * 0.85), True)
        self._centre_block(
            base,
            [
                (room, 64, theme.TEXT_DIM, True),
                (tiles.clock(model.now, self.options.clock_24h), 220, theme.TEXT, True),
                (date, 44, theme.TEXT_DIM, False),
            ],
            gap=18,
        )
        icon = icons.call(int(72 * s), theme.CALL)
        hint = self.fonts.render("Press the call button to join", int(44 * s), theme.TEXT)
        w = icon.get_width() + int(24 * s) + hint.get_width()
        x, y = (self.size[0] - w) // 2, int(self.size[1] - 150 * s)
        base.blit(icon, icon.get_rect(midleft=(x, y)))
        base.blit(hint, hint.get_rect(midleft=(x + icon.get_width() + int(24 * s), y)))
        self._own_state(base, model)
        self._footer(base, model)

    def _joining(self, base, model: WallModel) -> None:
        s = metrics(self.size).scale
        spin = icons.spinner(int(140 * s), int(time.monotonic() * SPINNER_RATE), theme.ACCENT)
        room = self.fonts.fit(f"Joining {model.room or 'the room'}…", int(72 * s), int(self.size[0] * 0.85), True)
        self._centre_block(base, [(room, 72, theme.TEXT, True), ("Connecting to the others in the room", 40, theme.TEXT_DIM, False)], spin)
        self._footer(base, model)

    def _alone(self, base, model: WallModel) -> None:
        tiles.top_bar(base, self.fonts, model, self.options.clock_24h, 0)
        s = metrics(self.size).scale
        d = int(160 * s)
        icon = pygame.Surface((d, d), pygame.SRCALPHA)
        c = d // 2
        pygame.draw.circle(icon, theme.PANEL_LIGHT, (c, c), c)
        person = pygame.Surface((d, d), pygame.SRCALPHA)
        pygame.draw.circle(person, theme.TEXT_DIM, (c, int(c * 0.78)), int(c * 0.32))
        pygame.draw.ellipse(person, theme.TEXT_DIM, pygame.Rect(int(c * 0.42), int(c * 1.22), int(c * 1.16), int(c)))
        mask = pygame.Surface((d, d), pygame.SRCALPHA)
        pygame.draw.circle(mask, (255, 255, 255, 255), (c, c), c - max(2, int(4 * s)))
        person.blit(mask, (0, 0), special_flags=pygame.BLEND_RGBA_MIN)
        icon.blit(person, (0, 0))
        self._centre_block(
            base,
            [
                ("Waiting for others to join", 64, theme.TEXT, True),
                (f"You are in {model.room or 'the room'}. Others appear here as they join.", 38, theme.TEXT_DIM, False),
            ],
            icon,
        )

    def _reconnecting(self, base, model: WallModel) -> None:
        s = metrics(self.size).scale
        spin = icons.spinner(int(120 * s), int(time.monotonic() * SPINNER_RATE), theme.WARNING)
        self._centre_block(
            base,
            [("Reconnecting to the server…", 64, theme.TEXT, True), ("The unit rejoins on its own; nothing to do here.", 38, theme.TEXT_DIM, False)],
            spin,
        )
        self._footer(base, model)

    def _error(self, base, model: WallModel) -> None:
        s = metrics(self.size).scale
        message = model.message or "Something went wrong — call IT"
        lines = wrap(self.fonts, message, int(60 * s), int(self.size[0] * 0.75), True)
        block = [(line, 60, theme.TEXT, True) for line in lines[:4]]
        self._centre_block(base, block, icons.warning(int(150 * s), theme.ERROR))
        self._footer(base, model)

    def _own_state(self, base, model: WallModel) -> None:
        """Between calls, say so when the next call would start muted or without video."""
        s = metrics(self.size).scale
        pills = []
        if model.muted:
            pills.append(pill(self.fonts, "Microphone muted", 28 * s, theme.TEXT, theme.MUTED, icons.mic_off(int(30 * s)), True))
        if not model.camera:
            pills.append(pill(self.fonts, "Camera off", 28 * s, theme.TEXT, theme.PANEL_LIGHT, icons.camera_off(int(30 * s))))
        x = (self.size[0] - sum(p.get_width() for p in pills) - int(12 * s) * (len(pills) - 1)) // 2
        for p in pills:
            base.blit(p, (x, metrics(self.size).margin))
            x += p.get_width() + int(12 * s)

    def _footer(self, base, model: WallModel) -> None:
        m = metrics(self.size)
        label = f"wallmesh · {model.unit_name}" if model.unit_name else "wallmesh"
        text(base, self.fonts, label, 26 * m.scale, theme.TEXT_DIM, (m.margin, self.size[1] - m.margin), "bottomleft")
