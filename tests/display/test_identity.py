"""A tile says who a participant is when its name does not: the account, on a line of its own."""

from __future__ import annotations

import time

import numpy as np
import pytest
from wallmesh_pixels import near, pixels

from appliance.display import theme
from appliance.display.compositor import Compositor
from appliance.display.config import DisplayConfig
from appliance.display.layout import Rect
from appliance.display.screen import SurfaceScreen
from appliance.display.tiles import tile_rects
from appliance.wall.model import Tile, WallModel
from appliance.wall.states import UnitState

SIZE = (1280, 720)


def shot(*tiles: Tile):
    comp = Compositor(SurfaceScreen(SIZE), DisplayConfig(self_view=False))
    model = WallModel(state=UnitState.IN_CALL, room="boardroom", unit_name="Wall 1", tiles=list(tiles),
                      now=time.mktime((2026, 11, 26, 9, 41, 0, 0, 0, -1)))
    comp.draw(model)
    return pixels(comp.screen.surface)


def changed(a, b) -> Rect | None:
    """The bounding box of the pixels that differ between two shots."""
    rows, cols = np.nonzero((a != b).any(axis=2))
    if rows.size == 0:
        return None
    return Rect(int(cols.min()), int(rows.min()), int(cols.max() - cols.min() + 1), int(rows.max() - rows.min() + 1))


@pytest.mark.parametrize(
    "name, account, kind, line",
    [
        ("alice", "bob", "user", "signed in as bob"),
        ("alice (bob)", "mallory", "user", "signed in as mallory"),
        ("Room 4", "wall-7f3a", "device", "unit wall-7f3a"),
        ("alice", "alice", "user", ""),
        ("Wall 1", "wall-1", "device", ""),  # the same name, written as an id
        ("alice", "", "user", ""),  # an older server: no account known
    ],
)
def test_the_identity_line(name, account, kind, line) -> None:
    assert Tile("p1", name, account=account, kind=kind).identity == line


def test_a_tile_shows_the_account_above_the_name() -> None:
    plain = shot(Tile("p1", "alice", camera=False))
    bob = shot(Tile("p1", "alice", account="bob", kind="user", camera=False))
    carol = shot(Tile("p1", "alice", account="carol", kind="user", camera=False))
    same = shot(Tile("p1", "alice", account="alice", kind="user", camera=False))
    assert np.array_equal(plain, same), "no line when the name is the account"
    box = changed(plain, bob)
    assert box is not None, "the account is drawn"
    (rect,) = tile_rects(SIZE, 1)
    assert rect.x <= box.x and box.right <= rect.x + rect.w // 2, "at the tile's left"
    assert rect.y + rect.h * 0.75 <= box.y and box.bottom <= rect.bottom, "at its bottom, with the name"
    assert near(bob[box.y : box.bottom, box.x : box.right], theme.TEXT_DIM, 30) > 50, "in the quieter colour"
    assert not np.array_equal(bob[box.y : box.bottom, box.x : box.right], carol[box.y : box.bottom, box.x : box.right]), (
        "the line is the account's own text"
    )
    # above the name pill, not on it: the name's own pixels are where they were
    name_rows = changed(shot(Tile("p1", "alice", camera=False)), shot(Tile("p1", "alicia", camera=False)))
    assert name_rows is not None and box.bottom <= name_rows.y


def test_a_name_cannot_draw_the_identity_line() -> None:
    """'alice (bob)' as a name is one pill; bob's account is a second line that no name makes."""
    faked = shot(Tile("p1", "alice (bob)", account="mallory", kind="user", camera=False))
    real = shot(Tile("p1", "alice", account="bob", kind="user", camera=False))
    assert not np.array_equal(faked, real)
    plain = shot(Tile("p1", "alice (bob)", camera=False))
    assert changed(plain, faked) is not None, "the real account is still drawn above the faked name"
