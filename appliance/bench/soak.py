"""The soak: a 4-unit room for half an hour, someone leaving or joining every 30 s.

Real ``wallmesh run`` processes with test-pattern cameras (as ``wallmesh bench media``
starts them, :mod:`appliance.demo.site`) and a real ``wallmesh signal`` in a process of
its own with its embedded store, all in one CPU-quota cgroup (:mod:`appliance.bench.cpuquota`).
Every 30 s one unit hangs up or joins again through its status endpoint (what its call
button does), in turn: unit 1 leaves, rejoins 30 s later, then unit 2 leaves, and so on.
Each leave and join makes every other unit tear down or build a real peer connection, so
a minute of the soak is a full cycle of the code that could leak.

Every process is sampled once a minute (:mod:`appliance.bench.procsample`), always just
before a leave, when the whole room is in the call: the same state at every sample, so a
sample-to-sample difference is growth, not the swing of a join. The figures:

* ``soak_rss_slope_kb_per_min`` -- the worst process's least-squares growth of resident
  memory after the warm-up (bar 50 KiB/min);
* ``soak_fd_growth`` -- the most file descriptors any process gained after the warm-up
  (bar 0).

The warm-up is left out of both: in its first minutes a process still grows for reasons
that stop -- code paths running for the first time (the first hangup, the first rejoin
import and cache what they need), the allocator taking its arenas, jitter buffers and
encoder state filling up. Over the full run it is 5 minutes: by then every unit has left
and rejoined once (4 cycles) and one more cycle has run with all of that in place. The
quick run (5 minutes) keeps only the first minute out, so its slope carries some of that
start-up growth: a smoke test of the soak, not its figure.

Five minutes is not always enough. On the 2-core development machine the units' resident
memory went on rising after it (371-373 KiB/min for the worst units from minute 5 of a
30-minute run) and then stopped, near minute 19, for good (the worst one's slope from
minute 18: 21 KiB/min). That is not malloc's arenas: a unit holds 13 to 16 of them (one per
thread until there are 8 per core), nearly all made in its first minutes, and their resident
size stays flat; with ``MALLOC_ARENA_MAX=2`` the units grew just as fast (quick soaks, two
rounds each, interleaved: worst 1085 and 1198 KiB/min with it, 1068 and 876 without). The
growth is in malloc's main arena (``[heap]``), and it is memory in use (``malloc_info``: 21
MiB at minute 1, 29 at minute 15): each peer connection that hangs up leaves some 1,200
objects in reference cycles -- aiortc's transports, their RTP packets, queues and events --
and with them their DTLS connection's OpenSSL state (its record buffers, counted in the heap,
grew from 8 to 47). Only CPython's full collections free that garbage, and CPython 3.11 runs
one only once the objects that survived the younger collections reach a quarter of the old
ones: in this room that came between minutes 15 and 20. The heap's use fell back to 24 MiB,
the freed memory stayed with malloc, and the garbage since has fitted in it, so the resident
size levelled off. An experiment (not what the daemon does) confirmed it: with a full
collection every 10 s in each unit, minutes 2-10 of a soak grew 16-209 KiB/min with
``MALLOC_ARENA_MAX=2`` and 398-463 without it, where most of the growth was one more arena
taken near minute 5 (the experiment's own thread is one more thread), against 755-784 with
neither; ``gc.freeze()`` 45 s after start-up alone changed nothing (551-680 KiB/min, no full
collection in 10 minutes: CPython 3.11 measures the quarter against the old generation as it
was at the last full collection). Object counts or a heap trace taken after ``gc.collect()`` cannot see this garbage,
and ``malloc_trim`` cannot hand back memory that is still allocated.

What the units do about it (:mod:`appliance.mesh.garbage`): each process that runs peer
connections (the unit, each media worker) freezes its start-up objects out of the collector's
walk and runs a full collection a second after a connection closes, and the unit's service
(and the site these benches start) sets ``MALLOC_ARENA_MAX=2``, so what is freed is reused
rather than spread over a dozen arenas.

So the detail splits each process's slope by where its memory lives (``heap``, ``arenas``,
``anon``, ``files``: :mod:`appliance.bench.procsample`) and gives the worst process's slope
over the second half of the window: growth that settles flattens there, a leak does not.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from appliance.bench.cpuquota import CpuQuota
from appliance.bench.procsample import MEMORY_KINDS, Sampler, Series
from appliance.bench.report import Result, cpu_seconds
from appliance.demo.site import Site, UnitProcess, wait_for

log = logging.getLogger(__name__)

UNITS = 4
EVENT_EVERY_S = 30.0
QUOTA_CORES = 1.5
VIDEO = {"video": {"width": 320, "height": 240, "fps": 15}}


@dataclass
class SoakRun:
    """What one soak saw: the sampled series and how the room behaved."""

    series: list[Series]
    warmup_min: float
    minutes: float
    events: int
    quota: str
    throttling: dict[str, float] = field(default_factory=dict)
    cpu_cores: float = 0.0
    incomplete: list[str] = field(default_factory=list)  # samples at which the room was not whole
    event_every_s: float = EVENT_EVERY_S
    units: int = UNITS

    def worst_rss(self) -> tuple[float | None, Series | None]:
        slopes = [(s.rss_slope(self.warmup_min), s) for s in self.series]
        known = [(v, s) for v, s in slopes if v is not None]
        if not known:
            return None, None
        return max(known, key=lambda pair: pair[0])

    def worst_fds(self) -> tuple[int | None, Series | None]:
        growth = [(s.fd_growth(self.warmup_min), s) for s in self.series]
        known = [(v, s) for v, s in growth if v is not None]
        if not known:
            return None, None
        return max(known, key=lambda pair: pair[0])


def _get(url: str, timeout: float = 5.0) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as res:
            return res.read()
    except (OSError, ValueError):
        return None


def unit_tasks(unit: UnitProcess) -> int | None:
    """A unit's asyncio tasks, from its loopback ``/status``."""
    url = (unit.status() or {}).get("status_url")
    body = _get(url + "/status") if url else None
    if body is None:
        return None
    return (json.loads(body).get("process") or {}).get("tasks")


def server_tasks(url: str) -> int | None:
    """The signaling server's asyncio tasks, from its ``/metrics``."""
    body = _get(url + "/metrics")
    for line in (body or b"").decode(errors="replace").splitlines():
        if line.startswith("wallmesh_signal_asyncio_tasks "):
            return int(float(line.split()[1]))
    return None


def _in_call(units: list[UnitProcess]) -> bool:
    """Every unit has every other one as a peer, receiving its frames."""
    n = len(units)
    for unit in units:
        peers = (unit.status() or {}).get("peers", [])
        if len(peers) != n - 1 or not all(p.get("frames", 0) > 0 for p in peers):
            return False
    return True


async def _action(unit: UnitProcess, name: str) -> bool:
    url = (unit.status() or {}).get("status_url")
    if not url:
        return False

    def post() -> bool:
        req = urllib.request.Request(url + "/actions/" + name, data=b"", method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as res:
                return res.status == 200
        except (OSError, ValueError):
            return False

    return await asyncio.to_thread(post)


async def soak(root: Path, *, minutes: float, warmup_min: float, event_every_s: float = EVENT_EVERY_S,
               units: int = UNITS, quota_cores: float = QUOTA_CORES, also: Mapping[str, int] | None = None) -> SoakRun:
    """Run the room for ``minutes``; ``also`` names further processes to sample (a test's leak)."""
    cycle_s = 2 * event_every_s  # one leave and one join: the sampling period
    cycles = max(1, round(minutes * 60 / cycle_s))
    incomplete: list[str] = []
    events = 0
    with CpuQuota(quota_cores) as quota:
        site = Site(root, room="bench-soak", server_process=True, verbose=0)
        site.prefix = quota.prefix()
        async with site:
            started = [await site.spawn(i, VIDEO) for i in range(1, units + 1)]
            await wait_for(lambda: _in_call(started), 120, f"{units} units to stream to each other")
            sampler = Sampler({"server": site.server_pid or 0}, {"server": lambda: server_tasks(site.url)}, labels={"server": "store"})
            for unit in started:
                sampler.add(unit.name, unit.proc.pid, functools.partial(unit_tasks, unit))
            for name, pid in (also or {}).items():
                sampler.add(name, pid)
            cpu0 = {pid: _cpu(pid) for pid in sampler.processes()}
            t0 = time.monotonic()
            for cycle in range(cycles + 1):
                if not _in_call(started):
                    incomplete.append(f"minute {cycle * cycle_s / 60:g}")
                # stamped with the cycle's minute: the samples' own times drift by the
                # fractions of a second a busy machine takes to read them
                await asyncio.to_thread(sampler.sample, cycle * cycle_s / 60)
                log.info("soak minute %.1f: %s", (time.monotonic() - t0) / 60, ", ".join(
                    f"{s.name} {s.samples[-1][1].rss_kb} kB {s.samples[-1][1].fds} fds" for s in sampler.series.values()))
                if cycle == cycles:
                    break
                unit = started[cycle % units]
                others = [u for u in started if u is not unit]
                next_at = t0 + (cycle + 1) * cycle_s
                events += await _action(unit, "hangup")
                await _until(functools.partial(_settled, others), t0 + cycle * cycle_s + event_every_s)
                await _sleep_until(t0 + cycle * cycle_s + event_every_s)
                events += await _action(unit, "join")
                await _until(lambda: _in_call(started), next_at)
                await _sleep_until(next_at)
            elapsed = time.monotonic() - t0
            cpu = sum(_cpu(pid) - c for pid, c in cpu0.items() if pid in sampler.processes())
            throttling, described = quota.throttling(), quota.describe()
    return SoakRun(list(sampler.series.values()), warmup_min, elapsed / 60, events, described, throttling,
                   cpu / elapsed if elapsed else 0.0, incomplete, event_every_s, units)


def _settled(units: list[UnitProcess]) -> bool:
    return _in_call(units) if len(units) > 1 else True


def _cpu(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except OSError:
        return 0.0


async def _until(check: Callable[[], bool], deadline: float) -> None:
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.5)


async def _sleep_until(deadline: float) -> None:
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))


def results(run: SoakRun) -> list[Result]:
    rss, rss_series = run.worst_rss()
    fds, fd_series = run.worst_fds()
    per = "; ".join(_describe(s, run.warmup_min) for s in sorted(run.series, key=lambda s: s.name))
    where = (f"{run.units}-unit room {run.minutes:.1f} min, a leave or join every {run.event_every_s:g} s ({run.events} done), "
             f"{run.quota}, {run.cpu_cores:.2f} cores used")
    if run.throttling:
        where += f", throttled {run.throttling['throttled']}/{run.throttling['periods']} periods"
    if run.incomplete:
        where += f"; room not whole at {', '.join(run.incomplete)}"
    where += f"; load avg {os.getloadavg()[0]:.1f}; warm-up {run.warmup_min:g} min left out"
    # growth that settles (an allocator reaching the churn's high-water mark) flattens in the
    # second half of the measured window; a leak keeps its slope there
    half = run.warmup_min + (run.minutes - run.warmup_min) / 2
    late = rss_series.rss_slope(half) if rss_series is not None else None
    trend = f"; its slope after minute {half:.0f}: {late:.0f} KiB/min" if late is not None else ""
    return [
        Result("soak_rss_slope_kb_per_min", None if rss is None else round(rss, 1), "KiB/min",
               f"worst {rss_series.name if rss_series else '-'}{trend}; {where}; bar 50 KiB/min; {per}"),
        Result("soak_fd_growth", fds, "fds", f"worst {fd_series.name if fd_series else '-'}; {where}; bar 0"),
    ]


def _describe(series: Series, warmup_min: float) -> str:
    rss = series.rss_slope(warmup_min)
    first, last = series.samples[0][1], series.samples[-1][1]
    text = f"{series.name} {first.rss_kb // 1024}->{last.rss_kb // 1024} MiB"
    if rss is not None:
        kinds = [(kind, series.memory_slope(kind, warmup_min)) for kind in MEMORY_KINDS]
        split = ", ".join(f"{kind} {v:+.0f}" for kind, v in kinds if v is not None)
        text += f" ({rss:+.0f} KiB/min{': ' + split if split else ''})"
    if first.memory and last.memory and (first.memory["arena_count"] or last.memory["arena_count"]):
        text += f", malloc arenas {first.memory['arena_count'] + 1}->{last.memory['arena_count'] + 1}"
    text += f", fds {first.fds}->{last.fds}, threads {first.threads}->{last.threads}"
    if first.tasks is not None and last.tasks is not None:
        text += f", tasks {first.tasks}->{last.tasks}"
    return text


def run(quick: bool) -> list[Result]:
    minutes, warmup = (5.0, 1.0) if quick else (30.0, 5.0)
    with tempfile.TemporaryDirectory(prefix="wallmesh-bench-soak-") as tmp:
        return results(asyncio.run(soak(Path(tmp), minutes=minutes, warmup_min=warmup)))
