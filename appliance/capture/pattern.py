"""The test-pattern camera: moving yuv420p frames that carry a machine-readable stamp.

Every frame has, in a band of black and white blocks near its top edge, a 128-bit stamp:
a sync word, the sender id, a frame counter, the wall-clock capture time in milliseconds
(``time.time()`` based, so it compares across processes on one machine) and a CRC-16.
The blocks are big enough (``width / 36`` pixels, about 9 px at 320×240) to survive H.264 at
250 kbps; the reader samples each block's centre and uses the sync word's known bits to
pick its threshold, so it also works on decoded, scaled or RGB-converted frames.

Below and around the band the picture moves — a scrolling texture of gradients, blobs
and fine detail, a bouncing box and a little sensor-like noise — so the encoder does
roughly the work a real camera gives it, rather than coding a flat field for free.

:func:`stamp_frame` and :func:`read_stamp` are the public stamp API; the receiver side and
the display call :func:`read_stamp` to measure glass-to-glass latency.
"""

from __future__ import annotations

import asyncio
import binascii
import functools
import logging
import time
from dataclasses import dataclass

import av
import numpy as np

from appliance.capture.base import VIDEO_CLOCK, VIDEO_TIME_BASE, VideoSource

log = logging.getLogger(__name__)

SYNC = 0xA5C3
COLS, ROWS = 32, 4
BITS = COLS * ROWS  # 16 sync + 16 sender + 32 counter + 48 time + 16 crc
BLACK, WHITE = 16, 235


@dataclass(frozen=True)
class Stamp:
    """What a test-pattern frame says about itself."""

    sender: int  # 0..65535
    counter: int  # frame number, modulo 2**32
    capture_time: float  # seconds since the epoch (time.time()), millisecond resolution

    @property
    def capture_ms(self) -> int:
        return round(self.capture_time * 1000)


def sender_id(name: str) -> int:
    """A stable 16-bit sender id for a unit or peer name."""
    return binascii.crc_hqx(name.encode(), 0) & 0xFFFF


def block_size(width: int) -> float:
    """Side of one stamp block, in pixels, for a frame ``width`` pixels wide.

    Every position in the band is a fixed fraction of the width, so a scaled copy of a
    frame (a display tile, an upscaled tier switch) still reads correctly.
    """
    return width / 36


@functools.lru_cache(maxsize=16)
def _layout(width: int) -> tuple[slice, slice, np.ndarray, np.ndarray]:
    """Band rectangle and, for each pixel row/column in it, the stamp row/column it shows."""
    u = block_size(width)
    top, bottom = round(0.5 * u), round((0.5 + ROWS) * u)
    left, right = round(2 * u), round((2 + COLS) * u)
    rows = np.clip(((np.arange(top, bottom) + 0.5) / u - 0.5).astype(int), 0, ROWS - 1)
    cols = np.clip(((np.arange(left, right) + 0.5) / u - 2).astype(int), 0, COLS - 1)
    return slice(top, bottom), slice(left, right), rows, cols


@functools.lru_cache(maxsize=16)
def _samples(width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel rows and columns sampled in the middle of every block (5×5 points each)."""
    u = block_size(width)
    f = np.array([0.3, 0.4, 0.5, 0.6, 0.7])
    ys = ((0.5 + np.arange(ROWS)[:, None] + f[None, :]) * u).astype(int).ravel()
    xs = ((2 + np.arange(COLS)[:, None] + f[None, :]) * u).astype(int).ravel()
    return ys, xs


def _payload(stamp: Stamp) -> bytes:
    return (
        (stamp.sender & 0xFFFF).to_bytes(2, "big")
        + (stamp.counter & 0xFFFFFFFF).to_bytes(4, "big")
        + (stamp.capture_ms & 0xFFFFFFFFFFFF).to_bytes(6, "big")
    )


def _bits(stamp: Stamp) -> list[int]:
    payload = _payload(stamp)
    crc = binascii.crc_hqx(payload, 0xFFFF)
    data = SYNC.to_bytes(2, "big") + payload + crc.to_bytes(2, "big")
    return [(byte >> (7 - i)) & 1 for byte in data for i in range(8)]


def stamp_planes(y: np.ndarray, u: np.ndarray | None, v: np.ndarray | None, stamp: Stamp) -> None:
    """Write ``stamp`` in place into a frame's planes (chroma made neutral under the band)."""
    height, width = y.shape
    rs, cs, rows, cols = _layout(width)
    if rs.stop > height or width < 72:
        raise ValueError(f"frame {width}x{height} too small for a stamp")
    band = np.array([WHITE if bit else BLACK for bit in _bits(stamp)], dtype=np.uint8).reshape(ROWS, COLS)
    y[rs, cs] = band[rows[:, None], cols[None, :]]
    for plane in (u, v):
        if plane is not None:
            plane[rs.start // 2 : (rs.stop + 1) // 2, cs.start // 2 : (cs.stop + 1) // 2] = 128


def stamp_frame(frame: av.VideoFrame, stamp: Stamp) -> av.VideoFrame:
    """A copy of ``frame`` (any format) as ``yuv420p`` with ``stamp`` written into it."""
    yuv = frame.reformat(format="yuv420p") if frame.format.name != "yuv420p" else frame
    y, u, v = (_plane(yuv, i) for i in range(3))
    stamp_planes(y, u, v, stamp)
    out = _from_planes(y, u, v)
    out.pts = frame.pts
    if frame.time_base is not None:
        out.time_base = frame.time_base
    return out


def read_stamp(image: av.VideoFrame | np.ndarray) -> Stamp | None:
    """Decode the stamp from a frame, a luma array (H×W) or an RGB array (H×W×3).

    Returns ``None`` when there is no valid stamp (no sync word, or a CRC mismatch).
    """
    if isinstance(image, av.VideoFrame):
        luma = _plane(image, 0, copy=False) if image.format.name in ("yuv420p", "yuvj420p", "nv12", "gray") else image.to_ndarray(format="gray")
    else:
        luma = np.asarray(image)
        rgb = luma.ndim == 3 and luma.shape[2] in (1, 3, 4)
        if not (luma.ndim == 2 or rgb) or not np.issubdtype(luma.dtype, np.number):
            return None
    height, width = luma.shape[:2]
    if width < 72 or _layout(width)[0].stop > height:
        return None
    ys, xs = _samples(width)
    cells = luma[ys[:, None], xs[None, :]].astype(np.float32)  # only the sampled points, even for RGB
    if cells.ndim == 3:
        cells = cells[..., :3].mean(axis=2)
    cells = cells.reshape(ROWS, 5, COLS, 5).mean(axis=(1, 3)).ravel()
    sync_bits = np.array([(SYNC >> (15 - i)) & 1 for i in range(16)], dtype=bool)
    ones, zeros = cells[:16][sync_bits], cells[:16][~sync_bits]
    if ones.min() - zeros.max() < 40:
        return None
    bits = cells > (ones.mean() + zeros.mean()) / 2
    data = np.packbits(bits).tobytes()
    if int.from_bytes(data[:2], "big") != SYNC:
        return None
    payload, crc = data[2:14], int.from_bytes(data[14:16], "big")
    if binascii.crc_hqx(payload, 0xFFFF) != crc:
        return None
    return Stamp(
        sender=int.from_bytes(payload[0:2], "big"),
        counter=int.from_bytes(payload[2:6], "big"),
        capture_time=int.from_bytes(payload[6:12], "big") / 1000,
    )


def _plane(frame: av.VideoFrame, index: int, copy: bool = True) -> np.ndarray:
    plane = frame.planes[index]
    rows = frame.height if index == 0 else (frame.height + 1) // 2
    cols = frame.width if index == 0 else (frame.width + 1) // 2
    buf = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(-1, plane.line_size)
    view = buf[:rows, :cols]
    return view.copy() if copy else view


def _from_planes(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> av.VideoFrame:
    height, width = y.shape
    frame = av.VideoFrame(width, height, "yuv420p")
    for plane, data in zip(frame.planes, (y, u, v), strict=True):
        rows, cols = data.shape
        view = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(-1, plane.line_size)
        view[:rows, :cols] = data
    return frame


class _Texture:
    """Precomputed content, twice the frame size, so each frame is a cheap window copy."""

    def __init__(self, width: int, height: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.width, self.height = width, height
        h2, w2 = 2 * height, 2 * width
        yy = np.arange(h2, dtype=np.float32)[:, None]
        xx = np.arange(w2, dtype=np.float32)[None, :]
        base = 128 + 50 * np.sin(xx * 2 * np.pi / width * 3) * np.cos(yy * 2 * np.pi / height * 2)
        blobs = rng.random((h2 // 16 + 1, w2 // 16 + 1), dtype=np.float32)
        base += 60 * (np.kron(blobs, np.ones((16, 16), dtype=np.float32))[:h2, :w2] - 0.5)
        base += rng.normal(0, 10, (h2, w2)).astype(np.float32)  # fine detail
        self.luma = np.clip(base, 0, 255).astype(np.uint8)
        cy, cx = yy[: height, :] / 2, xx[:, : width] / 2
        self.u = np.clip(128 + 40 * np.sin(cx / 23 + cy / 41), 0, 255).astype(np.uint8)
        self.v = np.clip(128 + 40 * np.cos(cx / 31 - cy / 17), 0, 255).astype(np.uint8)
        self.noise = [rng.integers(-4, 5, (height, width), dtype=np.int16) for _ in range(4)]

    def frame(self, n: int, stamp: Stamp) -> av.VideoFrame:
        w, h = self.width, self.height
        ox, oy = (n * 3) % w, (n * 2) % h
        y = self.luma[oy : oy + h, ox : ox + w].astype(np.int16)
        y += self.noise[n % 4]
        bx = abs((n * 7) % (2 * (w - w // 5)) - (w - w // 5))
        by = abs((n * 5) % (2 * (h - h // 5)) - (h - h // 5))
        y[by : by + h // 5, bx : bx + w // 5] = 220 - (n % 60)
        y = np.clip(y, 0, 255).astype(np.uint8)
        cu, cv = (n * 2) % (w // 2), (n * 3) % (h // 2)
        u = np.roll(self.u, cu, axis=1)[: (h + 1) // 2, : (w + 1) // 2].copy()
        v = np.roll(self.v, cv, axis=0)[: (h + 1) // 2, : (w + 1) // 2].copy()
        stamp_planes(y, u, v, stamp)
        return _from_planes(y, u, v)


class PatternSource(VideoSource):
    """A paced test-pattern camera whose every frame carries a :class:`Stamp`."""

    def __init__(self, *, width: int = 640, height: int = 480, fps: int = 30, sender: int = 0) -> None:
        self.width, self.height, self.fps = width, height, fps
        self.sender = sender & 0xFFFF
        self.counter = 0
        self._texture: _Texture | None = None
        self._start: float | None = None
        self._next = 0.0

    async def start(self) -> None:
        if self._texture is None or (self._texture.width, self._texture.height) != (self.width, self.height):
            self._texture = await asyncio.to_thread(_Texture, self.width, self.height, self.sender)
        self._start = time.monotonic()
        self._next = self._start

    async def read(self) -> av.VideoFrame:
        if self._start is None:
            await self.start()
        if self._texture is None or (self._texture.width, self._texture.height) != (self.width, self.height):
            self._texture = await asyncio.to_thread(_Texture, self.width, self.height, self.sender)
        now = time.monotonic()
        if self._next > now:
            await asyncio.sleep(self._next - now)
        elif now - self._next > 2 / self.fps:
            self._next = now  # fell behind (a stalled loop): do not burst to catch up
        self._next += 1 / self.fps
        assert self._start is not None
        stamp = Stamp(self.sender, self.counter, time.time())
        # ~1 ms of numpy at 640x480 but ~6 ms at 1080p (the top quality tier): off the loop, like a camera thread
        frame = await asyncio.to_thread(self._texture.frame, self.counter, stamp)
        frame.pts = int((time.monotonic() - self._start) * VIDEO_CLOCK)
        frame.time_base = VIDEO_TIME_BASE
        self.counter = (self.counter + 1) & 0xFFFFFFFF
        return frame

    async def close(self) -> None:
        self._start = None
