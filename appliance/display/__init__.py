"""The wall display: what the people in the room see.

* :mod:`~appliance.display.layout` — pure geometry (grid, letterbox, self-view);
* :mod:`~appliance.display.screens` and :mod:`~appliance.display.tiles` — which
  screen for which state, drawn once per visible change;
* :mod:`~appliance.display.compositor` — puts the newest pictures into the scene,
  software or GPU path; :mod:`~appliance.display.screen` — kmsdrm, window, offscreen;
* :mod:`~appliance.display.runner` — the display thread (``DisplayLoop``);
  :mod:`~appliance.display.messages` — error sentences for the room.

It draws a :class:`~appliance.wall.model.WallModel` (plain data from
:mod:`appliance.wall`, which a controller builds) and imports nothing of
``appliance.unit`` or ``appliance.controls``. Importing this package does not
import pygame; the drawing modules do.
"""
