"""The figures of ``wallmesh bench signaling``: what the load processes saw, summed, and
turned into the benchmark's named results.

A phase (one join storm, or the steady state) is the sum of the load processes' reports.
Throughput is the frames delivered over the time from the storm's start to the last
delivery; latencies are nearest-rank percentiles over every frame; lost frames are those
expected and never delivered before the phase's deadline. Alongside each figure the detail
says what the host was doing (CPU used and CPU waited for, by the server and by the load
processes), because on a shared machine a slow figure can be the neighbours' doing.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from appliance.bench.report import Result
from appliance.bench.signaling import traffic
from appliance.bench.signaling.load import CONNECT_CONCURRENCY
from appliance.bench.signaling.plan import Plan


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile; ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Phase:
    """One load phase, summed over the load processes."""

    expected: int = 0
    received: int = 0
    duplicates: int = 0
    misrouted: int = 0
    stray: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    last_ns: int = 0
    client_cpu_s: float = 0.0
    client_wait_s: float = 0.0
    server_wait_s: float = 0.0
    server_cpu_s: float = 0.0
    received_at_ms: list[float] = field(default_factory=list)
    loop_lag_ms: list[float] = field(default_factory=list)

    @classmethod
    def merge(cls, reports: list[dict[str, Any]]) -> Phase:
        phase = cls()
        for rep in reports:
            phase.expected += rep["expected"]
            phase.received += rep["received"]
            phase.duplicates += rep["duplicates"]
            phase.misrouted += rep["misrouted"]
            phase.stray += rep["stray"]
            phase.errors.update(rep["errors"])
            phase.latencies_ms.extend(us / 1000 for us in rep["latencies_us"])
            phase.received_at_ms.extend(us / 1000 for us in rep["received_at_us"])
            phase.loop_lag_ms.extend(us / 1000 for us in rep["loop_lag_us"])
            phase.last_ns = max(phase.last_ns, rep["last_ns"])
            phase.client_cpu_s += rep["cpu_s"]
            phase.client_wait_s = max(phase.client_wait_s, rep.get("cpu_wait_s", 0.0))
        return phase

    def slow_frames(self, over_ms: float) -> tuple[int, float]:
        """Frames slower than ``over_ms``, and over how many milliseconds of receive time
        they spread (a single stall shows as many slow frames within a short span)."""
        slow = sorted(at for at, lat in zip(self.received_at_ms, self.latencies_ms, strict=False) if lat > over_ms)
        return len(slow), (slow[-1] - slow[0]) if slow else 0.0

    @property
    def lost(self) -> int:
        return self.expected - self.received

    def p(self, pct: float) -> float | None:
        return percentile(self.latencies_ms, pct)


@dataclass
class Storm:
    """One join storm: what the receivers saw, when it started, what the server spent."""

    phase: Phase
    t0: int
    server_cpu_s: float
    loadavg: float

    @property
    def drain_s(self) -> float | None:
        """Storm start to the last frame delivered, seconds."""
        return (self.phase.last_ns - self.t0) / 1e9 if self.phase.last_ns else None

    @property
    def frames_per_s(self) -> float | None:
        drain = self.drain_s
        return self.phase.received / drain if drain else None


@dataclass
class Figures:
    """Everything measured against one server."""

    server: str
    clients: int = 0
    connect_errors: Counter[str] = field(default_factory=Counter)
    connect_s: float | None = None
    storms: list[Storm] = field(default_factory=list)
    steady: Phase | None = None
    steady_s: float = 0.0
    rss_mb: float | None = None
    peak_rss_mb: float | None = None
    failure: str = ""

    @property
    def median_storm(self) -> Storm | None:
        """The storm with the median throughput: one busy moment of the shared machine
        does not decide the figure."""
        runs = sorted(self.storms, key=lambda s: s.frames_per_s or 0.0)
        return runs[(len(runs) - 1) // 2] if runs else None

    @property
    def frames_per_s(self) -> float | None:
        storm = self.median_storm
        return storm.frames_per_s if storm else None

    @property
    def drain_s(self) -> float | None:
        storm = self.median_storm
        return storm.drain_s if storm else None

    @property
    def storm_latencies(self) -> Phase:
        """Every storm's latencies and counts together."""
        pooled = Phase()
        for storm in self.storms:
            p = storm.phase
            pooled.expected += p.expected
            pooled.received += p.received
            pooled.duplicates += p.duplicates
            pooled.misrouted += p.misrouted
            pooled.stray += p.stray
            pooled.errors.update(p.errors)
            pooled.latencies_ms.extend(p.latencies_ms)
        return pooled


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def results(plan: Plan, found: dict[str, Figures]) -> list[Result]:
    out: list[Result] = []
    w = found.get("wallmesh")
    p = found.get("peerjs")
    if w is not None:
        out += _storm_results("signal", plan, w)
    if p is not None:
        out += _storm_results("peerjs", plan, p)
    if w is not None and p is not None and w.frames_per_s and p.frames_per_s:
        out.append(Result(
            "signal_vs_peerjs_ratio", round(w.frames_per_s / p.frames_per_s, 3), "x",
            "signal_frames_per_s / peerjs_frames_per_s, medians of storms alternating between the two servers in one run (bar: >= 1.0)",
        ))
    return out


def _storm_results(prefix: str, plan: Plan, f: Figures) -> list[Result]:
    if f.failure:
        return [Result(f"{prefix}_frames_per_s", None, "frames/s", f"not measured: {f.failure[:200]}")]
    median, steady = f.median_storm, f.steady
    assert median is not None and steady is not None
    pooled = f.storm_latencies
    drain = median.drain_s
    cpu = ""
    if drain:
        cpu = (f"; in it the load processes used {median.phase.client_cpu_s / drain:.2f} CPU, the server "
               f"{median.server_cpu_s / drain:.2f} CPU and waited {median.phase.server_wait_s:.2f} s for one "
               f"(host load average {median.loadavg:.1f} on {os.cpu_count()} CPUs)")
    runs = ", ".join(f"{s.frames_per_s or 0:.0f}" for s in f.storms)
    storm_note = (f"median of {len(f.storms)} storm(s) [{runs}]; {median.phase.received}/{median.phase.expected} frames "
                  f"in {f.clients // traffic.ROOM_SIZE} rooms of {traffic.ROOM_SIZE}{cpu}{_problems(pooled)}")
    steady_rate = steady.received / f.steady_s if f.steady_s else 0
    slow, span = steady.slow_frames(10.0)
    lag = max(steady.loop_lag_ms, default=0.0)
    steady_note = (f"steady state: {steady.received}/{steady.expected} frames, {steady_rate:.0f} frames/s over {f.steady_s:.0f} s; "
                   f"{slow} frames over 10 ms, received within {span:.0f} ms of each other; server used "
                   f"{steady.server_cpu_s / f.steady_s if f.steady_s else 0:.2f} CPU (keep-alives included); waiting for a CPU: server "
                   f"{steady.server_wait_s:.2f} s, a load process up to {steady.client_wait_s:.2f} s, its loop lag max {lag:.1f} ms"
                   f"{_problems(steady)}")
    connect = f"of {plan.clients}" + (f"; connect errors {dict(f.connect_errors)}" if f.connect_errors else "")
    return [
        Result(f"{prefix}_clients", f.clients, "clients", connect),
        Result(f"{prefix}_connect_s", _r(f.connect_s, 2), "s", f"every client connected and greeted ({plan.workers} load process(es), "
               f"{CONNECT_CONCURRENCY} handshakes at a time each)"),
        Result(f"{prefix}_frames_per_s", _r(f.frames_per_s, 0), "frames/s", storm_note),
        Result(f"{prefix}_storm_p50_ms", _r(pooled.p(50)), "ms", f"join storm relay latency, all {len(f.storms)} storm(s)"),
        Result(f"{prefix}_storm_p99_ms", _r(pooled.p(99)), "ms", f"join storm relay latency, all {len(f.storms)} storm(s)"),
        Result(f"{prefix}_storm_drain_s", _r(drain, 3), "s", "storm start to last frame delivered (median storm)"),
        Result(f"{prefix}_frames_lost", pooled.lost, "frames", f"expected minus delivered, all {len(f.storms)} storm(s) (bar: 0)"),
        Result(f"{prefix}_rss_mb", _r(f.peak_rss_mb, 1), "MiB", f"server peak RSS ({f.rss_mb or 0:.1f} MiB after the last storm)"),
        Result(f"{prefix}_relay_p50_ms", _r(steady.p(50)), "ms", steady_note),
        Result(f"{prefix}_relay_p99_ms", _r(steady.p(99)), "ms", "steady state" + (" (bar: <= 10)" if prefix == "signal" else "")),
    ]


def _problems(phase: Phase) -> str:
    notes = []
    if phase.duplicates:
        notes.append(f"{phase.duplicates} duplicated")
    if phase.misrouted:
        notes.append(f"{phase.misrouted} MISROUTED")
    if phase.stray:
        notes.append(f"{phase.stray} late")
    if phase.errors:
        notes.append(f"errors {dict(phase.errors)}")
    return ("; " + ", ".join(notes)) if notes else ""
