"""wallmesh: conference-room wall units talking in a WebRTC full mesh.

Importing this package never touches hardware: adapters for the Pi camera,
ALSA, GPIO and the KMS display are imported lazily by the composition roots.
"""

__version__ = "0.1.0"
