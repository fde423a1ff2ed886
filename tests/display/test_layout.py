"""Pure geometry of the wall: grids for 1–5 tiles at 720p, 1080p and 4K, letterboxing."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.display.layout import (
    TILE_ASPECT,
    Rect,
    fit,
    grid,
    grid_area,
    grid_shape,
    self_view,
)
from appliance.display.tiles import tile_rects
from appliance.wall.model import Quality, quality_from

SIZES = [(1280, 720), (1920, 1080), (3840, 2160)]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("with_self", [False, True])
def test_grid_is_clean(size, n, with_self):
    rects = tile_rects(size, n, 0.2 if with_self else None)
    area = grid_area(size)
    assert len(rects) == n
    for r in rects:
        assert area.contains(r), (r, area)
        assert abs(r.w / r.h - TILE_ASPECT) < 0.02, "tiles keep 16:9"
    for a, b in itertools.combinations(rects, 2):
        assert not a.overlaps(b)
    if with_self:
        corner = self_view(size, 0.2)
        assert not any(r.overlaps(corner) for r in rects), "no tile under the self-view"
    # the grid uses the screen: the tiles cover a good part of the area
    covered = sum(r.w * r.h for r in rects) / (area.w * area.h)
    assert covered > (0.35 if with_self else 0.45), covered


def test_same_layout_scales_with_the_screen():
    small = tile_rects((1280, 720), 4)
    big = tile_rects((3840, 2160), 4)
    for a, b in zip(small, big):
        assert abs(b.w / a.w - 3) < 0.05 and abs(b.x / a.x - 3) < 0.1


@pytest.mark.parametrize("n,shape", [(1, (1, 1)), (2, (2, 1)), (3, (2, 2)), (4, (2, 2)), (5, (3, 2))])
def test_grid_shapes(n, shape):
    assert grid_shape(n, grid_area((1920, 1080)), 16) == shape


def test_short_last_row_is_centred():
    area = grid_area((1920, 1080))
    rects = grid(5, area, 16)
    top, bottom = rects[:3], rects[3:]
    assert {r.y for r in top} != {r.y for r in bottom}
    left_gap = bottom[0].x - area.x
    right_gap = area.right - bottom[-1].right
    assert abs(left_gap - right_gap) <= 1
    assert abs((top[0].x - area.x) - (area.right - top[-1].right)) <= 1


def test_no_tiles():
    assert grid(0, Rect(0, 0, 100, 100), 4) == []


def test_fit_letterboxes_4_3_into_16_9():
    box = Rect(100, 50, 1600, 900)
    inner = fit(640, 480, box)
    assert inner.h == 900 and inner.w == 1200
    assert inner.x == 100 + 200 and inner.y == 50
    wide = fit(1920, 800, Rect(0, 0, 640, 480))
    assert wide.w == 640 and wide.y > 0


@given(
    st.integers(16, 4096), st.integers(16, 4096),
    st.integers(0, 2000), st.integers(0, 2000), st.integers(1, 3840), st.integers(1, 2160),
)
def test_fit_never_stretches_and_stays_inside(sw, sh, x, y, w, h):
    box = Rect(x, y, w, h)
    inner = fit(sw, sh, box)
    assert box.contains(inner)
    assert inner.w == box.w or inner.h == box.h or min(inner.w, inner.h) <= 1
    if min(inner.w, inner.h) >= 20:
        assert abs(inner.w / inner.h - sw / sh) <= (sw / sh) * (2 / min(inner.w, inner.h)) + 1e-9


def test_quality_levels():
    assert quality_from(None, None) == Quality.UNKNOWN
    assert quality_from(0.0, 0.02) == Quality.GOOD
    assert quality_from(0.02, 0.02) == Quality.FAIR
    assert quality_from(0.0, 0.4) == Quality.POOR
    assert quality_from(0.2, 0.02) == Quality.BAD
    assert quality_from(0.0, 2.0) == Quality.BAD
    assert quality_from(5, None) == Quality.POOR, "percent is accepted"
    assert quality_from(None, 0.1) == Quality.GOOD
