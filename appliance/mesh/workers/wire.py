"""Records between a unit and its media workers, over one Unix stream socket each.

A record is a 5-byte header (kind, length) and a body. Control records carry a small
pickled dict (both sides are the same wallmesh, started by the unit itself, so pickle is
safe here); the hot ones — an encoded video packet, an Opus packet out, a remote packet's
decoded samples in, a decoded picture's ring slot — are packed with :mod:`struct`, so the per-packet cost is a header
and one socket write. :class:`RecordProtocol` parses records from the stream as they
arrive and hands each to its callback on the loop, without a coroutine per record.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import struct
from collections.abc import Callable
from typing import Any, cast

log = logging.getLogger(__name__)

CTL = 1  # a pickled dict: {"op": ..., ...}
VIDEO = 2  # main → worker: pts (q), keyframe (B), then the access unit
AUDIO = 3  # main → worker: pts (q), then one Opus packet
AUDIO_IN = 4  # worker → main: peer handle (I), then one remote packet decoded: 48 kHz mono s16 samples
FRAME = 5  # worker → main: a picture in the ring (which slot, its size, its capture stamp)

HEADER = struct.Struct("<BI")
VIDEO_HEAD = struct.Struct("<qB")
AUDIO_HEAD = struct.Struct("<q")
HANDLE = struct.Struct("<I")
FRAME_REC = struct.Struct("<IIQIIBIQd")  # handle, slot, seq, width, height, stamped, sender, counter, capture time

#: A record's body may not exceed this (a 1080p keyframe is well under it); a longer
#: length means the stream is corrupt, and the link is closed.
MAX_RECORD = 16 * 1024 * 1024

Handler = Callable[[int, bytearray], None]


def record(kind: int, body: bytes | bytearray | memoryview) -> bytes:
    return HEADER.pack(kind, len(body)) + bytes(body)


def ctl(op: str, **fields: Any) -> bytes:
    fields["op"] = op
    return record(CTL, pickle.dumps(fields, protocol=pickle.HIGHEST_PROTOCOL))


def video(pts: int, keyframe: bool, data: bytes) -> bytes:
    return record(VIDEO, VIDEO_HEAD.pack(pts, keyframe) + data)


def audio(pts: int, data: bytes) -> bytes:
    return record(AUDIO, AUDIO_HEAD.pack(pts) + data)


def audio_in(handle: int, data: bytes) -> bytes:
    return record(AUDIO_IN, HANDLE.pack(handle) + data)


def frame(handle: int, slot: int, seq: int, width: int, height: int, stamp: Any = None) -> bytes:
    """A picture in the ring, and the capture stamp the worker read from it (or None)."""
    if stamp is None:
        return record(FRAME, FRAME_REC.pack(handle, slot, seq, width, height, 0, 0, 0, 0.0))
    return record(FRAME, FRAME_REC.pack(handle, slot, seq, width, height, 1, stamp.sender, stamp.counter,
                                        stamp.capture_time))


def load_ctl(body: bytes | bytearray) -> dict[str, Any]:
    doc = pickle.loads(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("op"), str):
        raise TypeError("a control record without an op")
    return doc


class RecordProtocol(asyncio.Protocol):
    """Parses records off a stream socket; ``on_record(kind, body)`` runs for each, then
    ``on_lost()`` once when the other side has gone (EOF, error or a corrupt stream)."""

    def __init__(self, on_record: Handler, on_lost: Callable[[], None]) -> None:
        self.on_record = on_record
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's classes

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        start, end = 0, len(buf)
        while end - start >= HEADER.size:
            kind, size = HEADER.unpack_from(buf, start)
            if size > MAX_RECORD:
                log.error("media worker link: corrupt stream (a record of %d bytes); closing it", size)
                self._close()
                return
            if end - start - HEADER.size < size:
                break
            body = buf[start + HEADER.size : start + HEADER.size + size]
            start += HEADER.size + size
            try:
                self.on_record(kind, body)
            except Exception:  # one bad record must not end the link (logged with its traceback)
                log.exception("media worker link: a record of kind %d failed", kind)
        del buf[:start]

    def send(self, data: bytes) -> bool:
        if self.transport is None or self.transport.is_closing():
            return False
        self.transport.write(data)
        return True

    @property
    def backlog(self) -> int:
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.connection_lost(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._lost:
            self._lost = True
            self.on_lost()
