"""Shared, real material for the room-audio tests: espeak-ng speech and simulated rooms."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.audio import room, speech


def _norm(x: np.ndarray) -> np.ndarray:
    return x * (0.1 / np.sqrt(np.mean(x[np.abs(x) > 1e-3] ** 2)))


@pytest.fixture(scope="session")
def far_talk() -> np.ndarray:
    """Six seconds of a US male voice at -20 dBFS while talking (what the speaker plays)."""
    return _norm(speech.talk("en-us", 6.0))


@pytest.fixture(scope="session")
def near_talk() -> np.ndarray:
    """A female talker in the room, silent for the first 3 s."""
    x = _norm(speech.talk("en+f3", 6.0, first=2))
    x[: 3 * speech.RATE] = 0
    return x


@pytest.fixture(scope="session")
def small_room() -> room.RoomModel:
    return room.build(room.variant("small", noise_level=0.0001))
