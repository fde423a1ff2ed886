"""Remote audio without aiortc's decoder thread: Opus payloads handed to the mixer on the loop.

:class:`AudioInlet` stands in for an audio receiver's decoder queue (installed by
:func:`appliance.mesh.aiortc_hooks.install_inline_audio`); :class:`CountingTrack` is the
track the mixer pulls from, counting what still comes through aiortc's decoder and
pointing the mixer at the inlet (its :attr:`CountingTrack.inlet`).
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from typing import Any, Protocol

from aiortc import MediaStreamTrack

from appliance.mesh.aiortc_hooks.decode import PacketPathLog


class AudioInlet(queue.Queue, PacketPathLog):
    """An aiortc audio receiver's decoder queue that hands Opus payloads straight to the mixer.

    aiortc decodes remote audio on a thread per receiver and hops every decoded 20 ms
    frame back to the loop; with five peers that is hundreds of thread hand-offs a
    second, each a fight for the GIL. This queue is fed on the loop (by aiortc's RTP
    handler) and passes each Opus payload to :meth:`connect`'s callback right there —
    the mixer decodes it once, straight to 48 kHz mono. Other codecs, and the end
    marker, still go to aiortc's decoder thread. Until a callback is connected the
    payloads are counted and dropped (nothing would play them).
    """

    def __init__(self) -> None:
        super().__init__()
        self._deliver: Callable[[bytes], None] | None = None
        self.frames = 0
        self.errors = 0
        self.last_frame_at: float | None = None

    def connect(self, deliver: Callable[[bytes], None] | None) -> None:
        self._deliver = deliver

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None or item[0].mimeType.lower() != "audio/opus":
            return super().put(item, block, timeout)
        self.frames += 1
        self.last_frame_at = time.monotonic()
        if self._deliver is not None:
            try:
                self._deliver(item[1].data)
            except Exception:  # noqa: BLE001 - inside aiortc's RTP handler an exception would end the peer's transport
                self.errors += 1
                self.log_failure_once("a remote audio packet could not be played", exc_info=True)
        return None


class DecodedAudioOwner(Protocol):
    """What :class:`CountingTrack` reads from and counts into (``appliance.mesh.receive.AudioReceiver``)."""

    remote: Any
    inlet: AudioInlet | None
    decoded_frames: int
    decoded_at: float | None


class CountingTrack(MediaStreamTrack):
    """A pass-through of one remote audio track that counts the frames aiortc decoded."""

    kind = "audio"

    def __init__(self, owner: DecodedAudioOwner) -> None:
        super().__init__()
        self.owner = owner

    async def recv(self) -> Any:
        frame = await self.owner.remote.recv()
        self.owner.decoded_frames += 1
        self.owner.decoded_at = time.monotonic()
        return frame

    @property
    def inlet(self) -> AudioInlet | None:
        """Opus payloads pushed on the loop, bypassing :meth:`recv` (see :class:`AudioInlet`)."""
        return self.owner.inlet
