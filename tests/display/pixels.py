"""Reading composed frames back: pixel checks for the display and wall tests.

Snapshot tests check a frame's structure rather than exact pixels: is there a
picture in this tile (variance), is the label's text there (pixels of the text
colour), is the muted dot red. These helpers keep such checks short. Tests import
them as ``wallmesh_pixels`` (loaded by ``tests/display/conftest.py`` and
``tests/controls/conftest.py``).
"""

from __future__ import annotations

import numpy as np

from appliance.display import theme
from appliance.display.layout import Rect


def pixels(surface, rect: Rect | None = None) -> np.ndarray:
    """An HxWx3 copy of ``rect`` (or the whole surface) of a pygame surface."""
    import pygame

    arr = pygame.surfarray.array3d(surface).transpose(1, 0, 2)
    if rect is not None:
        arr = arr[max(0, rect.y) : rect.y + rect.h, max(0, rect.x) : rect.x + rect.w]
    return arr


def near(arr: np.ndarray, colour, tol: int = 40) -> int:
    """How many pixels of ``arr`` are within ``tol`` (per channel) of ``colour``."""
    if arr.size == 0:
        return 0
    return int((np.abs(arr.astype(int) - np.array(colour[:3])).max(axis=2) <= tol).sum())


def text_pixels(arr: np.ndarray) -> int:
    """Pixels in the wall's text colour (labels, titles)."""
    return near(arr, theme.TEXT, 30)
