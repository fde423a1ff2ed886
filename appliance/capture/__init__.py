"""The unit's media devices: camera, microphone and speaker behind small ports.

:mod:`appliance.capture.base` holds the ports and the factories that choose an adapter by
its config ``type``; each adapter module (``pattern``, ``v4l2``, ``picamera``, ``alsa``,
``synthetic``) is imported only when configured, so this package imports anywhere.
"""
