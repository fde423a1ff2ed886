"""Binding ``"livekit"``: WebRTC's audio processing module through LiveKit's Rust FFI.

``livekit.rtc.AudioProcessingModule`` drives the APM built into ``liblivekit_ffi.so`` (shipped
in the ``livekit`` wheel) with synchronous FFI requests; frames are processed in place in a
buffer we own. It only has on/off switches (echo, noise, gain, high-pass): the noise level
and gain ceiling of :class:`~appliance.audio.processing.ProcessingConfig` are not used, and
it reports no voice activity or gain. It has no reset, so :meth:`reset` builds a new module.
"""

from __future__ import annotations

import numpy as np
from livekit import rtc

from appliance.audio.processing import FRAME, RATE, ProcessingConfig, check_frame


class LivekitProcessor:
    name = "livekit"

    def __init__(self, config: ProcessingConfig) -> None:
        self.config = config
        self._delay_ms = 0
        self._apm = self._create()

    def _create(self) -> rtc.AudioProcessingModule:
        c = self.config
        return rtc.AudioProcessingModule(
            echo_cancellation=c.echo, noise_suppression=c.noise, high_pass_filter=c.high_pass, auto_gain_control=c.gain
        )

    @staticmethod
    def _frame(samples: np.ndarray) -> rtc.AudioFrame:
        return rtc.AudioFrame(bytearray(samples.tobytes()), RATE, 1, FRAME)

    def process_reverse(self, frame: np.ndarray) -> None:
        if self.config.echo:
            self._apm.process_reverse_stream(self._frame(check_frame(frame)))

    def process_capture(self, frame: np.ndarray) -> np.ndarray:
        audio = self._frame(check_frame(frame))
        if self.config.echo:
            self._apm.set_stream_delay_ms(self._delay_ms)  # the APM wants it before every capture frame
        self._apm.process_stream(audio)
        return np.array(audio.data, dtype=np.int16)

    def set_stream_delay_ms(self, ms: int) -> None:
        self._delay_ms = int(ms)

    def reset(self) -> None:
        self._apm = self._create()

    @property
    def voice(self) -> float | None:
        return None

    @property
    def gain_db(self) -> float | None:
        return None


def create(config: ProcessingConfig) -> LivekitProcessor:
    return LivekitProcessor(config)
