"""The video receiver's decoder queue, replaced: a bounded backlog, and inline decoding.

aiortc's :class:`~aiortc.RTCRtpReceiver` puts every completed picture on a queue that
its decoder thread reads. :class:`DecodeBacklog` is that queue, kept short;
:class:`DecodeRoute` decodes small pictures right where aiortc completes them (on the
event loop) and only hands big ones to the thread. :func:`appliance.mesh.aiortc_hooks.install_inline_video`
puts a :class:`DecodeRoute` in place of aiortc's queue.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from typing import Any

import av
from aiortc.codecs import get_decoder

from appliance.mesh.budget import LoopBudget

log = logging.getLogger(__name__)

#: Encoded frames allowed to wait for the decoder (about 200 ms at 30 fps) before the
#: receiver skips ahead to a fresh keyframe instead of decoding stale pictures.
MAX_DECODE_BACKLOG = 6
#: At most one keyframe request per this many seconds from one receiver: keyframes are
#: the expensive pictures, and an overloaded receiver must not make its senders worse.
KEYFRAME_ASK_INTERVAL = 1.0
#: A stream whose pictures decode in less than this many CPU ms (smoothed) is decoded on
#: the event loop; slower ones go to aiortc's decoder thread (see :mod:`appliance.mesh.budget`).
INLINE_DECODE_MS = 3.0
#: Pictures bigger than this (640×480) always go to the decoder thread, from the first one.
INLINE_DECODE_PIXELS = 640 * 480


def h264_keyframe(data: bytes) -> bool:
    """True when an Annex B access unit holds an IDR slice (NAL type 5) or an SPS (7)."""
    at = data.find(b"\x00\x00\x01")
    while at != -1 and at + 3 < len(data):
        if data[at + 3] & 0x1F in (5, 7):
            return True
        at = data.find(b"\x00\x00\x01", at + 3)
    return False


class PacketPathLog:
    """Logs a failure on a per-packet path once per owner, not once per packet."""

    failure_logged = False

    def log_failure_once(self, message: str, *args: Any, exc_info: bool = False) -> None:
        if not self.failure_logged:
            self.failure_logged = True
            log.warning(message, *args, exc_info=exc_info)


class DecodeBacklog(queue.Queue, PacketPathLog):
    """aiortc's queue of encoded frames for one receiver's decoder thread, kept short.

    aiortc decodes on a thread fed by an unbounded queue; when the machine cannot
    decode as fast as frames arrive, pictures would wait there and latency grow
    without end. This queue keeps at most :data:`MAX_DECODE_BACKLOG` frames: beyond
    that it drops the backlog, asks the sender for a keyframe (through the receiver's
    own decode-error signal, which makes aiortc send an RTCP PLI) and drops inter
    frames until the keyframe arrives. A keyframe arriving behind a backlog replaces it.
    """

    def __init__(self, ask_keyframe: Callable[[], None], max_backlog: int = MAX_DECODE_BACKLOG) -> None:
        super().__init__()
        self.ask_keyframe = ask_keyframe
        self.max_backlog = max_backlog
        self.dropped = 0
        self.skips = 0
        self._waiting_for_key = False
        self._asked_at = float("-inf")

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:  # the receiver is stopping: always deliver the end marker
            return super().put(item, block, timeout)
        frame = item[1]
        key = h264_keyframe(bytes(frame.data[:4096])) if item[0].mimeType.lower() == "video/h264" else False
        with self.mutex:
            backlog = len(self.queue)
            if key:
                self._waiting_for_key = False
                if backlog >= 2:
                    self.dropped += backlog
                    self.queue.clear()
            elif self._waiting_for_key:
                self.dropped += 1
            elif backlog >= self.max_backlog:
                self.dropped += backlog + 1
                self.skips += 1
                self.queue.clear()
                self._waiting_for_key = True
        if not key and self._waiting_for_key:
            self._ask()
            return None
        return super().put(item, block, timeout)

    def _ask(self) -> None:
        """Ask the sender for a keyframe, at most once per :data:`KEYFRAME_ASK_INTERVAL`."""
        now = time.monotonic()
        if now - self._asked_at >= KEYFRAME_ASK_INTERVAL:
            self._asked_at = now
            self.ask_keyframe()


class DecodeRoute(DecodeBacklog):
    """Where one video receiver's pictures are decoded: on the loop while that is cheap,
    on aiortc's decoder thread (behind the bounded backlog) once it is not.

    Handing a picture to a thread and the decoded frame back costs two wake-ups and a
    fight for the GIL — more than decoding a small (320×240, 640×480) picture. So each
    completed picture is decoded right where aiortc's RTP handler completes it, by a
    single-threaded decoder, timed, and the frame goes straight to :meth:`connect`'s
    callback. When the smoothed decode cost exceeds ``budget_ms`` (big pictures would
    stall the loop), the stream moves to the thread for good, restarting there at a
    fresh keyframe.
    """

    def __init__(self, ask_keyframe: Callable[[], None], *, budget_ms: float = INLINE_DECODE_MS, **kwargs: Any) -> None:
        super().__init__(ask_keyframe, **kwargs)
        self.budget = LoopBudget(budget_ms)
        self.inline = True
        self.discard = False  # count completed pictures and drop them undecoded (the bench's load peers)
        self.discarded = 0
        self.decoded = 0
        self.errors = 0
        self._deliver: Callable[[Any], None] | None = None
        self._decoder: Any = None
        self._codec_name: str | None = None

    def connect(self, deliver: Callable[[Any], None] | None) -> None:
        self._deliver = deliver
        if deliver is None:  # the link is gone: let the decoder go with it
            self._decoder, self._codec_name = None, None

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is not None and self.discard:
            self.discarded += 1
            return None
        if item is None or not self.inline:
            return super().put(item, block, timeout)
        codec, encoded = item
        if codec.name != self._codec_name:
            self._decoder, self._codec_name = get_decoder(codec), codec.name
            context = getattr(self._decoder, "codec", None)
            if context is not None and not context.is_open:
                context.thread_count = 1  # no helper threads: their wake-ups are what inline saves
        # This runs inside aiortc's RTP handler: an exception here would end the peer's
        # transport, so nothing may escape — a bad picture is dropped, never the link.
        self.budget.start()
        try:
            frames = self._decoder.decode(encoded)
        except Exception as exc:  # noqa: BLE001 - lost picture data: keep the decoder, ask for a keyframe
            if not isinstance(exc, av.FFmpegError):
                self.log_failure_once("video decoder failed on a picture: %r", exc)
            self.errors += 1
            self._ask()
            return None
        too_slow = self.budget.stop()
        for frame in frames:
            self.decoded += 1
            if frame.width * frame.height > INLINE_DECODE_PIXELS:
                too_slow = True  # a big picture (a browser's HD camera): off the loop at once
            if self._deliver is not None:
                try:
                    self._deliver(frame)
                except Exception:  # noqa: BLE001 - the receiver's problem; the next picture is tried again
                    self.errors += 1
                    self.log_failure_once("a decoded picture could not be delivered", exc_info=True)
        if too_slow:
            log.info("video decode takes %.1f ms a picture: moving it off the event loop", self.budget.ms)
            self.inline = False
            self._decoder = None
            self._waiting_for_key = True  # the thread's decoder starts at a keyframe
            self._ask()
        return None
