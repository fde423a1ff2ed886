"""The microphone's live processing: the capture chain between the microphone and the Opus encoder.

:class:`MicrophoneChain` runs a :class:`~appliance.audio.chain.CaptureChain` (echo
cancellation, noise suppression, gain in the binding's one call) on every 10 ms frame
:class:`~appliance.mesh.audio.SharedAudio` reads, with the frame's capture time and the
mixer's :class:`~appliance.mesh.audio.EchoReference` as the speaker reference: one clock
(``time.monotonic()``) for both sides.

Where it runs is measured, not assumed. On this x86 machine one frame costs about
0.12 ms of CPU inline on the loop, while a hand-off to a worker and back costs the loop
0.14 ms by itself (two wake-ups and a wait for the GIL) and the worker's frame gets dearer
(0.31 ms: a cold cache every 10 ms) — inline is cheaper in every way. On a Pi the frame
costs several times as much, and 0.5-1 ms every 10 ms would hold the loop up. So, like
the video decoder (:class:`appliance.mesh.receive.DecodeRoute`), the chain runs inline
while its smoothed CPU cost stays within :data:`INLINE_BUDGET_MS`, and moves to a
:class:`~appliance.audio.chain.ThreadedChain` (bounded hand-off, drops counted) for good
once it does not. The chain is deterministic either way: same frames, times, same output.

:meth:`reset` (after unmute) makes the processor forget what it learnt before the next
frame it processes, on whichever thread runs it; frames captured before the reset that
come back from the worker afterwards are dropped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable

import numpy as np

from appliance.audio.chain import CaptureChain, ThreadedChain
from appliance.mesh.budget import LoopBudget

log = logging.getLogger(__name__)

#: Smoothed CPU per frame above which the chain leaves the event loop (see the module docstring).
INLINE_BUDGET_MS = 0.5

Tap = Callable[[np.ndarray, float, np.ndarray], None]


class MicrophoneChain:
    """One unit's live capture chain: :meth:`process` each mono 10 ms frame, in capture order."""

    def __init__(self, chain: CaptureChain, *, budget_ms: float | None = None, depth: int = 4, name: str = "unit") -> None:
        self.chain = chain
        self.budget = LoopBudget(INLINE_BUDGET_MS if budget_ms is None else budget_ms)
        self.inline = True
        self.resets = 0
        self._name = name
        self._depth = depth
        self._thread: ThreadedChain | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: collections.deque[tuple[np.ndarray, float]] = collections.deque()
        self._arrived = asyncio.Event()
        self._taps: list[Tap] = []
        self._pending: dict[float, np.ndarray] = {}  # mic frames in the worker, kept for taps
        self._reset_pending = False
        self._reset_after = float("-inf")  # frames captured up to here predate the last reset
        self._last_time = float("-inf")
        self._closed = False

    # -- figures ---------------------------------------------------------------------------

    @property
    def dropped(self) -> int:
        return self._thread.dropped if self._thread is not None else 0

    @property
    def cpu_ms_per_frame(self) -> float:
        return self.chain.cpu_ms_per_frame

    def tap(self, callback: Tap) -> None:
        """Call ``callback(mic, capture_time, out)`` on the loop for every processed frame
        (recording the live path; tests compare it with the offline chain)."""
        self._taps.append(callback)

    # -- the path --------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the echo path, noise and gain before the next frame (after unmute)."""
        self._reset_pending = True
        self._reset_after = self._last_time
        self.resets += 1

    def process(self, mic: np.ndarray, capture_time: float) -> np.ndarray | None:
        """The processed frame when inline; None when the worker has it (see :meth:`take`)."""
        self._last_time = capture_time
        if not self.inline:
            self._hand_over(mic, capture_time)
            return None
        self.budget.start()
        out = self._run(mic, capture_time)
        if self.budget.stop():
            log.info("%s: audio processing takes %.2f ms a frame: moving it off the event loop", self._name, self.budget.ms)
            self.inline = False
        self._tell(mic, capture_time, out)
        return out

    async def take(self, timeout: float) -> np.ndarray | None:
        """A frame the worker has processed, waiting at most ``timeout`` s for one."""
        if not self._ready:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout)
            except TimeoutError:
                return None
        if not self._ready:
            return None
        out, _when = self._ready.popleft()
        return out

    def close(self) -> None:
        """Stop the worker, if there is one; idempotent."""
        self._closed = True
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.close()

    # -- internals -------------------------------------------------------------------------

    def _run(self, mic: np.ndarray, capture_time: float) -> np.ndarray:
        """One frame through the chain, on the loop or the worker (never both: one path at a time)."""
        if self._reset_pending and capture_time > self._reset_after:
            self._reset_pending = False
            self.chain.reset()
        return self.chain.process(mic, capture_time)

    def _hand_over(self, mic: np.ndarray, capture_time: float) -> None:
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._thread = ThreadedChain(_Worker(self), self._from_worker, depth=self._depth, name=self._name)
        if self._taps:
            self._pending[capture_time] = mic.copy()
        if not self._thread.put(mic, capture_time):
            self._pending.pop(capture_time, None)

    def _from_worker(self, out: np.ndarray, capture_time: float) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening any more
            loop.call_soon_threadsafe(self._arrive, out, capture_time)

    def _arrive(self, out: np.ndarray, capture_time: float) -> None:
        mic = self._pending.pop(capture_time, None)
        if self._closed or capture_time <= self._reset_after:
            return  # captured before the last reset (before a mute): it must not leave now
        if mic is not None:
            self._tell(mic, capture_time, out)
        self._ready.append((out, capture_time))
        self._arrived.set()

    def _tell(self, mic: np.ndarray, capture_time: float, out: np.ndarray) -> None:
        for tap in list(self._taps):
            try:
                tap(mic, capture_time, out)
            except Exception:  # a broken recorder must not stop the microphone
                log.exception("%s: audio tap %r failed; removed", self._name, tap)
                self._taps.remove(tap)


class _Worker:
    """What :class:`ThreadedChain` runs: the chain, honouring a pending reset."""

    def __init__(self, owner: MicrophoneChain) -> None:
        self._owner = owner
        self.chain = owner.chain

    def process(self, mic: np.ndarray, capture_time: float) -> np.ndarray:
        return self._owner._run(mic, capture_time)

    @property
    def cpu_ms_per_frame(self) -> float:
        return self.chain.cpu_ms_per_frame
