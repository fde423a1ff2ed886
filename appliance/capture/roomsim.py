"""A simulated room at the hardware edge: a loudspeaker and a microphone that hear each other.

:class:`SimulatedRoom` stands in for the sound card and the air: its speaker side consumes
one 10 ms frame every 10 ms from a small bounded buffer (like :class:`NullAudioSink`: a frame
written late plays a slot later, an underrun that it counts), and every frame it plays
goes into the room; its ``delay`` is exact, so the mixer's play-out stamps are the truth. Its microphone side is a
:class:`~appliance.audio.room.RoomMicrophone` of the named room
(:data:`~appliance.audio.room.ROOMS`: ``small``, ``large``, ``clipping``, ``jump``,
``drift``): it hears what the speaker played at the time it played, through the room's
impulse response and delay, plus a near-end talker (espeak-ng speech with pauses, looped;
``talker = false`` for none) and the fan. Both sides run on one grid of 10 ms slots of
``time.monotonic()``, slot ``k`` starting at ``t0 + k * 10 ms``: the speaker plays slot
``k``'s frame from then, and the microphone frame of slot ``k`` is stamped with that time.

A room thread, like a sound card's, computes each microphone frame once its slot is over
(about 0.5-1 ms of convolution per frame in the small room, twice that in the large one —
off the event loop) and hands it to the loop with ``call_soon_threadsafe``. The room keeps
running while the microphone is closed (mute), as a real room would.

:class:`RoomSpeaker` and :class:`RoomSource` are the ``room`` sink and source of
``[audio]``; the composition root gives both the same room.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import av
import numpy as np

from appliance.capture.audioformat import AUDIO_FRAME_MS, AUDIO_RATE, AUDIO_SAMPLES, audio_frame, frame_samples
from appliance.capture.base import AudioSink, AudioSource

if TYPE_CHECKING:
    from appliance.audio.room import RoomMicrophone, RoomModel

log = logging.getLogger(__name__)

PERIOD = AUDIO_FRAME_MS / 1000

#: ``listen(slot, capture_time, played, mic, near)``: every slot, on the room thread (truth for tests).
Listener = Callable[[int, float, np.ndarray, np.ndarray, np.ndarray], None]


class SimulatedRoom:
    """One unit's room: the speaker's frames in, the microphone's frames out (module docstring)."""

    def __init__(
        self, room: str = "small", *, talker: bool = True, noise: bool = True, voice: str = "en+f3",
        talk_s: float = 8.0, pause_s: float = 4.0, buffer_ms: int = 60, name: str = "unit",
    ) -> None:
        self.room = room
        self.talker = talker
        self.noise = noise
        self.voice, self.talk_s, self.pause_s = voice, talk_s, pause_s
        self.name = name
        self.t0: float | None = None
        self.frames_played = 0
        self.frames_dropped = 0
        self.underruns = 0
        self.glitches: list[int] = []  # slots where the speaker underran or dropped a frame (the first 100)
        self._buffer: collections.deque[np.ndarray] = collections.deque(maxlen=max(1, buffer_ms // AUDIO_FRAME_MS))
        self._playing = False
        self._slot = 0  # next speaker slot to decide
        self._played: collections.deque[tuple[int, np.ndarray]] = collections.deque()
        self._lock = threading.Lock()
        self._users = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._mic_out: Callable[[np.ndarray, float], None] | None = None
        self._listeners: list[Listener] = []
        self._model: RoomModel | None = None
        self._mic: RoomMicrophone | None = None
        self._near: np.ndarray | None = None
        self._near_tail = np.zeros(0)
        self._prepared = False

    # -- life ------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Compute the room (impulse responses, about 1-2 s) and the talker's speech; blocking."""
        if self._prepared:
            return
        from appliance.audio import room as rooms
        from appliance.audio import speech

        self._model = rooms.build(self.room)
        self._mic = self._model.microphone(None, noise=self.noise)
        if self.talker:
            talk = speech.talk(self.voice, self.talk_s)
            level = np.sqrt(np.mean(talk[np.abs(talk) > 1e-3] ** 2))
            self._near = np.concatenate([talk * (0.1 / level), np.zeros(int(self.pause_s * AUDIO_RATE))]).astype(np.float64)
            self._near_tail = np.zeros(len(self._model.talker_rir) - 1)
        self._prepared = True

    async def open(self) -> None:
        """One more user (the speaker or the microphone); the first starts the room's clock."""
        if not self._prepared:
            await asyncio.to_thread(self.prepare)
        self._users += 1
        if self._thread is None:
            self.t0 = time.monotonic()
            self._slot = 0
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(self._stop,), name=f"{self.name}-room", daemon=True)
            self._thread.start()
            log.info("%s: simulated room %r%s", self.name, self.room, " with a talker" if self.talker else "")

    async def release(self) -> None:
        """One user fewer; the last stops the room."""
        self._users = max(0, self._users - 1)
        if self._users == 0 and self._thread is not None:
            thread, self._thread = self._thread, None
            self._stop.set()
            await asyncio.to_thread(thread.join, 2.0)

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def connect_microphone(self, out: Callable[[np.ndarray, float], None] | None) -> None:
        """Where each microphone frame goes (on the room thread), None: nobody listens."""
        self._mic_out = out

    # -- the speaker side ------------------------------------------------------------------

    def play(self, samples: np.ndarray) -> None:
        with self._lock:
            self._decide(time.monotonic())
            if len(self._buffer) == self._buffer.maxlen:
                self.frames_dropped += 1
                self._glitch(self._slot)
            self._buffer.append(np.ascontiguousarray(samples, dtype=np.int16))

    @property
    def delay(self) -> float:
        """Seconds until a frame written now starts to play (exact on the room's clock)."""
        with self._lock:
            now = time.monotonic()
            self._decide(now)
            if self.t0 is None:
                return len(self._buffer) * PERIOD
            ahead = min(len(self._buffer), (self._buffer.maxlen or 1) - 1)  # a full buffer drops its oldest
            return max(0.0, self.t0 + (self._slot + ahead) * PERIOD - now)

    @property
    def next_take(self) -> float | None:
        """When the room's speaker starts its next slot (``time.monotonic()``), None before it opens."""
        with self._lock:
            if self.t0 is None:
                return None
            self._decide(time.monotonic())
            return self.t0 + self._slot * PERIOD

    def _decide(self, now: float) -> None:
        """Play every slot that has begun by ``now`` (under the lock)."""
        if self.t0 is None:
            return
        due = int((now - self.t0) / PERIOD)
        while self._slot <= due:
            if self._buffer:
                frame = self._buffer.popleft()
                self.frames_played += 1
                self._playing = True
            else:
                if self._playing:  # the writer was late: a gap, and its frames play a slot later
                    self.underruns += 1
                    self._glitch(self._slot)
                self._playing = False
                frame = np.zeros(AUDIO_SAMPLES, np.int16)
            self._played.append((self._slot, frame))
            self._slot += 1

    def _glitch(self, slot: int) -> None:
        if len(self.glitches) < 100:
            self.glitches.append(slot)

    # -- the microphone side (room thread) -------------------------------------------------

    def _run(self, stop: threading.Event) -> None:
        assert self.t0 is not None
        slot = 0
        while not stop.is_set():
            wait = self.t0 + (slot + 1) * PERIOD - time.monotonic()
            if wait > 0:
                stop.wait(wait)
                continue
            with self._lock:
                self._decide(time.monotonic())
                ready = list(self._played)
                self._played.clear()
            for k, played in ready:
                self._hear(k, played)
            slot = ready[-1][0] + 1 if ready else slot

    def _hear(self, slot: int, played: np.ndarray) -> None:
        assert self._mic is not None and self._model is not None and self.t0 is not None
        mic = self._mic.read(played)
        near = np.zeros(AUDIO_SAMPLES, np.int16)
        if self._near is not None:
            at = (slot * AUDIO_SAMPLES) % len(self._near)
            seg = np.take(self._near, np.arange(at, at + AUDIO_SAMPLES), mode="wrap")
            talk = np.convolve(seg, self._model.talker_rir) if len(self._model.talker_rir) < 2048 else _fftconv(seg, self._model.talker_rir)
            talk[: len(self._near_tail)] += self._near_tail
            self._near_tail = talk[AUDIO_SAMPLES:]
            near = np.clip(np.round(talk[:AUDIO_SAMPLES] * 32768.0), -32768, 32767).astype(np.int16)
            mic = np.clip(mic.astype(np.int32) + near, -32768, 32767).astype(np.int16)
        when = self.t0 + slot * PERIOD
        for listener in list(self._listeners):
            listener(slot, when, played, mic, near)
        out = self._mic_out
        if out is not None:
            out(mic, when)


def _fftconv(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    from scipy.signal import fftconvolve

    return fftconvolve(x, h)


class RoomSpeaker(AudioSink):
    """``[audio] sink = "room"``: plays at the real rate into the unit's :class:`SimulatedRoom`."""

    def __init__(self, room: SimulatedRoom) -> None:
        self.room = room
        self._open = False

    async def start(self) -> None:
        if not self._open:
            await self.room.open()
            self._open = True

    def write(self, frame: av.AudioFrame) -> None:
        self.room.play(frame_samples(frame)[:, 0])

    @property
    def delay(self) -> float:
        return self.room.delay

    @property
    def next_take(self) -> float | None:
        return self.room.next_take

    @property
    def frames_played(self) -> int:
        return self.room.frames_played

    @property
    def underruns(self) -> int:
        return self.room.underruns

    @property
    def frames_dropped(self) -> int:
        """Frames the room had no time to play (the mixer re-anchors its play-out stamps on them)."""
        return self.room.frames_dropped

    async def close(self) -> None:
        if self._open:
            self._open = False
            await self.room.release()


class RoomSource(AudioSource):
    """``[audio] source = "room"``: the microphone in the unit's :class:`SimulatedRoom`."""

    def __init__(self, room: SimulatedRoom, *, queue_frames: int = 20) -> None:
        self.room = room
        self.capture_time: float | None = None  # time.monotonic() of the last frame's first sample
        self.started = False
        self.overruns = 0
        self._queue_frames = queue_frames
        self._queue: asyncio.Queue[tuple[np.ndarray, float]] | None = None
        self._pts = 0

    async def start(self) -> None:
        if self.started:
            return
        await self.room.open()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[np.ndarray, float]] = asyncio.Queue(self._queue_frames)
        self._queue = queue

        def deliver(samples: np.ndarray, when: float) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(self._put, queue, samples, when)

        self.room.connect_microphone(deliver)
        self.started = True

    def _put(self, queue: asyncio.Queue[tuple[np.ndarray, float]], samples: np.ndarray, when: float) -> None:
        if queue.full():  # the reader is behind: the oldest audio goes, like an ALSA overrun
            queue.get_nowait()
            self.overruns += 1
        queue.put_nowait((samples, when))

    async def read(self) -> av.AudioFrame:
        if not self.started:
            await self.start()
        assert self._queue is not None
        samples, self.capture_time = await self._queue.get()
        frame = audio_frame(samples, self._pts)
        self._pts += AUDIO_SAMPLES
        return frame

    async def close(self) -> None:
        if not self.started:
            return
        self.started = False
        self.room.connect_microphone(None)
        self._queue = None
        await self.room.release()
