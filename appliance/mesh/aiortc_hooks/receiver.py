"""Swaps inside one aiortc receiver: its decoder queue, jitter buffer and bandwidth estimator.

:class:`aiortc.RTCRtpReceiver` keeps these as name-mangled private attributes and
offers no way to supply them; aiortc 1.16's RTP handler (``_handle_rtp_packet``)
reads each of them anew for every packet, so replacing one on an instance before
negotiation starts the receiver changes what that handler does. Every swap checks
that the attribute is there first; when it is not, the hook is reported off once
(:func:`appliance.compat.hook_off`) and the receiver keeps aiortc's own path.
"""

from __future__ import annotations

import functools
import logging
import queue
from typing import Any

from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer

from appliance.compat import hook_off
from appliance.mesh.aiortc_hooks.decode import DecodeRoute
from appliance.mesh.aiortc_hooks.inlet import AudioInlet
from appliance.mesh.aiortc_hooks.jitter import AudioPassThrough, GapSkippingJitterBuffer

log = logging.getLogger(__name__)

DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
DECODER_ERROR = "_RTCRtpReceiver__decoder_error"
DECODER_THREAD = "_RTCRtpReceiver__decoder_thread"
JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"
KIND = "_RTCRtpReceiver__kind"
BITRATE_ESTIMATOR = "_RTCRtpReceiver__remote_bitrate_estimator"
#: What each optimisation needs aiortc's receiver to set up in ``__init__`` and read per packet.
RECEIVER_NAMES = {
    "inline video decoding": (DECODER_QUEUE, DECODER_ERROR, DECODER_THREAD),
    "gap-skipping video jitter buffer": (JITTER_BUFFER, KIND),
    "inline audio": (DECODER_QUEUE, DECODER_THREAD, JITTER_BUFFER),
    "REMB skipping": (BITRATE_ESTIMATOR,),
}
#: Private parts of aiortc's JitterBuffer that GapSkippingJitterBuffer works on.
JITTER_INTERNALS = ("_origin", "_packets", "_capacity", "_remove_frame")

INLINE_VIDEO_OFF = "remote video is decoded on aiortc's decoder thread behind its unbounded queue"
GAP_SKIP_OFF = "a lost video packet stalls the picture until aiortc's buffer fills"
INLINE_AUDIO_OFF = "remote audio takes aiortc's decoder thread"
REMB_OFF = "video from other units still runs aiortc's bandwidth estimator"


def missing_receiver_names() -> dict[str, list[str]]:
    """Per optimisation, the receiver internals this aiortc lacks (empty lists when all are there).

    Read from the code of ``RTCRtpReceiver.__init__`` and ``_handle_rtp_packet``: a name has
    to be set up by the one and read by the other for a swap to take effect.
    """
    init = set(RTCRtpReceiver.__init__.__code__.co_names)
    handler = getattr(RTCRtpReceiver, "_handle_rtp_packet", None)
    used = set(handler.__code__.co_names) if handler is not None else set()
    return {hook: [n for n in names if n not in init or n not in used] for hook, names in RECEIVER_NAMES.items()}


@functools.cache
def jitter_internals_ok() -> bool:
    """True when aiortc's JitterBuffer has the ring the replacement works on, and the RTP
    handler still leaves each packet's depayloaded bytes in ``packet._data`` for the buffer."""
    probe = JitterBuffer(capacity=16, is_video=True)
    handler = getattr(RTCRtpReceiver, "_handle_rtp_packet", None)
    depayloads = handler is not None and "_data" in handler.__code__.co_names
    return all(hasattr(probe, name) for name in JITTER_INTERNALS) and depayloads


def _started(receiver: Any, hook: str) -> bool:
    if getattr(receiver, DECODER_THREAD, None) is not None:  # a wiring mistake, not aiortc's
        log.warning("%s: the receiver is already decoding, too late to install it", hook)
        return True
    return False


def install_inline_video(receiver: Any) -> DecodeRoute | None:
    """Give an aiortc video receiver a :class:`DecodeRoute` and a gap-skipping jitter buffer.

    Call it before negotiation starts the receiver. Returns None (the hook reported
    off, once) when the receiver keeps aiortc's own queue.
    """
    current = getattr(receiver, DECODER_QUEUE, None)
    error = getattr(receiver, DECODER_ERROR, None)
    if not isinstance(current, queue.Queue) or error is None or not hasattr(error, "set"):
        hook_off("aiortc", "inline video decoding", INLINE_VIDEO_OFF)
        return None
    if _started(receiver, "inline video decoding"):
        return None
    route = DecodeRoute(error.set)
    setattr(receiver, DECODER_QUEUE, route)
    if getattr(receiver, KIND, None) != "video" or getattr(receiver, JITTER_BUFFER, None) is None:
        hook_off("aiortc", "gap-skipping video jitter buffer", GAP_SKIP_OFF)
    elif not jitter_internals_ok():
        hook_off("aiortc", "gap-skipping video jitter buffer", GAP_SKIP_OFF, "its JitterBuffer internals differ")
    else:
        setattr(receiver, JITTER_BUFFER, GapSkippingJitterBuffer())
    return route


def install_inline_audio(receiver: Any) -> AudioInlet | None:
    """Give an aiortc audio receiver an :class:`AudioInlet` and an :class:`AudioPassThrough`.

    Call it before negotiation starts the receiver. Returns None (the hook reported off,
    once) when the receiver keeps aiortc's own path: decoded frames through the track.
    """
    if not isinstance(getattr(receiver, DECODER_QUEUE, None), queue.Queue) or getattr(receiver, JITTER_BUFFER, None) is None:
        hook_off("aiortc", "inline audio", INLINE_AUDIO_OFF)
        return None
    if not jitter_internals_ok():
        hook_off("aiortc", "inline audio", INLINE_AUDIO_OFF, "its JitterBuffer or RTP handler internals differ")
        return None
    if _started(receiver, "inline audio"):
        return None
    inlet = AudioInlet()
    setattr(receiver, DECODER_QUEUE, inlet)
    setattr(receiver, JITTER_BUFFER, AudioPassThrough())
    return inlet


def drop_remb(receiver: Any) -> bool:
    """Stop an aiortc video receiver from estimating the sender's bandwidth (REMB).

    aiortc runs a receive-side bandwidth estimator over every video packet to send REMB
    feedback, which only a sender with its own per-peer encoder can act on. A wallmesh
    unit sends one shared encoding and picks its tier from loss figures
    (:mod:`appliance.mesh.quality`), so REMB sent to a unit is ignored; the estimator is
    a tenth of a loaded unit's loop. Keep it for browsers, which do follow REMB.
    Returns False (the hook reported off, once) when the estimator stays.
    """
    if getattr(receiver, BITRATE_ESTIMATOR, None) is None:
        hook_off("aiortc", "REMB skipping", REMB_OFF)
        return False
    setattr(receiver, BITRATE_ESTIMATOR, None)
    return True
