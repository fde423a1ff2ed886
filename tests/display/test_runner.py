"""The display thread: opens the screen on its own thread, draws on wake-ups, beats the watchdog."""

from __future__ import annotations

import threading
import time

import av
import numpy as np
import pygame
import pytest

from appliance.display.config import DisplayConfig
from appliance.display.runner import DisplayLoop
from appliance.errors import DeviceError
from appliance.wall.model import Tile, WallModel
from appliance.wall.states import UnitState

OFFSCREEN = DisplayConfig(backend="offscreen", renderer="software", width=1280, height=720, fps=60)


def eventually(predicate, cap=5.0):
    """Poll ``predicate`` until true or ``cap`` seconds pass (generous: the CI machine is shared)."""
    deadline = time.monotonic() + cap
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


class Source:
    """Hands the display the latest model, like the unit daemon's ``wall_model``."""

    def __init__(self):
        self.model = WallModel(state=UnitState.IDLE, room="boardroom")
        self.threads = set()

    def __call__(self):
        self.threads.add(threading.current_thread().name)
        return self.model


def test_draws_off_the_calling_thread_and_snapshots(tmp_path):
    beats = []
    source = Source()
    loop = DisplayLoop(OFFSCREEN, source, heartbeat=beats.append)
    loop.start()
    try:
        assert loop.running
        assert loop.snapshot(str(tmp_path / "idle.png"))
        assert pygame.image.load(str(tmp_path / "idle.png")).get_size() == (1280, 720)
        assert source.threads == {"display"}
        assert eventually(lambda: beats), "the watchdog hears from the display"
        assert set(beats) == {"display"}
    finally:
        loop.stop()
        loop.stop()
    assert not loop.running


def test_wake_draws_new_frames_promptly():
    source = Source()
    loop = DisplayLoop(OFFSCREEN, source)
    loop.start()
    try:
        img = np.full((480, 640, 3), 200, np.uint8)
        source.model = WallModel(
            state=UnitState.IN_CALL,
            tiles=[Tile("p1", "Peer", frame=av.VideoFrame.from_ndarray(img, format="rgb24"), frame_time=time.monotonic())],
        )
        loop.wake()
        assert eventually(lambda: loop.compositor.added_ms), "the new frame was presented"
    finally:
        loop.stop()


def test_idle_redraws_are_rate_limited():
    loop = DisplayLoop(OFFSCREEN, Source())
    loop.start()
    try:
        time.sleep(0.5)
        frames = loop.compositor.frames
        assert 1 <= frames <= 10, f"{frames} frames in 0.5 s with nothing new"
    finally:
        loop.stop()


def test_a_display_that_cannot_open_is_a_device_error():
    def broken(config):
        raise pygame.error("Could not initialize KMSDRM")

    loop = DisplayLoop(OFFSCREEN, Source(), open_screen=broken)
    with pytest.raises(DeviceError, match="display"):
        loop.start()
    assert not loop.running


def test_a_bad_model_neither_kills_the_thread_nor_feeds_the_watchdog(caplog):
    beats = []
    source = Source()
    loop = DisplayLoop(OFFSCREEN, source, heartbeat=beats.append)
    loop.start()
    try:
        assert eventually(lambda: beats), "drawing works before the bad model"
        source.model = WallModel(state=UnitState.IN_CALL, tiles=[Tile("p", frame=None)])
        source.model.tiles = None  # not a list: drawing fails
        assert eventually(lambda: loop.failures > 0)
        time.sleep(0.1)  # a draw that began before the switch has finished
        beats.clear()
        time.sleep(0.3)
        assert loop.running and loop.failures > 0
        assert beats == [], "no heartbeat while every draw fails"
        assert caplog.text.count("drawing a frame failed") == 1, "logged once, not every frame"
        source.model = WallModel(state="no-such-state")
        assert eventually(lambda: beats), "recovered: an unknown state shows the error screen"
        assert loop.compositor.last_scene.screen == "error"
    finally:
        loop.stop()
