"""The wall unit's push-buttons and LEDs.

* :mod:`~appliance.controls.config` — ``[buttons]`` and ``[leds]`` config sections;
* :mod:`~appliance.controls.actions` — what each button does to a ``UnitController``;
* :mod:`~appliance.controls.gpio` — ``ButtonPanel`` and ``LedPanel`` on gpiozero,
  with the pin factory injected (``MockFactory`` off a Pi).

Buttons and LEDs talk to a :class:`~appliance.wall.controller.UnitController`
(from :mod:`appliance.wall`) and import nothing of ``appliance.unit`` or
``appliance.display``; the daemon hands them its controller.
"""
