"""Pure geometry of the wall: where the top bar, the tiles and the self-view go.

No pygame here: rectangles are plain ``(x, y, w, h)`` tuples of ints, so layouts
are tested on their own for every participant count and screen size. Tiles
keep a 16:9 shape (what the cameras send is letterboxed into them by
:func:`fit`, never stretched); the grid picks the arrangement with the largest
tiles, and a last row with fewer tiles is centred.
"""

from __future__ import annotations

import math
from typing import NamedTuple

TILE_ASPECT = 16 / 9


class Rect(NamedTuple):
    x: int
    y: int
    w: int
    h: int

    @property
    def right(self) -> int:
        return self.x + self.w

    @property
    def bottom(self) -> int:
        return self.y + self.h

    @property
    def center(self) -> tuple[int, int]:
        return self.x + self.w // 2, self.y + self.h // 2

    def contains(self, other: Rect) -> bool:
        return other.x >= self.x and other.y >= self.y and other.right <= self.right and other.bottom <= self.bottom

    def overlaps(self, other: Rect) -> bool:
        return self.x < other.right and other.x < self.right and self.y < other.bottom and other.y < self.bottom


class Metrics(NamedTuple):
    """Spacing for one output size (all in pixels)."""

    scale: float
    margin: int
    gap: int
    bar: int
    radius: int


def metrics(size: tuple[int, int]) -> Metrics:
    s = min(size[0] / 1920, size[1] / 1080)
    return Metrics(s, max(8, round(28 * s)), max(6, round(16 * s)), max(36, round(72 * s)), max(6, round(14 * s)))


def grid_area(size: tuple[int, int]) -> Rect:
    """The part of the screen below the top bar where tiles go."""
    m = metrics(size)
    top = m.bar
    return Rect(m.margin, top, size[0] - 2 * m.margin, size[1] - top - m.margin)


def grid_shape(n: int, area: Rect, gap: int, aspect: float = TILE_ASPECT) -> tuple[int, int]:
    """(columns, rows) giving the largest tiles for ``n`` participants in ``area``."""
    if n <= 0:
        return (0, 0)
    best: tuple[float, int, int, int] | None = None
    for cols in range(1, n + 1):
        rows = math.ceil(n / cols)
        w = min((area.w - gap * (cols - 1)) / cols, (area.h - gap * (rows - 1)) / rows * aspect)
        empty = cols * rows - n
        key = (round(w, 1), -empty, cols)
        if best is None or key > best[:3]:
            best = (key[0], key[1], cols, rows)
    assert best is not None  # n >= 1, so the loop ran
    return best[2], best[3]


def grid(n: int, area: Rect, gap: int, aspect: float = TILE_ASPECT) -> list[Rect]:
    """Rectangles for ``n`` tiles, row by row, centred in ``area``; none overlap."""
    if n <= 0:
        return []
    cols, rows = grid_shape(n, area, gap, aspect)
    w = min((area.w - gap * (cols - 1)) / cols, (area.h - gap * (rows - 1)) / rows * aspect)
    h = w / aspect
    tw, th = int(w), int(h)
    block_h = rows * th + (rows - 1) * gap
    y0 = area.y + (area.h - block_h) // 2
    rects: list[Rect] = []
    for row in range(rows):
        count = min(cols, n - row * cols)
        row_w = count * tw + (count - 1) * gap
        x0 = area.x + (area.w - row_w) // 2
        rects.extend(Rect(x0 + col * (tw + gap), y0 + row * (th + gap), tw, th) for col in range(count))
    return rects


def grid_beside(n: int, area: Rect, gap: int, avoid: Rect | None, aspect: float = TILE_ASPECT) -> list[Rect]:
    """Like :func:`grid`, but no tile covers ``avoid`` (the self-view corner).

    When the plain grid would overlap it, the grid gives up either the column
    or the rows beside the corner, whichever leaves the larger tiles.
    """
    rects = grid(n, area, gap, aspect)
    if avoid is None or not any(r.overlaps(avoid) for r in rects):
        return rects
    narrower = Rect(area.x, area.y, max(1, avoid.x - gap - area.x), area.h)
    shorter = Rect(area.x, area.y, area.w, max(1, avoid.y - gap - area.y))
    options = [grid(n, a, gap, aspect) for a in (narrower, shorter)]
    return max(options, key=lambda rs: rs[0].w if rs else 0)


def fit(src_w: int, src_h: int, box: Rect) -> Rect:
    """The largest rectangle of the source's shape inside ``box``, centred (letterbox)."""
    if src_w <= 0 or src_h <= 0 or box.w <= 0 or box.h <= 0:
        return Rect(box.x, box.y, 0, 0)
    s = min(box.w / src_w, box.h / src_h)
    w, h = max(1, round(src_w * s)), max(1, round(src_h * s))
    return Rect(box.x + (box.w - w) // 2, box.y + (box.h - h) // 2, w, h)


def self_view(size: tuple[int, int], fraction: float, aspect: float = TILE_ASPECT) -> Rect:
    """The small self-view in the bottom-right corner, inside the margins."""
    m = metrics(size)
    w = int(size[0] * fraction)
    h = int(w / aspect)
    return Rect(size[0] - m.margin - w, size[1] - m.margin - h, w, h)


def inset(rect: Rect, by: int) -> Rect:
    return Rect(rect.x + by, rect.y + by, max(0, rect.w - 2 * by), max(0, rect.h - 2 * by))
