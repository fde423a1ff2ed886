"""The audio path's one format: 48 kHz, signed 16-bit, 10 ms frames; and numpy ↔ frame.

Every microphone, speaker, mixer and Opus coder in the unit speaks this format, so the
constants and the two conversions live here, below all of them, instead of in any one
adapter.
"""

from __future__ import annotations

import fractions

import av
import numpy as np

AUDIO_RATE = 48_000
AUDIO_FRAME_MS = 10
AUDIO_SAMPLES = AUDIO_RATE * AUDIO_FRAME_MS // 1000
AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_RATE)


def audio_frame(samples: np.ndarray, pts: int | None = None) -> av.AudioFrame:
    """An ``s16`` frame from an int16 array shaped (samples,) mono or (samples, channels)."""
    data = np.ascontiguousarray(samples, dtype=np.int16)
    channels = 1 if data.ndim == 1 else data.shape[1]
    frame = av.AudioFrame.from_ndarray(data.reshape(1, -1), format="s16", layout="mono" if channels == 1 else "stereo")
    frame.sample_rate = AUDIO_RATE
    frame.time_base = AUDIO_TIME_BASE
    if pts is not None:
        frame.pts = pts
    return frame


def frame_samples(frame: av.AudioFrame) -> np.ndarray:
    """An ``s16`` frame's samples as int16, shaped (samples, channels)."""
    channels = len(frame.layout.channels)
    return frame.to_ndarray().reshape(-1, channels) if frame.format.is_packed else frame.to_ndarray().T
