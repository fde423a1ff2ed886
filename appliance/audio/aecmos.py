"""The AEC Challenge's MOS estimator (AECMOS), for the audio bench.

``speechmos`` ships Microsoft's ICASSP AECMOS ONNX models; they run under ``onnxruntime``
on mel spectrograms (computed with ``librosa``). The 48 kHz model is used: the unit sends
full-band audio. It scores an echo canceller from the loopback (what the speaker played),
the microphone and the canceller's output: ``echo`` (how little echo is heard, 1..5) and
``other`` (other degradations: the near-end talker's quality, 1..5).
"""

from __future__ import annotations

import logging

import numpy as np

from appliance.errors import WallmeshError

TALK_TYPES = ("st", "nst", "dt")  # far-end single talk, near-end single talk, double talk


class MosUnavailable(WallmeshError, ImportError):
    """speechmos, onnxruntime or librosa is missing."""


class AecMos:
    """One loaded AECMOS model; :meth:`score` is cheap compared to loading."""

    RATE = 48_000

    def __init__(self) -> None:
        try:
            from speechmos import aecmos
        except ImportError as exc:
            raise MosUnavailable(f"AECMOS needs speechmos, onnxruntime and librosa ({exc})") from exc
        logging.getLogger("numba").setLevel(logging.WARNING)
        self._model = aecmos.AECMOS("aecmos_48kHz")

    def score(self, far: np.ndarray, mic: np.ndarray, out: np.ndarray, talk_type: str) -> tuple[float, float]:
        """(echo MOS, other MOS) of ``out`` for one clip (≤ 20 s) of the given talk type."""
        if talk_type not in TALK_TYPES:
            raise ValueError(f"talk type is one of {TALK_TYPES}, not {talk_type!r}")
        n = min(len(far), len(mic), len(out), 20 * self.RATE - 1)
        sig = [np.clip(_f(x[:n]), -1.0, 1.0).astype(np.float32) for x in (far, mic, out)]
        result = self._model({"lpb": sig[0], "mic": sig[1], "enh": sig[2]}, talk_type)
        return float(result["echo_mos"]), float(result["deg_mos"])


def _f(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) / 32768.0 if x.dtype == np.int16 else x.astype(np.float32)
