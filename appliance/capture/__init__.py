"""The unit's media devices: camera, microphone and speaker behind small ports.

:mod:`appliance.capture.base` holds the ports and :mod:`appliance.capture.audioformat` the
audio format they speak; :mod:`appliance.capture.registry` names each adapter module
(``pattern``, ``v4l2``, ``picamera``, ``alsa``, ``synthetic``) by its config ``type`` and
imports it only when configured, so this package imports anywhere.
"""
