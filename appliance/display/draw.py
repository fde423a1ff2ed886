"""Small drawing helpers shared by the screens and the tiles: text, pills, wrapping."""

from __future__ import annotations

import pygame

from appliance.display.theme import Fonts, printable


def text(surface, fonts: Fonts, s: str, px: float, colour, pos, anchor: str = "topleft", bold: bool = False):
    """Blit ``s`` with its ``anchor`` point (a pygame.Rect attribute name) at ``pos``; returns its rect."""
    img = fonts.render(s, int(px), colour, bold)
    rect = img.get_rect(**{anchor: (round(pos[0]), round(pos[1]))})
    surface.blit(img, rect)
    return rect


def wrap(fonts: Fonts, s: str, px: float, max_width: int, bold: bool = False) -> list[str]:
    """Break ``s`` into lines no wider than ``max_width`` (words longer than a line are cut)."""
    font = fonts.get(int(px), bold)
    lines: list[str] = []
    for raw in s.splitlines() or [""]:
        paragraph = printable(raw)
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}".strip()
            if font.size(candidate)[0] <= max_width or not line:
                line = candidate if font.size(candidate)[0] <= max_width else fonts.fit(candidate, int(px), max_width, bold)
            else:
                lines.append(line)
                line = word if font.size(word)[0] <= max_width else fonts.fit(word, int(px), max_width, bold)
        lines.append(line)
    return lines


def pill(fonts: Fonts, label: str, px: float, fg, bg, icon: pygame.Surface | None = None, bold: bool = False):
    """A rounded label (optionally with an icon before the text) on its own alpha surface."""
    img = fonts.render(label, int(px), fg, bold) if label else None
    pad = max(4, int(px * 0.55))
    gap = max(3, int(px * 0.4)) if (icon is not None and img is not None) else 0
    h = max(img.get_height() if img else 0, icon.get_height() if icon else 0) + pad
    w = (icon.get_width() if icon else 0) + gap + (img.get_width() if img else 0) + 2 * pad
    surf = pygame.Surface((w, h), pygame.SRCALPHA)
    pygame.draw.rect(surf, bg, surf.get_rect(), border_radius=h // 2)
    x = pad
    if icon is not None:
        surf.blit(icon, icon.get_rect(midleft=(x, h // 2)))
        x += icon.get_width() + gap
    if img is not None:
        surf.blit(img, img.get_rect(midleft=(x, h // 2)))
    return surf


def alpha_rect(size, colour, radius: int = 0) -> pygame.Surface:
    surf = pygame.Surface(size, pygame.SRCALPHA)
    pygame.draw.rect(surf, colour, surf.get_rect(), border_radius=radius)
    return surf
