"""Decoded pictures from a media worker to the unit, through shared memory.

The unit makes one memory file (``memfd``) per worker and hands it to the worker at
spawn; the worker maps it too. It holds :data:`RINGS` rings of :data:`SLOTS` picture
slots, one ring per remote peer the worker serves. A worker writes each decoded picture
(``yuv420p`` planes, packed) into the next slot of its peer's ring and sends only a small
``FRAME`` record naming the slot; the unit copies the planes out into an
:class:`av.VideoFrame` of its own when the record arrives. A slot's header holds a
sequence number that is zero while the worker writes: the unit checks it before and
after its copy, so a picture overwritten meanwhile (the unit fell three pictures behind
on that peer) is dropped, never shown torn. Pages are touched only as pictures of that
size arrive, so a small picture costs only its own size.
"""

from __future__ import annotations

import mmap
import os
import struct
import time

import av
import numpy as np

RINGS = 8  # peers one worker can serve at once (a room is at most six, and a rebuild overlaps)
SLOTS = 3  # pictures in flight per peer
MAX_WIDTH, MAX_HEIGHT = 1920, 1088
SLOT_HEADER = struct.Struct("<QQ")  # sequence (0 while written), bytes of pixels
SLOT_BYTES = 64 + MAX_WIDTH * MAX_HEIGHT * 3 // 2
REGION_BYTES = RINGS * SLOTS * SLOT_BYTES


def make_region() -> int:
    """A new memory file for one worker's rings; the caller owns (and closes) the fd."""
    fd = os.memfd_create("wallmesh-pictures", os.MFD_CLOEXEC)
    os.ftruncate(fd, REGION_BYTES)
    return fd


def _planes(width: int, height: int) -> list[tuple[int, int]]:
    cw, ch = (width + 1) // 2, (height + 1) // 2
    return [(width, height), (cw, ch), (cw, ch)]


def fits(width: int, height: int) -> bool:
    return 0 < width <= MAX_WIDTH and 0 < height <= MAX_HEIGHT


class PictureWriter:
    """The worker's side: write a picture into a ring's next slot."""

    def __init__(self, fd: int) -> None:
        self._map = mmap.mmap(fd, REGION_BYTES)
        self._next = [0] * RINGS
        # a restarted worker writes into the same memory: its sequence numbers must not repeat the
        # last one's, or a copy the unit still owes could take a new picture for an old one
        self._seq = time.time_ns()
        self.oversize = 0

    def write(self, ring: int, frame: av.VideoFrame) -> tuple[int, int] | None:
        """Copy ``frame`` into ``ring``; returns (slot, sequence), or None for a picture too big."""
        if frame.format.name not in ("yuv420p", "yuvj420p"):
            frame = frame.reformat(format="yuv420p")
        width, height = frame.width, frame.height
        if not fits(width, height):
            self.oversize += 1
            return None
        k = self._next[ring]
        self._next[ring] = (k + 1) % SLOTS
        slot = ring * SLOTS + k
        base = slot * SLOT_BYTES
        SLOT_HEADER.pack_into(self._map, base, 0, 0)
        at = base + 64
        for plane, (pw, ph) in zip(frame.planes, _planes(width, height), strict=True):
            src = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)[:ph, :pw]
            np.frombuffer(self._map, np.uint8, count=pw * ph, offset=at).reshape(ph, pw)[:] = src
            at += pw * ph
        self._seq += 1
        SLOT_HEADER.pack_into(self._map, base, self._seq, at - base - 64)
        return slot, self._seq

    def close(self) -> None:
        self._map.close()


class PictureReader:
    """The unit's side: copy a picture out of a slot the worker named."""

    def __init__(self, fd: int) -> None:
        self._map = mmap.mmap(fd, REGION_BYTES)
        self.torn = 0  # pictures overwritten before the unit copied them

    def read(self, slot: int, seq: int, width: int, height: int) -> av.VideoFrame | None:
        if not (0 <= slot < RINGS * SLOTS) or not fits(width, height):
            return None
        base = slot * SLOT_BYTES
        if SLOT_HEADER.unpack_from(self._map, base)[0] != seq:
            self.torn += 1
            return None
        frame = av.VideoFrame(width, height, "yuv420p")
        at = base + 64
        for plane, (pw, ph) in zip(frame.planes, _planes(width, height), strict=True):
            dst = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)[:ph, :pw]
            dst[:] = np.frombuffer(self._map, np.uint8, count=pw * ph, offset=at).reshape(ph, pw)
            at += pw * ph
        if SLOT_HEADER.unpack_from(self._map, base)[0] != seq:
            self.torn += 1
            return None
        return frame

    def close(self) -> None:
        self._map.close()
