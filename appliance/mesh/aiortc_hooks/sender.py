"""Hooks on aiortc's sending side: keyframe requests for the shared encoder, and the bench's encoders.

aiortc 1.16.0's :class:`aiortc.RTCRtpSender` handles a PLI/FIR from the remote side by
calling its own ``_send_keyframe()``, which only sets a flag that its *internal* encoder
reads. For a track that hands over pre-encoded :class:`av.Packet`\\ s that flag is never
read, so a receiver that lost a picture would wait for the next periodic IDR.
:func:`on_keyframe_request` wraps that one method on one sender instance: the original
still runs, and the callback (the shared encoder's) is called as well. It is the
narrowest hook aiortc offers — no subclass to substitute inside ``RTCPeerConnection``,
no RTCP parsing of our own; ``tests/mesh/test_fanout.py`` sends a real PLI through it.

:func:`pin_h264_bitrate` and :func:`use_h264_encoder` change aiortc's own per-peer H.264
path process-wide, for ``appliance.bench.media_cpu``'s comparison runs only.
"""

from __future__ import annotations

import collections
import functools
import logging
from collections.abc import Callable
from typing import Any

from aiortc import RTCRtpSender, rtcrtpsender
from aiortc.codecs import h264

from appliance.compat import hook_off

log = logging.getLogger(__name__)

KEYFRAME_HOOK = "_send_keyframe"
KEYFRAME_OFF = "a receiver that lost a picture waits for the shared encoder's next periodic keyframe"
H264_BITRATES = ("DEFAULT_BITRATE", "MIN_BITRATE", "MAX_BITRATE")


def keyframe_hook_ok() -> bool:
    """True when aiortc's sender has ``_send_keyframe`` and its RTCP handler calls it."""
    handler = getattr(RTCRtpSender, "_handle_rtcp_packet", None)
    return callable(getattr(RTCRtpSender, KEYFRAME_HOOK, None)) and handler is not None and (
        KEYFRAME_HOOK in handler.__code__.co_names
    )


def on_keyframe_request(sender: Any, callback: Callable[[], None]) -> bool:
    """Make every PLI/FIR that ``sender`` receives also call ``callback()``.

    Idempotent per sender: attaching twice replaces the callback rather than stacking.
    Returns False (the hook reported off, once) when aiortc has no such hook.
    """
    if not keyframe_hook_ok():
        hook_off("aiortc", "keyframe requests to the shared encoder", KEYFRAME_OFF)
        return False
    original = getattr(type(sender), KEYFRAME_HOOK).__get__(sender)
    setattr(sender, KEYFRAME_HOOK, KeyframeRequestHook(original, callback))
    return True


def remove_keyframe_request(sender: Any) -> None:
    """Undo :func:`on_keyframe_request` (harmless when not attached)."""
    hook = sender.__dict__.get(KEYFRAME_HOOK)
    if isinstance(hook, KeyframeRequestHook):
        del sender.__dict__[KEYFRAME_HOOK]


class KeyframeRequestHook:
    """What a hooked sender calls for ``_send_keyframe()``: aiortc's own, then the callback."""

    __slots__ = ("callback", "original")

    def __init__(self, original: Callable[[], None], callback: Callable[[], None]) -> None:
        self.original = original
        self.callback = callback

    def __call__(self) -> None:
        self.original()
        log.debug("keyframe requested by a receiver (RTCP PLI/FIR)")
        self.callback()


#: Access units whose RTP payloads are kept for the next sender that sends them.
PACKED_KEEP = 16


def share_h264_packing() -> bool:
    """Split each access unit of the shared encoder into RTP payloads once, whatever number of
    senders send it, process-wide.

    Every :class:`aiortc.RTCRtpSender` that sends pre-encoded packets calls its own encoder's
    ``pack(packet)``: aiortc's H.264 one splits the Annex B stream into NAL units and builds
    STAP-A/FU-A payloads in Python, once per peer for the same packet object the fan-out hands
    to every peer. The result depends on the packet alone (``_packetize`` is a classmethod),
    so the payloads of the last :data:`PACKED_KEEP` packets are kept, keyed by the packet
    object itself, and the next sender gets them. Idempotent.
    """
    pack = getattr(h264.H264Encoder, "pack", None)
    packetize = getattr(h264.H264Encoder, "_packetize", None)
    if pack is None or not isinstance(h264.H264Encoder.__dict__.get("_packetize"), classmethod) or packetize is None:
        hook_off("aiortc", "shared H.264 packing", "each peer's sender splits every access unit again")
        return False
    if isinstance(pack, SharedPacking):
        return True
    h264.H264Encoder.pack = SharedPacking(pack)  # type: ignore[method-assign,assignment]
    return True


class SharedPacking:
    """``H264Encoder.pack`` memoised by packet (see :func:`share_h264_packing`); a descriptor, so
    it binds to each encoder as the original method did."""

    def __init__(self, original: Callable[[Any, Any], tuple[list[bytes], int]], keep: int = PACKED_KEEP) -> None:
        self.original = original
        self.keep = keep
        self.hits = 0
        self._recent: collections.OrderedDict[int, tuple[Any, tuple[list[bytes], int]]] = collections.OrderedDict()

    def __get__(self, encoder: Any, owner: type | None = None) -> Any:
        if encoder is None:
            return self
        return functools.partial(self.pack, encoder)

    def pack(self, encoder: Any, packet: Any) -> tuple[list[bytes], int]:
        hit = self._recent.get(id(packet))
        if hit is not None and hit[0] is packet:
            self.hits += 1
            payloads, timestamp = hit[1]
            return list(payloads), timestamp
        result = self.original(encoder, packet)
        self._recent[id(packet)] = (packet, result)  # the packet is held, so its id is not reused meanwhile
        while len(self._recent) > self.keep:
            self._recent.popitem(last=False)
        return list(result[0]), result[1]


def pin_h264_bitrate(bitrate: int) -> bool:
    """Hold aiortc's per-peer H.264 encoders at ``bitrate`` (REMB would move it), process-wide."""
    if not all(hasattr(h264, name) for name in H264_BITRATES):
        hook_off("aiortc", "pinned H.264 bitrate", "aiortc's encoders follow REMB")
        return False
    for name in H264_BITRATES:
        setattr(h264, name, bitrate)
    return True


class PresetH264Encoder(h264.H264Encoder):
    """aiortc's H264Encoder whose libx264 context is opened by ``open_context`` (e.g. the
    shared encoder's :func:`appliance.capture.x264.x264_context`) instead of aiortc's settings.

    aiortc opens the context lazily in ``_encode_frame``; opening it first makes aiortc use it.
    """

    def __init__(self, open_context: Callable[[int, int, int], Any]) -> None:
        super().__init__()
        self.open_context = open_context

    def _encode_frame(self, frame: Any, force_keyframe: bool) -> Any:
        if self.codec is None:
            self.codec = self.open_context(frame.width, frame.height, self.target_bitrate)
        return super()._encode_frame(frame, force_keyframe)


class EncoderChooser:
    """Stands in for aiortc's ``get_encoder``: :class:`PresetH264Encoder` for H.264, aiortc's otherwise."""

    def __init__(self, original: Callable[[Any], Any], open_context: Callable[[int, int, int], Any]) -> None:
        self.original = original
        self.open_context = open_context

    def __call__(self, codec: Any) -> Any:
        if codec.mimeType.lower() == "video/h264":
            return PresetH264Encoder(self.open_context)
        return self.original(codec)


def use_h264_encoder(open_context: Callable[[int, int, int], Any]) -> bool:
    """Make every new aiortc sender encode H.264 with a context from ``open_context(width,
    height, bitrate)``, process-wide (the bench's sender process)."""
    encode = getattr(h264.H264Encoder, "_encode_frame", None)
    if not callable(getattr(rtcrtpsender, "get_encoder", None)) or encode is None or "codec" not in encode.__code__.co_names:
        hook_off("aiortc", "matched x264 settings", "aiortc's per-peer encoders keep their own x264 settings")
        return False
    current = rtcrtpsender.get_encoder
    original = current.original if isinstance(current, EncoderChooser) else current
    rtcrtpsender.get_encoder = EncoderChooser(original, open_context)
    return True
