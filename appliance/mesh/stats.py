"""Per-peer network figures from aiortc's ``getStats()``: bitrate, packet loss, round-trip time.

:class:`StatsSampler` turns the cumulative counters of successive reports into
rates over the interval between two samples; the first sample only primes it.
Every loss here is a fraction 0..1, whatever unit aiortc reports it in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from appliance.mesh.quality import rtcp_fraction


@dataclass
class LinkFigures:
    """What status, the display's signal bars and the quality policy read about one peer."""

    bitrate: float | None = None  # bits/s received from the peer (all media)
    loss: float | None = None  # fraction of the peer's packets lost over the last interval
    rtt: float | None = None  # seconds, from the peer's receiver reports on our video
    out_loss: float | None = None  # fraction of our packets the peer reports lost

    def as_dict(self) -> dict[str, Any]:
        def r(v: float | None, n: int) -> float | None:
            return None if v is None else round(v, n)

        return {"bitrate": r(self.bitrate, 0), "loss": r(self.loss, 4), "rtt": r(self.rtt, 4), "out_loss": r(self.out_loss, 4)}


class StatsSampler:
    """Samples one RTCPeerConnection's stats and keeps the latest :class:`LinkFigures`."""

    def __init__(self) -> None:
        self.figures = LinkFigures()
        self._prev: tuple[float, int, int, int] | None = None  # time, bytes, received, lost

    async def sample(self, pc: Any) -> LinkFigures:
        return self.fold(await pc.getStats(), time.monotonic())

    def fold(self, report: Any, now: float) -> LinkFigures:
        """Fold one ``RTCStatsReport`` taken at ``now`` (monotonic seconds) into the figures."""
        rx_bytes = received = lost = 0
        rtts: list[float] = []
        out_losses: list[float] = []
        for stat in report.values():
            kind = getattr(stat, "type", "")
            if kind == "transport":
                rx_bytes += stat.bytesReceived or 0
            elif kind == "inbound-rtp":
                received += stat.packetsReceived or 0
                lost += max(0, stat.packetsLost or 0)
            elif kind == "remote-inbound-rtp":
                if stat.roundTripTime is not None:
                    rtts.append(stat.roundTripTime)
                fraction = rtcp_fraction(stat.fractionLost)  # aiortc reports RTCP's 0..255
                if fraction is not None:
                    out_losses.append(fraction)
        fig = LinkFigures(
            bitrate=self.figures.bitrate,
            loss=self.figures.loss,
            rtt=max(rtts) if rtts else self.figures.rtt,
            out_loss=max(out_losses) if out_losses else self.figures.out_loss,
        )
        if self._prev is not None:
            t0, b0, r0, l0 = self._prev
            dt = now - t0
            if dt > 0:
                fig.bitrate = max(0, rx_bytes - b0) * 8 / dt
            dr, dl = max(0, received - r0), max(0, lost - l0)
            fig.loss = dl / (dr + dl) if dr + dl else 0.0
        self._prev = (now, rx_bytes, received, lost)
        self.figures = fig
        return fig
