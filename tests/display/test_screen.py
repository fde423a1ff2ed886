"""One contract for every screen backend: open, compose, present, snapshot, close.

The offscreen surface, SDL's renderer and pygame's display surface run here
under SDL's dummy driver; ``kmsdrm`` needs a Pi with HDMI (``-m hardware``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import av
import numpy as np
import pytest
from wallmesh_pixels import pixels

from appliance.display.compositor import Compositor
from appliance.display.config import DisplayConfig
from appliance.display.layout import fit
from appliance.display.screen import (
    RendererScreen,
    SurfaceScreen,
    WindowScreen,
    open_screen,
)
from appliance.display.tiles import tile_rects
from appliance.wall.model import Tile, WallModel
from appliance.wall.states import UnitState

BACKENDS = {
    "offscreen-software": (DisplayConfig(backend="offscreen", renderer="software", width=960, height=540), SurfaceScreen),
    "offscreen-gpu": (DisplayConfig(backend="offscreen", renderer="gpu", width=960, height=540), RendererScreen),
    "window-software": (DisplayConfig(backend="window", renderer="software", width=960, height=540), WindowScreen),
    "kmsdrm": (DisplayConfig(backend="kmsdrm"), RendererScreen),
}


def backend(name):
    if name == "kmsdrm":
        return pytest.param(name, marks=pytest.mark.hardware)
    return name


@pytest.mark.parametrize("name", [backend(n) for n in BACKENDS])
def test_screen_contract(name):
    config, cls = BACKENDS[name]
    screen = open_screen(config)
    try:
        assert isinstance(screen, cls)
        assert screen.size == (960, 540) or name == "kmsdrm"
        comp = Compositor(screen, DisplayConfig(self_view=False))
        img = np.zeros((480, 640, 3), np.uint8)
        img[::32] = 255
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        model = WallModel(state=UnitState.IN_CALL, room="r", tiles=[Tile("a", "A", frame, time.monotonic())])
        comp.draw(model)
        comp.draw(model)
        assert screen.presented == 2
        assert screen.pump() is True
        shot = screen.snapshot()
        assert shot.get_size() == tuple(screen.size)
        assert pixels(shot, fit(640, 480, tile_rects(tuple(screen.size), 1)[0])).std() > 30
    finally:
        screen.close()


def test_importing_the_model_does_not_need_pygame():
    code = "import sys, appliance.wall.model, appliance.display.layout, appliance.controls.config; print('pygame' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ}, check=True)
    assert out.stdout.strip() == "False"
