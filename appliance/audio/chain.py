"""The microphone's processing chain: aligned speaker reference in, processed 10 ms frames out.

For every 10 ms microphone frame captured at ``capture_time`` (``time.monotonic()`` of its
first sample), :class:`CaptureChain` reads from the speaker reference the 10 ms that
played ``delay_ms`` earlier, less a 20 ms lead (:data:`LEAD_MS`) so the reference never
trails its echo (an :class:`~appliance.mesh.audio.EchoReference` stamps every mixed frame
with its play-out time; ``delay_ms`` is the device's output + input latency not in those
stamps), hands it to the processor as the reverse stream, then processes the capture
frame: echo cancellation → noise suppression → gain, in the binding's one call.
Frames are 48 kHz mono int16 in and out, the rate of the Opus encoder; the bindings
work at 48 kHz themselves, so nothing is resampled here.

The chain is deterministic: the same frames, times and delay give bit-identical output.
``wallmesh audio process`` runs files through :func:`process_signals`, which stamps them on
a synthetic clock and goes through this same class and the same ``EchoReference``.

CPU: about 0.1–0.2 ms of one x86 core per frame (``aec_cpu_ms_per_10ms``), several times
that on a Pi; :class:`ThreadedChain` moves it off the event loop with a bounded hand-off.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from appliance.audio.processing import FRAME, RATE, ProcessingConfig, Processor, check_frame, load_processor

log = logging.getLogger(__name__)

PERIOD = FRAME / RATE

#: The reference is always fed at least this long before its echo can arrive: AEC3 cannot
#: cancel an echo that reaches the microphone before its reference (measured: a reference
#: aligned exactly on the echo loses 20-40 dB of ERLE with 100 ppm of clock drift).
LEAD_MS = 20.0


class Reference(Protocol):
    """What played on the speaker: ``EchoReference.read``'s contract."""

    def read(self, start: float, count: int) -> np.ndarray: ...


class FrameChain(Protocol):
    """What :class:`ThreadedChain` runs: :meth:`CaptureChain.process`'s contract."""

    def process(self, frame: np.ndarray, capture_time: float) -> np.ndarray: ...


class CaptureChain:
    """One microphone's processing; :meth:`process` once per 10 ms frame, in capture order."""

    def __init__(self, processor: Processor, reference: Reference | None = None, *, delay_ms: float = 0.0) -> None:
        self.processor = processor
        self.reference = reference
        self.delay_ms = float(delay_ms)
        self.frames = 0
        self.cpu_s = 0.0  # thread CPU time spent in process()

    @property
    def align_ms(self) -> float:
        """How far back the reference is read: the device delay less :data:`LEAD_MS` (never negative)."""
        return max(0.0, self.delay_ms - LEAD_MS)

    @property
    def cpu_ms_per_frame(self) -> float:
        return 1000.0 * self.cpu_s / self.frames if self.frames else 0.0

    def set_delay_ms(self, delay_ms: float) -> None:
        self.delay_ms = float(delay_ms)

    def reset(self) -> None:
        """Start learning afresh (after unmute, a device change, a new call)."""
        self.processor.reset()

    def process(self, frame: np.ndarray, capture_time: float) -> np.ndarray:
        start = time.thread_time()
        mic = check_frame(frame)
        if self.reference is not None:
            self.processor.process_reverse(self.reference.read(capture_time - self.align_ms / 1000.0, FRAME))
        out = self.processor.process_capture(mic)
        self.cpu_s += time.thread_time() - start
        self.frames += 1
        return out


def process_signals(
    far: np.ndarray,
    mic: np.ndarray,
    *,
    binding: str = "webrtc",
    delay_ms: float = 0.0,
    config: ProcessingConfig | None = None,
    processor: Processor | None = None,
) -> tuple[np.ndarray, CaptureChain]:
    """Whole signals through the live chain: ``far`` (what the unit played, sample-aligned with
    ``mic``) and ``mic`` as 48 kHz int16; returns the processed microphone (int16, the length
    of ``mic`` rounded down to 10 ms) and the chain (for its CPU figures)."""
    from appliance.mesh.audio import EchoReference

    far = np.asarray(far, dtype=np.int16)
    mic = np.asarray(mic, dtype=np.int16)
    reference = EchoReference()
    chain = CaptureChain(processor or load_processor(binding, config), reference, delay_ms=delay_ms)
    frames = len(mic) // FRAME
    out = np.zeros(frames * FRAME, np.int16)
    for k in range(frames):
        t = k * PERIOD
        lo = k * FRAME
        played = far[lo : lo + FRAME]
        if len(played) < FRAME:
            played = np.pad(played, (0, FRAME - len(played)))
        reference.add(played, t)  # played now; the microphone frame below was captured now
        out[lo : lo + FRAME] = chain.process(mic[lo : lo + FRAME], t)
    return out, chain


class ThreadedChain:
    """A :class:`CaptureChain` (or any :class:`FrameChain`) on its own thread, for the live path.

    :meth:`put` never blocks: it queues the frame (at most ``depth`` wait) or drops it and
    counts the drop. Each processed frame is given to ``on_frame(frame, capture_time)`` on the
    worker thread — from asyncio, pass ``lambda f, t: loop.call_soon_threadsafe(cb, f, t)``.
    The bindings release the GIL while they compute, so the loop keeps running meanwhile.
    """

    def __init__(self, chain: FrameChain, on_frame: Callable[[np.ndarray, float], None], *, depth: int = 4, name: str = "unit") -> None:
        self.chain = chain
        self.dropped = 0
        self._on_frame = on_frame
        self._queue: queue.Queue[tuple[np.ndarray, float] | None] = queue.Queue(maxsize=depth)
        self._name = name
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"{name}-audio-processing", daemon=True)
        self._thread.start()

    def put(self, frame: np.ndarray, capture_time: float) -> bool:
        """Hand a captured frame over; False (and counted) when the worker is ``depth`` frames behind."""
        if self._closed:
            return False
        try:
            self._queue.put_nowait((np.array(frame, dtype=np.int16, copy=True), capture_time))
        except queue.Full:
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                log.warning("%s: audio processing is behind, %d frames dropped", self._name, self.dropped)
            return False
        return True

    def close(self, timeout: float = 2.0) -> None:
        """Stop the worker after the frames already queued; idempotent."""
        if self._closed:
            return
        self._closed = True
        while True:
            try:
                self._queue.put(None, timeout=timeout)
                break
            except queue.Full:  # pragma: no cover - a stuck worker
                continue
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            frame, when = item
            try:
                out = self.chain.process(frame, when)
            except (ValueError, RuntimeError) as exc:  # a bad frame is dropped, the worker lives on
                self.dropped += 1
                log.error("%s: audio processing failed on a frame: %s", self._name, exc)
                continue
            self._on_frame(out, when)
