"""The audio-processing port: echo cancellation, noise suppression and gain on 10 ms frames.

A :class:`Processor` is fed, for every 10 ms, the speaker reference (:meth:`process_reverse`)
and then the microphone frame captured while that reference played (:meth:`process_capture`).
Bindings are chosen by name and imported only when asked for, so a unit whose binding is
missing still starts — :func:`load_processor` raises :class:`ProcessingUnavailable` with a
plain message and the caller runs with processing ``"off"`` (:class:`Passthrough`, always there).

Bindings (figures from ``wallmesh bench audio``, see ``docs/room-audio.md``):

* ``"webrtc"`` (default) — ``pywebrtc-audio``: WebRTC's APM (AEC3, NS, AGC2) as a numpy API
  that releases the GIL; exposes speech probability and the gain applied.
* ``"livekit"`` — ``livekit.rtc.AudioProcessingModule``: the same module through LiveKit's
  Rust FFI; on/off switches only (no NS level, no AGC tuning, no voice activity).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from appliance.errors import WallmeshError

RATE = 48_000
FRAME = RATE // 100  # samples in 10 ms

BINDINGS = {"webrtc": "appliance.audio.webrtc_apm", "livekit": "appliance.audio.livekit_apm", "off": None}
DEFAULT_BINDING = "webrtc"


class ProcessingUnavailable(WallmeshError, ImportError):
    """The audio-processing binding asked for cannot be loaded (missing or broken)."""

    def __init__(self, binding: str, problem: str) -> None:
        super().__init__(f"audio processing '{binding}' is not available: {problem}")
        self.binding = binding
        self.problem = problem


@dataclass(frozen=True)
class ProcessingConfig:
    """What the processor does. Defaults are the product's tuning (``wallmesh bench audio``)."""

    echo: bool = True
    noise: bool = True
    noise_level: int = 3  # 0..3: about 6, 12, 18, 21 dB; 3 also takes ~5 dB more off residual echo
    # AGC2. Any gain lifts residual echo as much as the talker, and pywebrtc-audio's AGC2 applies
    # gain even with a 0 dB ceiling: up to 15 dB in a call's first seconds, while AEC3 is still
    # converging (the 0.6 s room then took 1.8 s instead of 0.1 s to converge, and every room lost
    # 0.3-0.5 dB of ERLE). Off by default: the talker is sent at the level captured.
    gain: bool = False
    gain_max_db: float = 0.0  # adaptive gain ceiling when ``gain`` is on
    high_pass: bool = True


@runtime_checkable
class Processor(Protocol):
    """One stream's processing state. Frames are 10 ms of 48 kHz mono int16 (480 samples)."""

    name: str

    def process_reverse(self, frame: np.ndarray) -> None:
        """The speaker signal that is playing now (the echo canceller's reference)."""

    def process_capture(self, frame: np.ndarray) -> np.ndarray:
        """The microphone frame captured now; returns the processed frame (new array)."""

    def set_stream_delay_ms(self, ms: int) -> None:
        """Delay between a reference frame and its echo in the capture, beyond what the caller aligned."""

    def reset(self) -> None:
        """Forget everything learnt (echo path, noise, gain); the configuration stays."""

    @property
    def voice(self) -> float | None:
        """Speech probability of the last capture frame (0..1), None when the binding has none."""

    @property
    def gain_db(self) -> float | None:
        """Gain the AGC applied to the last capture frame, None when the binding does not say."""


class Passthrough:
    """Processing ``"off"``: the microphone goes out as captured."""

    name = "off"

    def __init__(self, config: ProcessingConfig | None = None) -> None:
        self.config = config or ProcessingConfig()

    def process_reverse(self, frame: np.ndarray) -> None:
        pass

    def process_capture(self, frame: np.ndarray) -> np.ndarray:
        return np.array(frame, dtype=np.int16, copy=True)

    def set_stream_delay_ms(self, ms: int) -> None:
        pass

    def reset(self) -> None:
        pass

    @property
    def voice(self) -> float | None:
        return None

    @property
    def gain_db(self) -> float | None:
        return None


def load_processor(name: str = DEFAULT_BINDING, config: ProcessingConfig | None = None, *, module: str | None = None) -> Processor:
    """A new processor of binding ``name`` ("webrtc", "livekit" or "off").

    ``module`` overrides where the binding is imported from (tests, other builds).
    Raises :class:`ProcessingUnavailable` when the binding's package is missing or
    fails to start, and ``ValueError`` for a name that is not a binding.
    """
    config = config or ProcessingConfig()
    if name not in BINDINGS:
        raise ValueError(f"audio processing binding {name!r} is unknown; use one of {', '.join(BINDINGS)}")
    path = module or BINDINGS[name]
    if path is None:
        return Passthrough(config)
    try:
        adapter = importlib.import_module(path)
        return adapter.create(config)
    except ProcessingUnavailable:
        raise
    except ImportError as exc:
        raise ProcessingUnavailable(name, f"{exc.name or exc} cannot be imported ({exc})") from exc
    except (OSError, RuntimeError) as exc:
        raise ProcessingUnavailable(name, f"it failed to start ({exc})") from exc


def check_frame(frame: np.ndarray) -> np.ndarray:
    """``frame`` as a contiguous int16 10 ms frame, or ValueError."""
    samples = np.ascontiguousarray(frame, dtype=np.int16).reshape(-1)
    if samples.size != FRAME:
        raise ValueError(f"audio processing takes 10 ms frames of {FRAME} samples, not {samples.size}")
    return samples
