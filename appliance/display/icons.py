"""Icons drawn with pygame primitives: microphone off, camera off, signal bars, call, warning.

Each icon is drawn four times larger and smooth-scaled down, which gives clean
anti-aliased edges without image files. The results are cached by size and
colour; they are small surfaces with an alpha channel.
"""

from __future__ import annotations

from functools import lru_cache

import pygame

SS = 4  # supersampling factor


def _canvas(px: int) -> pygame.Surface:
    return pygame.Surface((px * SS, px * SS), pygame.SRCALPHA)


def _done(big: pygame.Surface, px: int) -> pygame.Surface:
    return pygame.transform.smoothscale(big, (px, px))


@lru_cache(maxsize=128)
def mic_off(px: int, colour=(255, 255, 255)) -> pygame.Surface:
    """A microphone with a slash through it."""
    s = _canvas(px)
    u = px * SS / 24
    w = max(1, int(2 * u))
    pygame.draw.rect(s, colour, pygame.Rect(9 * u, 3 * u, 6 * u, 11 * u), border_radius=int(3 * u))
    pygame.draw.arc(s, colour, pygame.Rect(5.5 * u, 4 * u, 13 * u, 13 * u), 3.3, 6.12, w)
    pygame.draw.line(s, colour, (12 * u, 17 * u), (12 * u, 21 * u), w)
    pygame.draw.line(s, colour, (8 * u, 21 * u), (16 * u, 21 * u), w)
    pygame.draw.line(s, (0, 0, 0, 0), (3 * u, 2 * u), (21 * u, 22 * u), int(5 * u))
    pygame.draw.line(s, colour, (4 * u, 3 * u), (20 * u, 21 * u), w)
    return _done(s, px)


@lru_cache(maxsize=128)
def camera_off(px: int, colour=(255, 255, 255)) -> pygame.Surface:
    """A video camera with a slash through it."""
    s = _canvas(px)
    u = px * SS / 24
    w = max(1, int(2 * u))
    pygame.draw.rect(s, colour, pygame.Rect(2 * u, 7 * u, 14 * u, 10 * u), w, border_radius=int(2 * u))
    pygame.draw.polygon(s, colour, [(16 * u, 10.5 * u), (22 * u, 7 * u), (22 * u, 17 * u), (16 * u, 13.5 * u)])
    pygame.draw.line(s, (0, 0, 0, 0), (2 * u, 2 * u), (22 * u, 22 * u), int(5 * u))
    pygame.draw.line(s, colour, (3 * u, 3 * u), (21 * u, 21 * u), w)
    return _done(s, px)


@lru_cache(maxsize=128)
def signal(px: int, level: int, on=(255, 255, 255), off=(255, 255, 255, 70)) -> pygame.Surface:
    """Four bars of rising height; ``level`` 0–3 lights level+1 bars, -1 shows them all dim."""
    s = _canvas(px)
    u = px * SS / 24
    lit = level + 1 if level >= 0 else 0
    for i in range(4):
        h = (5 + 5 * i) * u
        rect = pygame.Rect((2 + 5.5 * i) * u, 22 * u - h, 4 * u, h)
        pygame.draw.rect(s, on if i < lit else off, rect, border_radius=int(1 * u))
    return _done(s, px)


@lru_cache(maxsize=32)
def call(px: int, colour, fg=(255, 255, 255)) -> pygame.Surface:
    """A round call button with a handset, like the one on the wall unit."""
    s = _canvas(px)
    u = px * SS / 24
    pygame.draw.circle(s, colour, (12 * u, 12 * u), 12 * u)
    # an old-style handset: a thick arch with an ear and a mouth piece at its ends
    w = max(1, int(3.2 * u))
    pygame.draw.arc(s, fg, pygame.Rect(5.5 * u, 6.5 * u, 13 * u, 11 * u), 0.35, 2.79, w)
    pygame.draw.rect(s, fg, pygame.Rect(4.6 * u, 10.5 * u, 5 * u, 4 * u), border_radius=int(1.6 * u))
    pygame.draw.rect(s, fg, pygame.Rect(14.4 * u, 10.5 * u, 5 * u, 4 * u), border_radius=int(1.6 * u))
    return _done(s, px)


@lru_cache(maxsize=32)
def warning(px: int, colour, fg=(20, 20, 20)) -> pygame.Surface:
    """A rounded warning triangle with an exclamation mark."""
    s = _canvas(px)
    u = px * SS / 24
    pts = [(12 * u, 2 * u), (23 * u, 21.5 * u), (1 * u, 21.5 * u)]
    pygame.draw.polygon(s, colour, pts)
    pygame.draw.lines(s, colour, True, pts, int(1.5 * u))
    pygame.draw.rect(s, fg, pygame.Rect(10.8 * u, 8 * u, 2.4 * u, 7.5 * u), border_radius=int(1.2 * u))
    pygame.draw.circle(s, fg, (12 * u, 18.3 * u), 1.4 * u)
    return _done(s, px)


def spinner(px: int, phase: int, colour, steps: int = 12) -> pygame.Surface:
    """A ring of dots, the brightest at ``phase`` (0..steps-1); drawn per frame (not cached)."""
    return _spinner(px, phase % steps, colour, steps)


@lru_cache(maxsize=64)
def _spinner(px: int, phase: int, colour, steps: int) -> pygame.Surface:
    import math

    s = _canvas(px)
    c = px * SS / 2
    r = c * 0.78
    dot = c * 0.14
    for i in range(steps):
        age = (phase - i) % steps
        alpha = max(40, 255 - age * 255 // steps)
        a = 2 * math.pi * i / steps - math.pi / 2
        pygame.draw.circle(s, (*colour[:3], alpha), (c + r * math.cos(a), c + r * math.sin(a)), dot)
    return _done(s, px)
