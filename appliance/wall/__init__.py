"""The wall unit's own vocabulary, shared by the display, the controls and the daemon.

Everything here is plain data and pure logic (no pygame, no gpiozero, no aiortc),
so every part of the unit can depend on it and it depends on none of them:

* :mod:`~appliance.wall.states` — ``UnitState`` (idle, joining, in_call,
  reconnecting, error) and the ``TRANSITIONS`` allowed between them;
* :mod:`~appliance.wall.machine` — ``StateMachine``: the unit's life, with logged
  transitions, mute and camera, and subscribers;
* :mod:`~appliance.wall.controller` — ``UnitController``, the port the buttons, the
  LEDs, the status endpoint and the display talk to (``Listeners`` for implementers);
* :mod:`~appliance.wall.local` — ``LocalController``, a controller with no media;
* :mod:`~appliance.wall.model` — ``WallModel`` / ``Tile`` / ``Quality``, what the
  display draws, and ``quality_from(loss, rtt)``;
* :mod:`~appliance.wall.status` — the ``GET /status`` document as types;
* :mod:`~appliance.wall.speaker` — ``ActiveSpeaker`` (the one speaking-highlight
  rule: voice above each peer's noise floor, with hysteresis) and ``LevelMeter``
  (the self-view's microphone meter).

Dependencies point one way: ``display/`` and ``controls/`` import this package
and never ``unit/`` (nor each other); ``unit/`` assembles them all, with the
daemon (:class:`appliance.unit.app.UnitDaemon`) as the production controller.
"""
