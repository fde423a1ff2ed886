"""Route aiortc's keyframe requests (RTCP PLI and FIR) to the shared encoder.

aiortc 1.16.0's :class:`aiortc.RTCRtpSender` handles a PLI/FIR from the remote side by
calling its own ``_send_keyframe()``, which only sets a flag that its *internal* encoder
reads. For a track that hands over pre-encoded :class:`av.Packet`\\ s that flag is never
read, so a receiver that lost a picture would wait for the next periodic IDR.

:func:`attach_keyframe_requests` wraps that one method on one sender instance: the original
still runs, and the shared encoder is asked for a (coalesced) keyframe as well. It is the
narrowest hook aiortc offers — no subclass to substitute inside ``RTCPeerConnection``, no
RTCP parsing of our own. :func:`check_aiortc` fails loudly if a future aiortc renames it;
aiortc is pinned in pyproject.toml and ``tests/mesh/test_fanout.py`` sends a real PLI.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

_HOOK = "_send_keyframe"
_MARK = "_wallmesh_keyframe_hook"


def check_aiortc() -> None:
    """Raise :class:`RuntimeError` if aiortc's sender lacks the hook this module relies on."""
    from aiortc import RTCRtpSender

    if not callable(getattr(RTCRtpSender, _HOOK, None)):
        import aiortc

        raise RuntimeError(
            f"aiortc {aiortc.__version__}: RTCRtpSender.{_HOOK} is missing; "
            "keyframe requests cannot reach the shared encoder (wallmesh is tested with aiortc 1.16.0)"
        )


def attach_keyframe_requests(sender: Any, request_keyframe: Callable[[], None]) -> None:
    """Make every PLI/FIR that ``sender`` receives also call ``request_keyframe()``.

    Idempotent per sender: attaching twice replaces the callback rather than stacking.
    """
    check_aiortc()
    original = getattr(type(sender), _HOOK).__get__(sender)

    def on_keyframe_request() -> None:
        original()
        log.debug("keyframe requested by a receiver (RTCP PLI/FIR)")
        request_keyframe()

    setattr(on_keyframe_request, _MARK, True)
    setattr(sender, _HOOK, on_keyframe_request)


def detach_keyframe_requests(sender: Any) -> None:
    """Undo :func:`attach_keyframe_requests` (harmless when not attached)."""
    hook = sender.__dict__.get(_HOOK)
    if hook is not None and getattr(hook, _MARK, False):
        del sender.__dict__[_HOOK]
