"""How big the signaling benchmark's loads are: the full run, and the smoke-test size."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    """How big the loads are."""

    clients: int = 2000
    workers: int = 2
    storm_timeout_s: float = 90.0
    steady_s: float = 20.0
    steady_rate: float = 2.5  # room joins per second in steady state: ~330 relayed frames/s
    targets: tuple[str, ...] = ("wallmesh", "peerjs")
    drop: int = 0  # clients cut off before the storm: proves that lost frames are counted
    storms: int = 3  # join storms per server; the median one's throughput is reported


FULL = Plan()
QUICK = Plan(clients=200, workers=1, storm_timeout_s=30.0, steady_s=5.0, storms=3)
