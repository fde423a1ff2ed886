"""The wall's look: colours, type sizes and fonts, scaled to the output resolution.

Sizes are given for a 1080p screen and scaled by :func:`scale`, so a 720p and a
4K wall look the same from across the room. The typeface is DejaVu Sans (Debian's
``fonts-dejavu-core``, installed by ``scripts/setup`` and on the image); pygame's
built-in font is the fallback when it is missing.
"""

from __future__ import annotations

import logging
import os
import unicodedata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pygame.font

log = logging.getLogger(__name__)

BACKGROUND = (14, 18, 24)
PANEL = (28, 34, 43)
PANEL_LIGHT = (40, 48, 60)
TEXT = (236, 240, 245)
TEXT_DIM = (150, 160, 175)
ACCENT = (76, 154, 255)  # calm blue: joining, informational
SPEAKER = (61, 220, 132)  # green ring around the active speaker
CALL = (46, 184, 92)  # the call button's green
MUTED = (235, 72, 72)  # red, like the mute LED
WARNING = (255, 176, 32)  # amber: reconnecting
ERROR = (235, 72, 72)
LABEL_BG = (0, 0, 0, 150)
DIM_OVERLAY = (8, 10, 14, 170)

AVATAR_COLOURS = (
    (94, 129, 244),
    (236, 112, 99),
    (72, 201, 176),
    (245, 176, 65),
    (175, 122, 197),
    (93, 173, 226),
)

FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu")
REGULAR, BOLD = "DejaVuSans.ttf", "DejaVuSans-Bold.ttf"


def scale(size: tuple[int, int]) -> float:
    """How much larger than 1080p this output is (0.667 at 720p, 2.0 at 4K)."""
    return min(size[0] / 1920, size[1] / 1080)


def avatar_colour(key: str) -> tuple[int, int, int]:
    """A stable colour per participant, so a camera-off card is recognisable."""
    return AVATAR_COLOURS[sum(key.encode()) % len(AVATAR_COLOURS)]


def initials(name: str) -> str:
    parts = [p for p in name.replace("-", " ").replace("_", " ").split() if p]
    if not parts:
        return "?"
    if len(parts) == 1:
        return parts[0][:2].upper()
    return (parts[0][0] + parts[-1][0]).upper()


def printable(text: str) -> str:
    """``text`` as SDL_ttf can draw it: control characters (NUL, ESC, ...) dropped, lone
    surrogates replaced. Names and rooms come from other participants over the network; one
    NUL would otherwise fail every frame of the wall."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        category = unicodedata.category(ch)
        if category == "Cs":
            out.append("\ufffd")
        elif category != "Cc":
            out.append(ch)
    return "".join(out)


class Fonts:
    """Font objects by (weight, pixel size), created once; needs ``pygame.font`` only."""

    def __init__(self, path: str = "") -> None:
        import pygame.font

        if not pygame.font.get_init():
            pygame.font.init()
        self._regular, self._bold = _font_files(path)
        if self._regular is None:
            log.warning("DejaVu Sans not found; using pygame's built-in font (install fonts-dejavu-core)")
        self._fonts: dict[tuple[int, bool], pygame.font.Font] = {}  # per instance, freed with it

    def get(self, px: int, bold: bool = False) -> pygame.font.Font:
        key = (px, bold)
        font = self._fonts.get(key)
        if font is None:
            font = self._fonts[key] = self._open(px, bold)
        return font

    def _open(self, px: int, bold: bool) -> pygame.font.Font:
        import pygame.font

        px = max(8, int(px))
        path = self._bold if bold else self._regular
        font = pygame.font.Font(path, px)
        if bold and path is None:
            font.bold = True
        return font

    def render(self, text: str, px: int, colour, bold: bool = False):
        return self.get(int(px), bold).render(printable(text), True, colour)

    def fit(self, text: str, px: int, max_width: int, bold: bool = False) -> str:
        """``text`` (made :func:`printable`) shortened with an ellipsis so it fits ``max_width`` pixels."""
        text = printable(text)
        font = self.get(int(px), bold)
        if font.size(text)[0] <= max_width:
            return text
        while text and font.size(text + "…")[0] > max_width:
            text = text[:-1]
        return text + "…" if text else ""


def _font_files(path: str) -> tuple[str | None, str | None]:
    if path:
        if not os.path.isfile(path):
            from appliance.errors import DeviceError

            raise DeviceError("font", "display.font", f"{path} does not exist; leave it empty for DejaVu Sans")
        return path, path
    for folder in FONT_DIRS:
        regular, bold = os.path.join(folder, REGULAR), os.path.join(folder, BOLD)
        if os.path.exists(regular):
            return regular, bold if os.path.exists(bold) else regular
    return None, None
