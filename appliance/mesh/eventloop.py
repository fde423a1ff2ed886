"""The event loop a unit's processes run: uvloop when installed.

A unit receives every peer's media on UDP sockets, and the standard asyncio loop reads one datagram per socket per
loop iteration: on a busy unit, packets then wait in the kernel's socket buffers —
seconds of video at 640x480 in a 4-unit mesh on a loaded 2-core machine, measured by
``ss`` Recv-Q — while libuv drains each ready socket in one go and runs the loop faster.
"""

from __future__ import annotations

from typing import Any


def event_loop_factory() -> Any:
    """uvloop's loop when available, else the standard one (``None`` lets asyncio choose)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
