"""Route aiortc's keyframe requests (RTCP PLI and FIR) to the shared encoder.

A receiver that lost a picture sends PLI/FIR; aiortc's sender only tells its *internal*
encoder, which a track of pre-encoded packets does not have. The shared encoder must
hear it instead, or the receiver waits for the next periodic IDR. The hook that makes
that happen is :func:`appliance.mesh.aiortc_hooks.on_keyframe_request` (where the why
is told in full); this module is the shared encoder's side of it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from appliance.mesh import aiortc_hooks


def check_aiortc() -> None:
    """Refuse an aiortc other than the pinned one (:class:`~appliance.errors.LibraryMismatch`);
    a hook it lacks is reported off once, and keyframe requests then fall back to aiortc's
    own handling (the shared encoder's periodic keyframes)."""
    aiortc_hooks.check()


def attach_keyframe_requests(sender: Any, request_keyframe: Callable[[], None]) -> bool:
    """Make every PLI/FIR that ``sender`` receives also call ``request_keyframe()``.

    Idempotent per sender: attaching twice replaces the callback rather than stacking.
    False when aiortc offers no hook (reported once; see the module docstring).
    """
    return aiortc_hooks.on_keyframe_request(sender, request_keyframe)


def detach_keyframe_requests(sender: Any) -> None:
    """Undo :func:`attach_keyframe_requests` (harmless when not attached)."""
    aiortc_hooks.remove_keyframe_request(sender)
