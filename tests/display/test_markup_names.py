"""Names that are markup (``<img onerror>``, ``<script>``) are drawn on the wall as the
characters they are: nothing is parsed, stripped or interpreted, as in the browser client."""

from __future__ import annotations

import time

import numpy as np
import pytest
from wallmesh_pixels import pixels

from appliance import protocol
from appliance.display.compositor import Compositor
from appliance.display.config import DisplayConfig
from appliance.display.screen import SurfaceScreen
from appliance.wall.model import Tile, WallModel
from appliance.wall.states import UnitState

SIZE = (1280, 720)

# each name, and what a browser would show if it took the name for markup
MARKUP = [
    ('<img src=x onerror="window.__pwned=1">', ""),
    ("<script>window.__pwned=2</script>", ""),
    ('"><svg onload="window.__pwned=3">', '">'),
    ("<b>bold</b>", "bold"),
]


def shot(name: str, account: str = ""):
    comp = Compositor(SurfaceScreen(SIZE), DisplayConfig(self_view=False))
    tile = Tile("p1", protocol.clean_name(name), account=account, kind="user", camera=False)
    model = WallModel(state=UnitState.IN_CALL, room="boardroom", unit_name="Wall 1", tiles=[tile],
                      now=time.mktime((2026, 11, 26, 9, 41, 0, 0, 0, -1)))
    comp.draw(model)
    assert comp.frames == 1
    return pixels(comp.screen.surface)


@pytest.mark.parametrize("name, as_html", MARKUP)
def test_a_markup_name_is_drawn_as_its_characters(name, as_html) -> None:
    drawn = shot(name)
    assert not np.array_equal(drawn, shot(as_html)), "the markup was interpreted or stripped"
    # its angle brackets are glyphs on the wall: another character in their place draws otherwise
    assert not np.array_equal(drawn, shot(name.replace("<", "(").replace(">", ")")))
    assert np.array_equal(drawn, shot(name)), "drawing is deterministic, so the comparisons mean something"


def test_a_markup_account_is_drawn_as_its_characters() -> None:
    plain = shot("alice", account="<b>mallory</b>")
    assert not np.array_equal(plain, shot("alice", account="mallory"))
    assert not np.array_equal(plain, shot("alice", account="(b)mallory(/b)"))
