"""Everything wallmesh does inside aiortc, behind calls named for what they do.

wallmesh's receive and fan-out paths are fast because they replace private parts of
aiortc 1.16 (pinned in pyproject.toml): a receiver's decoder queue, jitter buffer and
bandwidth estimator (:mod:`.receiver`, with the replacements in :mod:`.decode`,
:mod:`.jitter` and :mod:`.inlet`), and a sender's keyframe handling (:mod:`.sender`);
its DTLS contexts get a certificate callback that works under W^X (:mod:`.dtls`).
This package is the only place in wallmesh allowed to touch aiortc's underscore names
or reassign its module globals (``tests/test_internals.py`` enforces it).

The failure policy is :mod:`appliance.compat`'s: :func:`check` (run when the unit daemon
starts) refuses an aiortc other than the pinned one, and each hook that finds aiortc's
internals changed at run time logs once that its optimisation is off and leaves aiortc's
own path in place.
"""

from __future__ import annotations

import aiortc

from appliance.compat import hook_off, installed_version, require_tested
from appliance.mesh.aiortc_hooks.decode import (
    INLINE_DECODE_MS,
    INLINE_DECODE_PIXELS,
    KEYFRAME_ASK_INTERVAL,
    MAX_DECODE_BACKLOG,
    DecodeBacklog,
    DecodeRoute,
    h264_keyframe,
)
from appliance.mesh.aiortc_hooks.dtls import install_dtls_verify
from appliance.mesh.aiortc_hooks.inlet import AudioInlet, CountingTrack
from appliance.mesh.aiortc_hooks.jitter import (
    MAX_AUDIO_MISORDER,
    MAX_GAP_WAIT,
    AudioPassThrough,
    GapSkippingJitterBuffer,
)
from appliance.mesh.aiortc_hooks.receiver import (
    GAP_SKIP_OFF,
    INLINE_AUDIO_OFF,
    INLINE_VIDEO_OFF,
    REMB_OFF,
    drop_remb,
    install_inline_audio,
    install_inline_video,
    jitter_internals_ok,
    missing_receiver_names,
)
from appliance.mesh.aiortc_hooks.sender import (
    KEYFRAME_OFF,
    keyframe_hook_ok,
    on_keyframe_request,
    pin_h264_bitrate,
    remove_keyframe_request,
    share_h264_packing,
    use_h264_encoder,
)

#: The aiortc release these hooks were verified against (and the pin in pyproject.toml).
TESTED = "1.16.0"

_CONSEQUENCES = {
    "inline video decoding": INLINE_VIDEO_OFF,
    "gap-skipping video jitter buffer": GAP_SKIP_OFF,
    "inline audio": INLINE_AUDIO_OFF,
    "REMB skipping": REMB_OFF,
}

__all__ = [
    "INLINE_DECODE_MS", "INLINE_DECODE_PIXELS", "KEYFRAME_ASK_INTERVAL", "MAX_AUDIO_MISORDER",
    "MAX_DECODE_BACKLOG", "MAX_GAP_WAIT", "TESTED", "AudioInlet", "AudioPassThrough", "CountingTrack",
    "DecodeBacklog", "DecodeRoute", "GapSkippingJitterBuffer", "check", "drop_remb", "h264_keyframe",
    "install_dtls_verify", "install_inline_audio", "install_inline_video", "on_keyframe_request", "pin_h264_bitrate",
    "remove_keyframe_request", "share_h264_packing", "use_h264_encoder",
]


def check() -> list[str]:
    """Refuse an untested aiortc; return (and log once each) the hooks its internals do not allow.

    Raises :class:`~appliance.errors.LibraryMismatch` when the installed aiortc is not the
    pinned version. A hook that is missing in the pinned version (a patched aiortc) is
    not fatal: it is reported off here, and its call falls back to aiortc's own path.
    """
    require_tested("aiortc", installed_version("aiortc", getattr(aiortc, "__version__", None)), tested=TESTED)
    off = []
    for hook, missing in missing_receiver_names().items():
        if missing:
            off.append(hook)
            hook_off("aiortc", hook, _CONSEQUENCES[hook], f"RTCRtpReceiver lacks {', '.join(missing)}")
    if not jitter_internals_ok():
        for hook in ("gap-skipping video jitter buffer", "inline audio"):
            if hook not in off:
                off.append(hook)
                hook_off("aiortc", hook, _CONSEQUENCES[hook], "its JitterBuffer or RTP handler internals differ")
    if not keyframe_hook_ok():
        off.append("keyframe requests to the shared encoder")
        hook_off("aiortc", off[-1], KEYFRAME_OFF, "RTCRtpSender._send_keyframe is not called on PLI/FIR")
    return off
