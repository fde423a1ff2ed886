"""Every full screen of the wall at 720p and 1080p: the right screen, its parts where they belong."""

from __future__ import annotations

import time

import av
import numpy as np
import pytest
from wallmesh_pixels import near, pixels, text_pixels

from appliance.display import theme
from appliance.display.compositor import Compositor
from appliance.display.config import DisplayConfig
from appliance.display.layout import Rect, fit, metrics
from appliance.display.screen import SurfaceScreen
from appliance.display.screens import screen_name
from appliance.display.tiles import tile_rects
from appliance.wall.model import Tile, WallModel
from appliance.wall.states import UnitState

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}


def frame(seed):
    """A checkerboard picture (stays busy when scaled down), tinted by ``seed``."""
    y, x = np.mgrid[0:480, 0:640]
    img = np.zeros((480, 640, 3), np.uint8)
    img[((x // 48) + (y // 48)) % 2 == 0] = (230, 230, 230)
    img[..., seed % 3] = 120
    return av.VideoFrame.from_ndarray(img, format="rgb24")


def render(size, model, snapshot_dir=None, name=None, options=None):
    comp = Compositor(SurfaceScreen(size), options or DisplayConfig(self_view=False))
    scene = comp.draw(model)
    if snapshot_dir:
        comp.save_snapshot(f"{snapshot_dir}/{name}.png")
    return scene, comp.screen.surface


def band(size, top, bottom):
    """A full-width horizontal band between two fractions of the height."""
    return Rect(0, int(size[1] * top), size[0], int(size[1] * (bottom - top)))


@pytest.fixture(params=list(SIZES))
def size(request):
    return request.param, SIZES[request.param]


def model(state, **kw):
    kw.setdefault("room", "boardroom")
    kw.setdefault("unit_name", "Wall 1")
    return WallModel(state=state, now=time.mktime((2026, 11, 26, 9, 41, 0, 0, 0, -1)), **kw)


def test_idle_screen(size, snapshot_dir):
    label, size = size
    scene, shot = render(size, model(UnitState.IDLE), snapshot_dir, f"idle-{label}")
    assert scene.screen == "idle" and scene.slots == []
    centre = pixels(shot, band(size, 0.3, 0.7))
    assert text_pixels(centre) > size[0] * size[1] * 0.01, "a large clock in the middle"
    hint = pixels(shot, band(size, 0.78, 0.95))
    assert near(hint, theme.CALL, 20) > 200, "the green call button"
    assert text_pixels(hint) > 500, "press the call button to join"
    assert near(pixels(shot, band(size, 0.2, 0.35)), theme.TEXT_DIM, 25) > 500, "the room's name"
    footer = pixels(shot, Rect(0, size[1] - size[1] // 12, size[0] // 3, size[1] // 12))
    assert near(footer, theme.TEXT_DIM, 25) > 50, "the unit's name"


def test_idle_clock_changes_the_screen(size):
    _, size = size
    _, a = render(size, model(UnitState.IDLE))
    later = model(UnitState.IDLE)
    later.now += 3600 + 60 * 11
    _, b = render(size, later)
    diff = np.abs(pixels(a).astype(int) - pixels(b).astype(int)).max(axis=2) > 0
    rows = np.nonzero(diff.any(axis=1))[0]
    assert rows.size and rows.min() > size[1] * 0.3 and rows.max() < size[1] * 0.7, "only the clock moved"


def test_joining_screen(size, snapshot_dir):
    label, size = size
    scene, shot = render(size, model(UnitState.JOINING), snapshot_dir, f"joining-{label}")
    assert scene.screen == "joining"
    assert near(pixels(shot, band(size, 0.15, 0.5)), theme.ACCENT, 30) > 100, "spinner"
    assert text_pixels(pixels(shot, band(size, 0.4, 0.65))) > 800, "Joining boardroom…"


def test_alone_screen(size, snapshot_dir):
    label, size = size
    scene, shot = render(size, model(UnitState.IN_CALL), snapshot_dir, f"alone-{label}")
    assert scene.screen == "alone"
    assert text_pixels(pixels(shot, band(size, 0.4, 0.7))) > 800, "waiting for others"
    assert text_pixels(pixels(shot, Rect(0, 0, size[0] // 3, metrics(size).bar))) > 100, "room in the top bar"


def test_alone_with_self_view(size, snapshot_dir):
    label, size = size
    m = model(UnitState.IN_CALL, self_view=frame(1), self_view_time=time.monotonic())
    scene, shot = render(size, m, snapshot_dir, f"alone-self-{label}", DisplayConfig(self_view=True))
    assert [s.key for s in scene.slots] == ["__self__"]
    assert pixels(shot, fit(640, 480, scene.slots[0].box)).std() > 40


def test_reconnecting_without_calls(size, snapshot_dir):
    label, size = size
    scene, shot = render(size, model(UnitState.RECONNECTING), snapshot_dir, f"reconnecting-{label}")
    assert scene.screen == "reconnecting"
    assert near(pixels(shot, band(size, 0.15, 0.5)), theme.WARNING, 30) > 100
    assert text_pixels(pixels(shot, band(size, 0.4, 0.7))) > 800


def test_reconnecting_keeps_the_calls_on_screen(size, snapshot_dir):
    label, size = size
    tiles = [Tile(f"p{i}", f"Peer {i}", frame=frame(i), frame_time=time.monotonic()) for i in range(3)]
    scene, shot = render(size, model(UnitState.RECONNECTING, tiles=tiles), snapshot_dir, f"reconnecting-call-{label}")
    assert scene.screen == "call" and len(scene.slots) == 3
    for rect in tile_rects(size, 3):
        assert pixels(shot, fit(640, 480, rect)).std() > 40, "calls keep running"
    assert near(pixels(shot, Rect(0, 0, size[0], metrics(size).bar)), theme.WARNING, 20) > 1000, "amber banner"


def test_error_screen(size, snapshot_dir):
    label, size = size
    m = model(UnitState.ERROR, message="Camera not found — call IT")
    scene, shot = render(size, m, snapshot_dir, f"error-{label}")
    assert scene.screen == "error"
    assert near(pixels(shot, band(size, 0.15, 0.5)), theme.ERROR, 30) > 500, "warning sign"
    assert text_pixels(pixels(shot, band(size, 0.45, 0.75))) > 800, "the sentence"


def test_long_error_messages_wrap_on_screen(size):
    _, size = size
    long = "The server could not be reached for ten minutes; check the network cable, then call IT on 4242. " * 2
    _, shot = render(size, model(UnitState.ERROR, message=long))
    text_cols = np.nonzero((np.abs(pixels(shot).astype(int) - theme.TEXT).max(axis=2) < 30).any(axis=0))[0]
    assert text_cols.min() > size[0] * 0.05 and text_cols.max() < size[0] * 0.95, "wrapped inside the screen"


def test_screen_names():
    assert screen_name(WallModel(state=UnitState.IN_CALL, tiles=[Tile("a")])) == "call"
    assert screen_name(WallModel(state="in_call")) == "alone"
    assert screen_name(WallModel(state="error")) == "error"


def test_muted_unit_shows_it_in_the_top_bar(size, snapshot_dir):
    label, size = size
    tiles = [Tile("p0", "Peer", frame=frame(0), frame_time=time.monotonic())]
    _, shot = render(size, model(UnitState.IN_CALL, tiles=tiles, muted=True), snapshot_dir, f"muted-{label}")
    bar = pixels(shot, Rect(size[0] // 3, 0, size[0] // 3, metrics(size).bar))
    assert near(bar, theme.MUTED, 10) > 1000, "'microphone muted' pill"


def test_4k_wall(snapshot_dir):
    size = (3840, 2160)
    tiles = [Tile(f"p{i}", f"Peer {i}", frame=frame(i), frame_time=time.monotonic()) for i in range(5)]
    scene, shot = render(size, model(UnitState.IN_CALL, tiles=tiles), snapshot_dir, "call-5-4k")
    for rect in tile_rects(size, 5):
        assert pixels(shot, fit(640, 480, rect)).std() > 40
        label = pixels(shot, Rect(rect.x, rect.bottom - rect.h // 6, rect.w // 2, rect.h // 6))
        assert text_pixels(label) > 200, "labels scale up with the screen"
    _, idle = render(size, model(UnitState.IDLE))
    assert text_pixels(pixels(idle, band(size, 0.3, 0.7))) > size[0] * size[1] * 0.01


def test_idle_says_when_the_next_call_starts_muted(size, snapshot_dir):
    label, size = size
    _, plain = render(size, model(UnitState.IDLE))
    _, shot = render(size, model(UnitState.IDLE, muted=True, camera=False), snapshot_dir, f"idle-muted-{label}")
    top = band(size, 0, 0.12)
    assert near(pixels(plain, top), theme.MUTED, 10) == 0
    assert near(pixels(shot, top), theme.MUTED, 10) > 500, "'microphone muted' pill"
    assert near(pixels(shot, top), theme.PANEL_LIGHT, 6) > 300, "'camera off' pill"
