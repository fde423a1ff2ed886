"""The compositor's frames, checked by structure (where things are, that they are drawn)."""

from __future__ import annotations

import time

import av
import numpy as np
import pygame
import pytest
from wallmesh_pixels import near, pixels, text_pixels

from appliance.display import theme
from appliance.display.compositor import Compositor
from appliance.display.config import DisplayConfig
from appliance.display.layout import Rect, fit, self_view
from appliance.display.screen import SurfaceScreen, open_screen
from appliance.display.tiles import QUALITY_COLOURS, tile_rects
from appliance.wall.model import Quality, Tile, WallModel
from appliance.wall.states import UnitState

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}
NAMES = ["Lisbon office", "Anna Berg", "Tokyo", "Marcus", "Helsinki boardroom"]
NO_SELF = DisplayConfig(self_view=False)


def make_picture(seed, w=640, h=480):
    y, x = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = (x * 200 // w + seed * 50) % 256
    img[..., 1] = (y * 200 // h + seed * 90) % 256
    img[..., 2] = np.where(((x // 40) + (y // 40)) % 2 == 0, 40 + seed * 30 % 200, 220)
    return img


def make_video_frame(seed, w=640, h=480):
    return av.VideoFrame.from_ndarray(make_picture(seed, w, h), format="rgb24").reformat(format="yuv420p")


def compositor(size, options=NO_SELF):
    return Compositor(SurfaceScreen(size), options)


def call(n, **kw):
    now = time.monotonic()
    tiles = [Tile(f"peer-{i}", NAMES[i], frame=make_video_frame(i), frame_time=now) for i in range(n)]
    return WallModel(state=UnitState.IN_CALL, room="boardroom", unit_name="Wall 1", tiles=tiles, **kw)


@pytest.mark.parametrize("size_name", list(SIZES))
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_call_grid_structure(size_name, n, snapshot_dir):
    size = SIZES[size_name]
    comp = compositor(size)
    scene = comp.draw(call(n))
    comp.save_snapshot(f"{snapshot_dir}/call-{n}-{size_name}.png")
    assert scene.screen == "call"
    shot = comp.screen.surface
    rects = tile_rects(size, n)
    means = []
    for i, rect in enumerate(rects):
        video = fit(640, 480, rect)
        inner = pixels(shot, Rect(video.x + 10, video.y + 10, video.w - 20, video.h // 2))
        assert inner.std() > 20, f"tile {i} has a picture"
        means.append(inner.reshape(-1, 3).mean(axis=0))
        # the name label sits at the tile's bottom-left corner
        label = pixels(shot, Rect(rect.x, rect.bottom - rect.h // 6, rect.w // 2, rect.h // 6))
        assert text_pixels(label) > 30, f"tile {i} shows its name"
        # letterbox: the panel colour shows left of the 4:3 picture, nothing is stretched
        bar = pixels(shot, Rect(rect.x + 2, rect.y + rect.h // 3, max(1, video.x - rect.x - 4), rect.h // 3))
        assert near(bar, theme.PANEL, 6) > 0.9 * bar.shape[0] * bar.shape[1]
    for a in range(len(means)):
        for b in range(a + 1, len(means)):
            assert np.abs(means[a] - means[b]).max() > 5, "each tile shows its own peer"
    # the top bar names the room and counts the people
    bar = pixels(shot, Rect(0, 0, size[0] // 3, tile_rects(size, n)[0].y))
    assert text_pixels(bar) > 100


def test_tile_states_are_drawn(snapshot_dir):
    size = SIZES["1080p"]
    model = call(5)
    t = model.tiles
    t[0].speaking = True
    t[1].muted = True
    t[2].camera = False
    t[3].reconnecting = True
    t[4].quality = Quality.GOOD
    t[0].quality = Quality.BAD
    comp = compositor(size)
    comp.draw(model)
    comp.save_snapshot(f"{snapshot_dir}/tile-states.png")
    shot = comp.screen.surface
    rects = tile_rects(size, 5)

    ring = pixels(shot, Rect(rects[0].x, rects[0].y, rects[0].w, 3))
    assert near(ring, theme.SPEAKER, 10) > 0.9 * rects[0].w, "active speaker ring"
    assert near(pixels(shot, Rect(rects[1].x, rects[1].y, rects[1].w, 3)), theme.SPEAKER, 10) == 0

    corner = lambda r: Rect(r.x, r.bottom - r.h // 5, r.w // 8, r.h // 5)  # noqa: E731
    assert near(pixels(shot, corner(rects[1])), theme.MUTED, 25) > 50, "muted icon on a red dot"
    assert near(pixels(shot, corner(rects[0])), theme.MUTED, 25) == 0

    card = pixels(shot, rects[2])
    assert near(card, theme.avatar_colour("peer-2"), 8) > 2000, "camera-off card with the avatar"
    assert near(pixels(shot, fit(640, 480, rects[2])), make_picture(2)[240, 320], 3) < 500, "no video when the camera is off"

    plain = compositor(size)
    model.tiles[3].reconnecting = False
    plain.draw(model)
    dimmed = pixels(shot, rects[3]).mean()
    normal = pixels(plain.screen.surface, rects[3]).mean()
    assert dimmed < normal * 0.7, "reconnecting overlay dims the tile"
    assert near(pixels(shot, rects[3]), theme.WARNING, 40) > 100, "reconnecting… text"

    badge = lambda r: Rect(r.right - r.w // 6, r.y, r.w // 6, r.h // 6)  # noqa: E731
    assert near(pixels(shot, badge(rects[4])), QUALITY_COLOURS[Quality.GOOD], 30) > 20
    assert near(pixels(shot, badge(rects[0])), QUALITY_COLOURS[Quality.BAD], 30) > 5
    assert near(pixels(shot, badge(rects[0])), QUALITY_COLOURS[Quality.GOOD], 30) == 0


def test_a_peer_still_connecting_gets_a_clean_card():
    size = SIZES["720p"]
    comp = compositor(size)
    model = call(1)
    model.tiles[0].frame = None
    model.tiles[0].reconnecting = True
    comp.draw(model)
    rect = tile_rects(size, 1)[0]
    assert near(pixels(comp.screen.surface, rect), theme.WARNING, 40) == 0, "no 'Reconnecting…' over the card"
    assert near(pixels(comp.screen.surface, rect), theme.avatar_colour("peer-0"), 8) > 2000


def test_last_frame_freezes_instead_of_going_black():
    size = SIZES["720p"]
    comp = compositor(size)
    model = call(2)
    comp.draw(model)
    rect = fit(640, 480, tile_rects(size, 2)[0])
    before = pixels(comp.screen.surface, rect).copy()
    model.tiles[0].frame = None
    model.tiles[0].frame_time = None
    comp.draw(model)
    assert np.array_equal(pixels(comp.screen.surface, rect), before)


def test_only_the_newest_frame_is_drawn():
    size = SIZES["720p"]
    comp = compositor(size)
    model = call(1)
    comp.draw(model)
    rect = fit(640, 480, tile_rects(size, 1)[0])
    # two frames arrive between draws: only the second is ever converted and shown
    model.tiles[0].frame, model.tiles[0].frame_time = make_video_frame(3), time.monotonic()
    model.tiles[0].frame, model.tiles[0].frame_time = make_video_frame(4), time.monotonic()
    added_before = len(comp.added_ms)
    comp.draw(model)
    assert len(comp.added_ms) == added_before + 1
    shown = pixels(comp.screen.surface, rect).reshape(-1, 3).mean(axis=0)
    expected = make_picture(4).reshape(-1, 3).mean(axis=0)
    assert np.abs(shown - expected).max() < 8
    # the same frame again is not counted as new
    comp.draw(model)
    assert len(comp.added_ms) == added_before + 1


def test_numpy_frames_and_other_sizes():
    size = SIZES["720p"]
    comp = compositor(size)
    model = call(2)
    model.tiles[0].frame = make_picture(1, 1280, 720)  # a 16:9 array fills the tile
    model.tiles[1].frame = make_video_frame(2, 320, 240)
    comp.draw(model)
    rects = tile_rects(size, 2)
    full = pixels(comp.screen.surface, Rect(rects[0].x + 2, rects[0].y + 40, 20, 20))
    assert near(full, theme.PANEL, 6) < 100, "a 16:9 source has no bars"
    assert pixels(comp.screen.surface, fit(320, 240, rects[1])).std() > 20


def test_bad_frames_do_not_crash(caplog):
    comp = compositor(SIZES["720p"])
    model = call(2)
    model.tiles[0].frame = "not a picture"
    model.tiles[1].frame = np.zeros((10, 10), np.uint8)
    comp.draw(model)
    comp.draw(model)
    assert comp.frames == 2
    assert caplog.text.count("not a picture") == 2, "logged once per tile"
    rect = tile_rects(SIZES["720p"], 2)[0]
    assert text_pixels(pixels(comp.screen.surface, rect)) > 100, "a card, not an empty panel"


def test_hostile_names_from_the_network_are_drawn_not_fatal():
    """Names and room come from other participants: a NUL, a lone surrogate or control
    characters must not make every frame fail (which would starve the watchdog)."""
    comp = compositor(SIZES["720p"])
    model = call(3)
    model.tiles[0].name = "Mallory\x00\x00"
    model.tiles[1].name = "Eve \ud800\x1b[2J"
    model.tiles[1].frame = None  # the camera-off card draws the initials too
    model.tiles[2].name = "\x00"
    comp.draw(model)
    assert comp.frames == 1
    rect = tile_rects(SIZES["720p"], 3)[0]

    def differing_pixels(name):  # against the same tile drawn with ``name``
        other = compositor(SIZES["720p"])
        model.tiles[0].name = name
        other.draw(model)
        a, b = pixels(comp.screen.surface, rect).astype(int), pixels(other.screen.surface, rect).astype(int)
        return int((np.abs(a - b).max(axis=2) > 0).sum())

    # the readable part of the name is shown (a few pixels of scaler noise aside), and the check can tell names apart
    assert differing_pixels("Mallory") < 40
    assert differing_pixels("Trent") > 200
    idle = WallModel(state=UnitState.ERROR, room="board\x00room", message="Camera\x00 not found \ud800— call IT")
    comp.draw(idle)
    assert comp.frames == 2


def test_peers_that_leave_are_forgotten():
    comp = compositor(SIZES["720p"])
    model = call(3)
    comp.draw(model)
    model.tiles.pop(1)
    comp.draw(model)
    assert "peer-1" not in comp._pictures


def test_self_view(snapshot_dir):
    size = SIZES["1080p"]
    comp = Compositor(SurfaceScreen(size), DisplayConfig(self_view=True))
    model = call(2, self_view=make_picture(6), self_view_time=time.monotonic())
    comp.draw(model)
    corner = self_view(size, 0.2)
    assert pixels(comp.screen.surface, fit(640, 480, corner)).std() > 20
    assert text_pixels(pixels(comp.screen.surface, corner)) > 20, "'You' label"
    model.camera = False
    model.self_view = None
    comp.draw(model)
    comp.save_snapshot(f"{snapshot_dir}/self-view-camera-off.png")
    area = pixels(comp.screen.surface, corner)
    assert area.std() < 40 and near(area, theme.TEXT_DIM, 30) > 50, "'your camera is off' card"
    top = pixels(comp.screen.surface, Rect(size[0] // 3, 0, size[0] // 3, 70))
    assert near(top, theme.PANEL_LIGHT, 6) > 200, "camera-off pill in the top bar"


def test_unchanged_chrome_is_not_redrawn():
    comp = compositor(SIZES["720p"])
    model = call(3)
    for _ in range(5):
        for t in model.tiles:
            t.frame, t.frame_time = make_video_frame(1), time.monotonic()
        comp.draw(model)
    assert comp.builder.rebuilds == 1
    model.tiles[0].muted = True
    comp.draw(model)
    assert comp.builder.rebuilds == 2


def test_gpu_path_composes_the_same_scene(snapshot_dir):
    screen = open_screen(DisplayConfig(backend="offscreen", renderer="gpu", width=1280, height=720))
    try:
        assert screen.gpu
        comp = Compositor(screen, NO_SELF)
        model = call(3)
        model.tiles[1].muted = True
        comp.draw(model)
        comp.save_snapshot(f"{snapshot_dir}/gpu-call-3.png")
        shot = screen.snapshot()
        assert shot.get_size() == (1280, 720)
        rects = tile_rects((1280, 720), 3)
        for i, rect in enumerate(rects):
            assert pixels(shot, fit(640, 480, rect)).std() > 20, f"tile {i} picture on the GPU path"
            label = pixels(shot, Rect(rect.x, rect.bottom - rect.h // 6, rect.w // 2, rect.h // 6))
            assert text_pixels(label) > 30
        r = rects[1]
        assert near(pixels(shot, Rect(r.x, r.bottom - r.h // 5, r.w // 8, r.h // 5)), theme.MUTED, 25) > 50
        for i, rect in enumerate(rects):  # colours survive the texture upload (no channel swap)
            box = fit(640, 480, rect)
            top = pixels(shot, Rect(box.x, box.y, box.w, box.h // 2)).reshape(-1, 3).mean(axis=0)
            expected = make_picture(i)[:240].reshape(-1, 3).mean(axis=0)
            assert np.abs(top - expected).max() < 12, (i, top, expected)
        model.tiles[0].frame = None  # frozen on the GPU path too
        comp.draw(model)
        assert pixels(screen.snapshot(), fit(640, 480, rects[0])).std() > 20
    finally:
        screen.close()


def test_snapshot_is_a_png(tmp_path):
    comp = compositor(SIZES["720p"])
    comp.draw(call(1))
    comp.save_snapshot(str(tmp_path / "wall.png"))
    assert pygame.image.load(str(tmp_path / "wall.png")).get_size() == (1280, 720)


def test_partial_redraws_match_a_full_redraw():
    """Only tiles with new frames are redrawn; the result must equal composing from scratch."""
    size = SIZES["720p"]
    incremental = compositor(size, DisplayConfig(self_view=True))
    model = call(4, self_view=make_picture(9), self_view_time=time.monotonic())
    model.tiles[1].muted = True
    model.tiles[2].reconnecting = True
    model.tiles[3].speaking = True
    model.notice = "Volume 40%"  # a toast across the bottom tiles
    for step in range(6):
        tile = model.tiles[step % 4]
        tile.frame, tile.frame_time = make_video_frame(step + 10), time.monotonic()
        incremental.draw(model)
    fresh = compositor(size, DisplayConfig(self_view=True))
    fresh.draw(model)
    assert np.array_equal(pixels(incremental.screen.surface), pixels(fresh.screen.surface))


def test_no_self_view_corner_without_a_picture():
    size = SIZES["1080p"]
    comp = Compositor(SurfaceScreen(size), DisplayConfig(self_view=True))
    comp.draw(call(2))
    corner = self_view(size, 0.2)
    assert near(pixels(comp.screen.surface, corner), theme.BACKGROUND, 3) > 0.95 * corner.w * corner.h


def test_notice_toast(snapshot_dir):
    size = SIZES["720p"]
    comp = compositor(size)
    model = call(1)
    comp.draw(model)
    bottom = Rect(size[0] // 3, size[1] - size[1] // 8, size[0] // 3, size[1] // 8)
    before = text_pixels(pixels(comp.screen.surface, bottom))
    model.notice = "Volume 75%"
    comp.draw(model)
    comp.save_snapshot(f"{snapshot_dir}/notice.png")
    assert text_pixels(pixels(comp.screen.surface, bottom)) > before + 100
    model.notice = ""
    comp.draw(model)
    assert text_pixels(pixels(comp.screen.surface, bottom)) == before, "the toast goes away cleanly"


def test_missing_font_names_the_key(tmp_path):
    from appliance.display.theme import Fonts
    from appliance.errors import DeviceError

    with pytest.raises(DeviceError, match="display.font"):
        Fonts(str(tmp_path / "nope.ttf"))


def meter_pixels(comp, size, fraction=0.2):
    from appliance.display.tiles import meter_rect

    r = meter_rect(self_view(size, fraction))
    return pixels(comp.screen.surface, r), r


@pytest.mark.parametrize("camera", [True, False])
def test_mic_meter_in_the_self_view_shows_the_level_or_muted(camera, snapshot_dir):
    from appliance.display.tiles import METER_MUTED

    size = SIZES["1080p"]
    comp = Compositor(SurfaceScreen(size), DisplayConfig(self_view=True))
    model = call(2, self_view=make_picture(6) if camera else None, self_view_time=time.monotonic(), camera=camera)
    model.mic_level = 0.0
    comp.draw(model)
    bar, r = meter_pixels(comp, size)
    assert near(bar, theme.SPEAKER, 20) == 0, "silence: an empty meter"
    fills = []
    for level in (0.25, 0.5, 0.75):
        model.mic_level = level
        comp.draw(model)
        bar, r = meter_pixels(comp, size)
        rows = np.nonzero((np.abs(bar.astype(int) - np.array(theme.SPEAKER)).max(axis=2) <= 20).any(axis=1))[0]
        assert len(rows), f"level {level}: green in the meter"
        assert rows.max() >= r.h - r.h // 8, "the meter fills from the bottom"
        fills.append(len(rows) / r.h)
    assert fills[0] < fills[1] < fills[2] and abs(fills[1] - 0.5) < 0.1, fills
    comp.save_snapshot(f"{snapshot_dir}/mic-meter-{'camera' if camera else 'card'}.png")
    assert comp.builder.rebuilds == 1, "a meter reading redraws the meter, not the scene"
    model.muted = True  # a muted unit's meter shows muted whatever the microphone hears
    comp.draw(model)
    bar, _ = meter_pixels(comp, size)
    assert near(bar, theme.SPEAKER, 20) == 0
    assert near(bar, METER_MUTED, 6) > 0.9 * bar.shape[0] * bar.shape[1]
    comp.save_snapshot(f"{snapshot_dir}/mic-meter-muted-{'camera' if camera else 'card'}.png")


def test_mic_meter_redraws_match_a_full_redraw():
    size = SIZES["720p"]
    incremental = Compositor(SurfaceScreen(size), DisplayConfig(self_view=True))
    model = call(3, self_view=make_picture(9), self_view_time=time.monotonic())
    for step, level in enumerate((0.9, 0.2, 0.6, 0.1, 0.4)):
        model.mic_level = level
        if step % 2:  # sometimes a new self-view frame comes with the reading
            model.self_view, model.self_view_time = make_picture(step), time.monotonic()
        incremental.draw(model)
    fresh = Compositor(SurfaceScreen(size), DisplayConfig(self_view=True))
    fresh.draw(model)
    # the self-view corner (swscale's output for the grid's odd tile widths varies by a few
    # pixels between two compositors, whatever they draw: compare where the meter lives)
    corner = self_view(size, 0.2)
    assert np.array_equal(pixels(incremental.screen.surface, corner), pixels(fresh.screen.surface, corner))


def test_gpu_path_draws_the_mic_meter():
    screen = open_screen(DisplayConfig(backend="offscreen", renderer="gpu", width=1280, height=720))
    try:
        comp = Compositor(screen, DisplayConfig(self_view=True))
        model = call(1, self_view=make_picture(3), self_view_time=time.monotonic(), mic_level=0.9)
        comp.draw(model)
        from appliance.display.tiles import meter_rect

        r = meter_rect(self_view((1280, 720), 0.2))
        assert near(pixels(screen.snapshot(), r), theme.SPEAKER, 20) > 20
        model.mic_level = 0.0
        comp.draw(model)
        assert near(pixels(screen.snapshot(), r), theme.SPEAKER, 20) == 0
    finally:
        screen.close()
