"""The unit's speaker output stage: software volume, then a peak limiter, before the DAC.

The mixer sums every remote peer into one 10 ms frame; loud peers, or the volume turned up,
push that sum past full scale, and clipping it there (``np.clip``) sends flat-topped, harsh
distortion into the room (the echo reference holds the same clipped samples, so the echo
canceller copes; the people in the room do not). :class:`OutputLimiter` scales the mix by the
volume and then lowers the gain smoothly wherever a peak would pass its ceiling (-1 dBFS by
default), so the unit never clips its own output.

It must run in the speaker path *before* the echo reference is taken: the frame it returns is
the one written to the sink and put into :class:`~appliance.mesh.audio.EchoReference`. Then
the limiter's gain changes are in the reference and AEC3 sees them as part of the signal.

How: frames are split into 1 ms sub-blocks. The gain is a knot at every sub-block boundary,
linearly interpolated between knots; the knot at the start of a sub-block is at most the gain
that block's peak needs and the one the block before it needs, so every sample stays under the
ceiling (the interpolation of two gains that are both low enough is low enough). Knowing the
next block's gain takes one sub-block of look-ahead: the limiter delays the audio by 1 ms.
Between peaks the gain recovers towards 1 with a 60 ms time constant (release). Deterministic
and cheap: a loop over ten sub-blocks per frame, the samples themselves in numpy.
"""

from __future__ import annotations

import math

import numpy as np

RATE = 48_000
BLOCK = RATE // 1000  # 1 ms sub-blocks: the look-ahead and the gain's resolution
_RAMP = np.arange(BLOCK) / BLOCK


class OutputLimiter:
    """Volume and peak limiting of the mixed speaker signal, 1 ms of delay.

    :meth:`process` takes a mixed frame (int16, or the int32 sum of several peers before it is
    clipped) of a multiple of 1 ms and returns int16 samples, 1 ms late, whose peaks never pass
    ``ceiling_dbfs``. ``gain_db`` is the gain reduction applied to the last frame (≤ 0).
    """

    def __init__(self, *, volume_db: float = 0.0, ceiling_dbfs: float = -1.0, release_ms: float = 60.0) -> None:
        if ceiling_dbfs > 0:
            raise ValueError(f"the limiter's ceiling is at most 0 dBFS, not {ceiling_dbfs}")
        self.volume_db = float(volume_db)
        self.ceiling = math.floor(32768.0 * 10 ** (ceiling_dbfs / 20))  # whole LSBs: rounding never passes it
        self._release = math.exp(-1.0 / (release_ms / 1000.0 * RATE / BLOCK)) if release_ms > 0 else 0.0
        self.reset()

    def reset(self) -> None:
        """Silence in the look-ahead, full gain."""
        self._held = np.zeros(BLOCK)  # the sub-block waiting for its successor (the look-ahead)
        self._held_need = 1.0  # the gain the held block needs
        self._knot = 1.0  # the gain at the start of the held block
        self.gain_db = 0.0

    def set_volume_db(self, volume_db: float) -> None:
        self.volume_db = float(volume_db)

    def process(self, frame: np.ndarray) -> np.ndarray:
        x = np.asarray(frame).reshape(-1).astype(np.float64)
        if self.volume_db:
            x *= 10 ** (self.volume_db / 20)
        if x.size % BLOCK:
            raise ValueError(f"the limiter takes whole milliseconds ({BLOCK} samples), not {x.size} samples")
        blocks = x.reshape(-1, BLOCK)
        peaks = np.max(np.abs(blocks), axis=1)
        needs = np.minimum(1.0, self.ceiling / np.maximum(peaks, 1e-12))  # silence needs no reduction
        # The gain knots are a short scalar recursion (one per 1 ms); the samples are done in numpy.
        count = len(blocks)
        starts = np.empty(count)
        ends = np.empty(count)
        knot, held_need = self._knot, self._held_need
        for b, need in enumerate(needs.tolist()):
            released = 1.0 - (1.0 - knot) * self._release
            end = min(held_need, need, released)  # the knot between the held block and this one: low enough for both
            starts[b], ends[b] = knot, end
            knot, held_need = end, need
        held = np.concatenate([self._held[None, :], blocks[:-1]])  # each output block is the one before it
        out = held * (starts[:, None] + (ends - starts)[:, None] * _RAMP[None, :])
        self._held, self._held_need, self._knot = blocks[-1].copy(), held_need, knot
        self.gain_db = 20 * math.log10(min(1.0, float(starts.min()), float(ends.min())))
        # a last guard against float rounding; the gains above already keep every peak under the ceiling
        return np.clip(np.round(out.reshape(-1)), -32768, 32767).astype(np.int16)


def limit(signal: np.ndarray, *, volume_db: float = 0.0, ceiling_dbfs: float = -1.0) -> np.ndarray:
    """A whole float signal (full scale 1.0) through a fresh :class:`OutputLimiter`, 10 ms at a time.

    Returns float samples aligned with the input (the limiter's 1 ms delay taken out): what the
    unit plays for ``signal`` at ``volume_db``, and therefore its echo reference.
    """
    x = np.asarray(signal, dtype=np.float64) * 32768.0
    frame = RATE // 100
    count = -(-(len(x) + BLOCK) // frame)
    padded = np.pad(x, (0, count * frame - len(x)))
    limiter = OutputLimiter(volume_db=volume_db, ceiling_dbfs=ceiling_dbfs)
    out = np.concatenate([limiter.process(padded[k * frame : (k + 1) * frame]) for k in range(count)])
    return out[BLOCK : BLOCK + len(x)].astype(np.float64) / 32768.0
