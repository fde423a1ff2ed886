"""Binding ``"webrtc"``: WebRTC's audio processing module through ``pywebrtc-audio``.

``pywebrtc_audio.AudioProcessor`` wraps one ``webrtc::AudioProcessing`` instance (AEC3,
the noise suppressor, AGC2, the high-pass filter) and processes a capture frame together
with its reverse (speaker) frame in one GIL-free call. It runs here at 48 kHz, the rate
the unit captures and Opus encodes, so no resampling happens outside WebRTC (it splits
the band internally). :meth:`process_reverse` therefore only holds the reference until
the matching :meth:`process_capture`.
"""

from __future__ import annotations

import numpy as np
import pywebrtc_audio

from appliance.audio.processing import FRAME, RATE, ProcessingConfig, check_frame


class WebrtcProcessor:
    name = "webrtc"

    def __init__(self, config: ProcessingConfig) -> None:
        self.config = config
        self._delay_ms = 0
        self._apm = self._create()
        self._reverse = np.zeros(FRAME, np.int16)

    def _create(self) -> pywebrtc_audio.AudioProcessor:
        c = self.config
        return pywebrtc_audio.AudioProcessor(
            sample_rate=RATE,
            num_channels=1,
            echo_cancellation=c.echo,
            noise_suppression=c.noise,
            high_pass_filter=c.high_pass,
            auto_gain_control=c.gain,
            ns_level=c.noise_level,
            agc_max_gain_db=c.gain_max_db,
            stream_delay_ms=self._delay_ms,
        )

    def process_reverse(self, frame: np.ndarray) -> None:
        self._reverse = check_frame(frame)

    def process_capture(self, frame: np.ndarray) -> np.ndarray:
        near = check_frame(frame)
        out = self._apm.process(near, self._reverse) if self.config.echo else self._apm.process(near)
        self._reverse = np.zeros(FRAME, np.int16)  # a reference is used once
        return out

    def set_stream_delay_ms(self, ms: int) -> None:
        self._delay_ms = int(ms)
        self._apm.stream_delay_ms = self._delay_ms

    def reset(self) -> None:
        self._apm.reset()
        self._reverse = np.zeros(FRAME, np.int16)

    @property
    def voice(self) -> float | None:
        return float(self._apm.speech_probability)

    @property
    def gain_db(self) -> float | None:
        return float(self._apm.gain_db) if self.config.gain else None


def create(config: ProcessingConfig) -> WebrtcProcessor:
    return WebrtcProcessor(config)
