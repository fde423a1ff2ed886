"""Jitter buffers for aiortc's receivers: video that skips a lost packet, audio that waits for none.

Both stand in for the receiver's private ``JitterBuffer`` (installed by
:func:`appliance.mesh.aiortc_hooks.install_inline_video` / ``install_inline_audio``) and
answer aiortc's one call, ``add(packet) -> (pli_flag, frame_or_None)``.
:class:`GapSkippingJitterBuffer` subclasses aiortc's own buffer and works on its
private ring (``_origin``, ``_packets``, ``_capacity``, ``_remove_frame``), which
:func:`appliance.mesh.aiortc_hooks.check` verifies are there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiortc.jitterbuffer import JitterBuffer, JitterFrame

#: How long a missing packet may hold back the pictures behind it (NACK/RTX has had its
#: chance by then on a LAN) before the receiver skips the gap and asks for a keyframe.
MAX_GAP_WAIT = 0.25
#: Packets an audio packet may trail the newest one before it counts as a sequence restart.
MAX_AUDIO_MISORDER = 100


class GapSkippingJitterBuffer(JitterBuffer):
    """aiortc's video jitter buffer, except that a lost packet stalls it for ``max_wait`` at most.

    aiortc's buffer waits at a gap until 512 packets have piled up behind it — seconds of
    video — and scans the whole buffer for every packet meanwhile. This one, once the gap
    is older than ``max_wait``, drops the incomplete picture(s), resumes at the next
    picture that starts after the gap and flags a PLI so the decoder gets a keyframe.
    """

    def __init__(
        self, capacity: int = 512, max_wait: float = MAX_GAP_WAIT, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(capacity=capacity, is_video=True)
        self.max_wait = max_wait
        self.clock = clock
        self.stalled_since: float | None = None
        self.gaps_skipped = 0

    def add(self, packet: Any) -> tuple[bool, Any]:
        pli, frame = super().add(packet)
        if frame is not None or self._origin is None:
            self.stalled_since = None
            return pli, frame
        gap = self._gap_before(packet.sequence_number)
        if gap is None:  # a picture still arriving (a big keyframe), not a loss
            self.stalled_since = None
            return pli, frame
        now = self.clock()
        if self.stalled_since is None:
            self.stalled_since = now
        elif now - self.stalled_since >= self.max_wait and self._skip(gap):
            self.stalled_since = None
            self.gaps_skipped += 1
            pli = True
            frame = self._remove_frame(packet.sequence_number)
        return pli, frame

    def _slot(self, count: int) -> Any:
        assert self._origin is not None  # add() set it before it looks for gaps
        return self._packets[(self._origin + count) % self._capacity]

    def _gap_before(self, newest: int) -> int | None:
        """Offset from the origin of the first missing packet older than ``newest``."""
        assert self._origin is not None  # add() set it before it looks for gaps
        span = (newest - self._origin) & 0xFFFF
        if span >= self._capacity:
            return None
        for count in range(span):
            if self._slot(count) is None:
                return count
        return None

    def _skip(self, gap: int) -> bool:
        """Resume at the first picture that neither ends nor starts at the gap."""
        before = self._slot(gap - 1).timestamp if gap > 0 and self._slot(gap - 1) is not None else None
        after = None
        for count in range(gap + 1, self._capacity):
            p = self._slot(count)
            if p is None:
                continue
            if after is None:
                after = p.timestamp
            if p.timestamp not in (before, after):
                self.remove(count)
                return True
        return False


class AudioPassThrough:
    """The audio receiver's "jitter buffer": every packet is a whole Opus frame, passed on at once.

    aiortc's audio buffer holds four packets (80 ms) before releasing one; the mixer keeps
    its own, smaller jitter buffer, so here a packet only has to be newer than the last
    one passed on. A packet far behind (the sender restarted its sequence) resynchronises.
    The payload is the packet's private ``_data`` — the bytes aiortc's own buffer hands on.
    """

    capacity = 16

    def __init__(self) -> None:
        self._last: int | None = None
        self.late = 0

    def add(self, packet: Any) -> tuple[bool, Any]:
        seq = packet.sequence_number
        if self._last is not None:
            ahead = (seq - self._last) & 0xFFFF
            if ahead == 0 or (ahead >= 0x8000 and 0x10000 - ahead < MAX_AUDIO_MISORDER):
                self.late += 1  # a duplicate or a straggler: its moment has passed
                return False, None
        self._last = seq
        return False, JitterFrame(data=packet._data, timestamp=packet.timestamp)
