"""The in-call view: top bar, participant tiles and the self-view.

Everything that does not change with each video frame is drawn here once per
change of the model: the opaque *base* under the video (background, bar, tile
panels, camera-off cards) and small *overlays* above it (names, the muted icon,
signal bars, the speaker ring, "reconnecting…", and above a name the account it
belongs to when the two differ). The compositor then only puts
pictures into the video slots between the two. The self-view's microphone meter
changes many times a second, so it is a *live* overlay (:func:`mic_meter`): a small
opaque bar redrawn on its own, never a reason to redraw the rest.
"""

from __future__ import annotations

import time

import pygame

from appliance.display import icons, theme
from appliance.display.draw import alpha_rect, pill, text
from appliance.display.layout import Rect, grid_area, grid_beside, metrics, self_view
from appliance.wall.model import Quality, Tile, WallModel
from appliance.wall.states import UnitState

SELF = "__self__"

QUALITY_COLOURS = {
    Quality.GOOD: (120, 230, 150),
    Quality.FAIR: (240, 220, 90),
    Quality.POOR: (255, 160, 60),
    Quality.BAD: (255, 90, 90),
    Quality.UNKNOWN: (200, 205, 215),
}


def tile_rects(size: tuple[int, int], n: int, self_fraction: float | None = None) -> list[Rect]:
    """Where the ``n`` tiles go; with a self-view (its width fraction) none covers it."""
    avoid = self_view(size, self_fraction) if self_fraction else None
    return grid_beside(n, grid_area(size), metrics(size).gap, avoid)


def clock(now: float, h24: bool = True) -> str:
    t = time.localtime(now)
    return time.strftime("%H:%M", t) if h24 else time.strftime("%I:%M %p", t).lstrip("0")


def top_bar(base: pygame.Surface, fonts: theme.Fonts, model: WallModel, h24: bool, participants: int) -> None:
    """Room, head count, clock, and this unit's own state (reconnecting, muted, camera off) as pills."""
    size = base.get_size()
    m = metrics(size)
    s = m.scale
    cy = m.bar // 2 + m.margin // 4
    title = model.room or "wallmesh"
    r = text(base, fonts, title, 34 * s, theme.TEXT, (m.margin, cy), "midleft", bold=True)
    if participants:
        people = f"{participants + 1} in the room"
        text(base, fonts, people, 26 * s, theme.TEXT_DIM, (r.right + 20 * s, cy), "midleft")
    text(base, fonts, clock(model.now, h24), 32 * s, theme.TEXT, (size[0] - m.margin, cy), "midright")
    pills = []
    if model.state == UnitState.RECONNECTING:
        icon = icons.warning(int(26 * s), (30, 24, 10), theme.WARNING)
        pills.append(pill(fonts, "Reconnecting to the server — the call continues", 24 * s, (30, 24, 10), theme.WARNING, icon, True))
    if model.muted:
        pills.append(pill(fonts, "Microphone muted", 24 * s, theme.TEXT, theme.MUTED, icons.mic_off(int(26 * s)), True))
    if not model.camera:
        pills.append(pill(fonts, "Camera off", 24 * s, theme.TEXT, theme.PANEL_LIGHT, icons.camera_off(int(26 * s))))
    if pills:
        gap = int(12 * s)
        total = sum(p.get_width() for p in pills) + gap * (len(pills) - 1)
        x = (size[0] - total) // 2
        for p in pills:
            base.blit(p, p.get_rect(midleft=(x, cy)))
            x += p.get_width() + gap


def card(base: pygame.Surface, fonts: theme.Fonts, rect: Rect, key: str, name: str, caption: str, camera_off: bool) -> None:
    """A participant without a picture: a coloured circle with initials and a caption."""
    s = rect.h / 540
    cx, cy = rect.center
    radius = int(min(rect.w, rect.h) * 0.2)
    pygame.draw.circle(base, theme.avatar_colour(key), (cx, cy - int(30 * s)), radius)
    text(base, fonts, theme.initials(name), radius * 0.8, theme.TEXT, (cx, cy - int(30 * s)), "center", bold=True)
    cap_y = cy - int(30 * s) + radius + int(36 * s)
    if camera_off:
        icon = icons.camera_off(int(34 * s), theme.TEXT_DIM)
        img = fonts.render(caption, int(28 * s), theme.TEXT_DIM)
        w = icon.get_width() + int(10 * s) + img.get_width()
        x = cx - w // 2
        base.blit(icon, icon.get_rect(midleft=(x, cap_y)))
        base.blit(img, img.get_rect(midleft=(x + icon.get_width() + int(10 * s), cap_y)))
    else:
        text(base, fonts, caption, 28 * s, theme.TEXT_DIM, (cx, cap_y), "center")


def tile(base: pygame.Surface, fonts: theme.Fonts, rect: Rect, t: Tile, has_picture: bool, radius: int) -> list:
    """Draw one tile's base; return its overlay pieces [(surface, (x, y))]."""
    pygame.draw.rect(base, theme.PANEL, pygame.Rect(rect), border_radius=radius)
    if not t.camera:
        card(base, fonts, rect, t.peer_id, t.label, "Camera off", True)
    elif not has_picture:
        card(base, fonts, rect, t.peer_id, t.label, "Connecting…", False)
    # labels follow the screen's scale, a little larger on big tiles and smaller on small ones
    s = metrics(base.get_size()).scale * min(1.2, max(0.8, rect.h / 400))
    pad = int(14 * s)
    out: list = []
    if t.reconnecting and has_picture and t.camera:
        # a frozen picture under a veil: the link is recovering (no picture yet: the card says "Connecting…")
        dim = alpha_rect((rect.w, rect.h), theme.DIM_OVERLAY, radius)
        text(dim, fonts, "Reconnecting…", 34 * s, theme.WARNING, (rect.w // 2, rect.h // 2), "center", bold=True)
        out.append((dim, (rect.x, rect.y)))
    name = fonts.fit(t.label, int(26 * s), rect.w - int(140 * s))
    label = pill(fonts, name, 26 * s, theme.TEXT, theme.LABEL_BG)
    x = rect.x + pad
    if t.muted:
        # the microphone sits on a red dot so "muted" reads from across the room
        d = label.get_height()
        dot = pygame.Surface((d, d), pygame.SRCALPHA)
        pygame.draw.circle(dot, theme.MUTED, (d // 2, d // 2), d // 2)
        ic = icons.mic_off(int(d * 0.62))
        dot.blit(ic, ic.get_rect(center=(d // 2, d // 2)))
        out.append((dot, (x, rect.bottom - pad - d)))
        x += d + int(8 * s)
    label_y = rect.bottom - pad - label.get_height()
    out.append((label, (x, label_y)))
    if t.identity:
        # who the server says this is, on a line of its own above the name: a name that
        # spells "(bob)" cannot look like it
        line = fonts.fit(t.identity, int(20 * s), rect.w - int(140 * s))
        who = pill(fonts, line, 20 * s, theme.TEXT_DIM, theme.LABEL_BG)
        out.append((who, (rect.x + pad, label_y - int(6 * s) - who.get_height())))
    bars = icons.signal(int(24 * s), int(t.quality), QUALITY_COLOURS[Quality(t.quality)])
    badge = pill(fonts, "", 20 * s, theme.TEXT, theme.LABEL_BG, bars)
    out.append((badge, (rect.right - pad - badge.get_width(), rect.y + pad)))
    if t.speaking and not t.reconnecting:
        out.extend(ring(rect, max(3, int(5 * s)), theme.SPEAKER))
    return out


def ring(rect: Rect, width: int, colour) -> list:
    """A frame around ``rect`` as four thin opaque strips (cheap to blit every frame)."""
    strips = []
    for x, y, w, h in (
        (rect.x, rect.y, rect.w, width),
        (rect.x, rect.bottom - width, rect.w, width),
        (rect.x, rect.y, width, rect.h),
        (rect.right - width, rect.y, width, rect.h),
    ):
        strip = pygame.Surface((w, h))
        strip.fill(colour)
        strips.append((strip, (x, y)))
    return strips


def self_tile(base: pygame.Surface, fonts: theme.Fonts, model: WallModel, fraction: float, has_picture: bool) -> tuple[Rect, list]:
    """The self-view corner: a slot when the camera sends, a small card when it is off."""
    size = base.get_size()
    rect = self_view(size, fraction)
    s = rect.h / 540
    pygame.draw.rect(base, theme.PANEL_LIGHT, pygame.Rect(rect), border_radius=metrics(size).radius)
    if not model.camera:
        icon = icons.camera_off(int(80 * s), theme.TEXT_DIM)
        base.blit(icon, icon.get_rect(center=(rect.center[0], rect.center[1] - int(30 * s))))
        text(base, fonts, "Your camera is off", 44 * s, theme.TEXT_DIM, (rect.center[0], rect.center[1] + int(50 * s)), "center")
    elif not has_picture:
        text(base, fonts, "Starting camera…", 44 * s, theme.TEXT_DIM, rect.center, "center")
    label = pill(fonts, "You", 40 * s, theme.TEXT, theme.LABEL_BG, icons.mic_off(int(40 * s)) if model.muted else None)
    pad = int(20 * s)
    out = [(label, (rect.x + pad, rect.bottom - pad - label.get_height()))]
    out.extend(ring(rect, max(2, int(4 * s)), (90, 100, 115)))
    return rect, out


#: Steps the microphone meter is drawn in: a new step redraws the meter, nothing else.
METER_STEPS = 24
METER_TRACK = (16, 20, 26)  # the empty part of the meter
METER_MUTED = (92, 98, 110)  # the whole meter while muted: grey, no level
METER_HOT = (255, 176, 32)  # the top of the scale: close to clipping


def meter_step(level: float) -> int:
    """The meter's fill (0..1) as one of :data:`METER_STEPS` steps."""
    return max(0, min(METER_STEPS, round(level * METER_STEPS)))


def meter_rect(self_rect: Rect) -> Rect:
    """Where the meter sits: a thin vertical bar at the right edge inside the self-view."""
    s = self_rect.h / 540
    w, h = max(6, int(22 * s)), int(self_rect.h * 0.55)
    pad = max(6, int(26 * s))
    return Rect(self_rect.right - pad - w, self_rect.bottom - pad - h, w, h)


def mic_meter(self_rect: Rect, step: int, muted: bool) -> tuple[pygame.Surface, tuple[int, int]]:
    """The microphone meter as an opaque surface: ``step`` of :data:`METER_STEPS` filled
    from the bottom (green, amber in the top sixth), or all grey and empty while muted."""
    r = meter_rect(self_rect)
    bar = pygame.Surface((r.w, r.h))
    bar.fill(METER_MUTED if muted else METER_TRACK)
    if not muted and step > 0:
        inner = max(1, r.w // 6)
        full = r.h - 2 * inner
        top = r.h - inner - full * step // METER_STEPS
        hot = r.h - inner - full * 5 // 6
        pygame.draw.rect(bar, theme.SPEAKER, pygame.Rect(inner, max(top, hot), r.w - 2 * inner, r.h - inner - max(top, hot)))
        if top < hot:
            pygame.draw.rect(bar, METER_HOT, pygame.Rect(inner, top, r.w - 2 * inner, hot - top))
    return bar, (r.x, r.y)
