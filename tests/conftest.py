"""Suite-wide settings: every test sees a clean, hardware-free environment.

Display tests draw offscreen (SDL's dummy driver), audio tests use ALSA's null
device, and nothing reaches for a public STUN server.
"""

from __future__ import annotations

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
