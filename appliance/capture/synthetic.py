"""Audio devices that need no hardware: a synthetic microphone and a discarding speaker.

:class:`SyntheticAudioSource` speaks a tone whose pitch depends on the sender id, in
talk-spurts (on ~1.2 s, off ~0.4 s) so that level meters and active-speaker highlighting
have something to follow. :class:`NullAudioSink` consumes frames at the real 48 kHz
rate from a bounded buffer, like a sound card would, and keeps what it "played" for
inspection. Both are paced by the event loop's clock; simulated units and tests use them.
Like every microphone, the source stamps each frame: ``capture_time`` is the
``time.monotonic()`` of the last frame's first sample, the clock the echo reference uses.
"""

from __future__ import annotations

import asyncio
import collections
import time

import av
import numpy as np

from appliance.capture.audioformat import AUDIO_FRAME_MS, AUDIO_RATE, AUDIO_SAMPLES, audio_frame, frame_samples
from appliance.capture.base import AudioSink, AudioSource


class SyntheticAudioSource(AudioSource):
    """A paced test tone in talk-spurts; restartable, so mute can close and reopen it."""

    def __init__(self, *, sender: int = 0, amplitude: float = 0.3, channels: int = 1) -> None:
        self.channels = channels
        self.frequency = 300.0 + (sender % 8) * 55.0
        self.amplitude = amplitude
        self.started = False
        self.frames_read = 0
        self.capture_time: float | None = None  # time.monotonic() of the last frame's first sample
        self._sample = 0
        self._next = 0.0
        self._cycle: np.ndarray | None = None

    def _talk_cycle(self) -> np.ndarray:
        """One talk-spurt cycle (1.6 s: 1.2 s of tone, 0.4 s of silence), computed once.

        The tone's frequency is rounded to a whole number of periods per cycle, so the
        cycle repeats seamlessly; one extra frame at the end lets every read be a slice."""
        cycle = int(1.6 * AUDIO_RATE)
        frequency = round(self.frequency * 1.6) / 1.6
        t = np.arange(cycle + AUDIO_SAMPLES) / AUDIO_RATE
        talking = (t % 1.6) < 1.2
        return (self.amplitude * 32767 * np.sin(2 * np.pi * frequency * t) * talking).astype(np.int16)

    async def start(self) -> None:
        self.started = True
        self._next = time.monotonic()

    async def read(self) -> av.AudioFrame:
        if not self.started:
            await self.start()
        now = time.monotonic()
        if self._next > now:
            await asyncio.sleep(self._next - now)
        elif now - self._next > 0.1:
            self._next = now  # the loop stalled: resume, do not burst
        self.capture_time = self._next - AUDIO_FRAME_MS / 1000  # handed over now, complete: begun a frame ago
        self._next += AUDIO_FRAME_MS / 1000
        if self._cycle is None:
            self._cycle = self._talk_cycle()
        at = self._sample % len(self._cycle)
        samples = self._cycle[at : at + AUDIO_SAMPLES]
        if self.channels == 2:
            samples = np.repeat(samples[:, None], 2, axis=1)
        frame = audio_frame(samples, self._sample)
        self._sample += AUDIO_SAMPLES
        self.frames_read += 1
        return frame

    async def close(self) -> None:
        self.started = False


class NullAudioSink(AudioSink):
    """Plays into nothing, at real-time pace, from a bounded buffer (``buffer_ms``).

    Like a sound card it takes one 10 ms frame from its buffer every 10 ms from
    :meth:`start` on (none when the buffer is empty); having no hardware, it works out
    what has played from the clock whenever it is written to or asked, instead of
    waking the event loop a hundred times a second.
    """

    def __init__(self, *, buffer_ms: int = 60, channels: int = 1, keep: int = 500) -> None:
        self.channels = channels
        self._buffer: collections.deque[np.ndarray] = collections.deque(maxlen=max(1, buffer_ms // AUDIO_FRAME_MS))
        self._played: collections.deque[np.ndarray] = collections.deque(maxlen=keep)
        self._frames_played = 0
        self.frames_dropped = 0
        self.underruns = 0  # boundaries that found nothing to take, once playing (the mixer re-anchors its stamps)
        self._started: float | None = None
        self._ticks = 0  # 10 ms periods accounted for since start

    async def start(self) -> None:
        if self._started is None:
            self._started = time.monotonic()
            self._ticks = 0

    def _advance(self) -> None:
        if self._started is None:
            return
        due = int((time.monotonic() - self._started) / (AUDIO_FRAME_MS / 1000))
        if due - self._ticks > len(self._buffer) and self._frames_played:
            self.underruns += 1
        for _ in range(min(due - self._ticks, len(self._buffer))):
            self._played.append(self._buffer.popleft())
            self._frames_played += 1
        self._ticks = due

    def write(self, frame: av.AudioFrame) -> None:
        self._advance()
        if len(self._buffer) == self._buffer.maxlen:
            self.frames_dropped += 1
        self._buffer.append(frame_samples(frame))

    @property
    def played(self) -> collections.deque[np.ndarray]:
        """The newest frames played (up to ``keep``), oldest first."""
        self._advance()
        return self._played

    @property
    def frames_played(self) -> int:
        self._advance()
        return self._frames_played

    @property
    def delay(self) -> float:
        """Seconds until a frame written now starts to play: the frames ahead of it, and the
        wait for the next 10 ms boundary at which the sink takes one."""
        self._advance()
        if self._started is None:
            return len(self._buffer) * AUDIO_FRAME_MS / 1000
        period = AUDIO_FRAME_MS / 1000
        return max(0.0, self._started + (self._ticks + 1 + len(self._buffer)) * period - time.monotonic())

    @property
    def next_take(self) -> float | None:
        """When the sink takes its next frame (``time.monotonic()``), None before start."""
        self._advance()
        if self._started is None:
            return None
        return self._started + (self._ticks + 1) * AUDIO_FRAME_MS / 1000

    async def close(self) -> None:
        self._advance()
        self._started = None
