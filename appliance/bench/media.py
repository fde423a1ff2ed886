"""``wallmesh bench media``: what a room of real units achieves on this machine.

Every figure comes from real ``wallmesh run`` processes with test-pattern
cameras and a real signaling server on loopback (see :mod:`appliance.demo.site`):

* ``g2g_p50_ms`` / ``g2g_p95_ms`` — 4 units at 640×480: the capture time written
  in the sender's pixels against the moment the receiving unit has the decoded
  frame ready for its display, over every directed stream;
* ``start_to_first_frame_s`` — a unit process started into that running room →
  its first decoded remote frame (median over several restarts of that unit);
* ``join_to_first_frame_s`` — that unit, running and hung up, told to join again →
  its first decoded remote frame (median over several joins);
* ``mesh6_all_streams_s`` / ``mesh6_min_fps`` — 6 units at 320×240 started
  together: the first unit's join → all 30 directed streams delivering, and the
  slowest stream's frame rate once they all run.

Sender CPU (shared encoder vs one encoder per peer) comes from
:mod:`appliance.bench.media_cpu` when that part is installed, and the audio delay for
each Opus packet length from :mod:`appliance.bench.audio_latency`, and what one unit
costs with five peers at 640×480 and 1280×720 (and holds on one or two cores) from
:mod:`appliance.bench.unit_cpu`.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from appliance.bench.report import Result, cpu_seconds
from appliance.demo.site import Site, UnitProcess, wait_for

log = logging.getLogger(__name__)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _streams(units: list[UnitProcess]) -> dict[tuple[str, str], dict[str, Any]]:
    """(receiver, sender) → that stream's status entry."""
    out = {}
    for unit in units:
        st = unit.status() or {}
        for peer in st.get("peers", []):
            out[(unit.name, peer["name"])] = peer
    return out


def _all_delivering(units: list[UnitProcess]) -> bool:
    n = len(units)
    streams = _streams(units)
    return len(streams) == n * (n - 1) and all(p["frames"] > 0 for p in streams.values())


async def latency_room(root: Path, quick: bool) -> list[Result]:
    """4-unit mesh at 640×480: g2g latency; then a fifth process start → first frame."""
    video = {"video": {"width": 640, "height": 480, "fps": 30}, "status": {"samples": True}}
    measure = 4.0 if quick else 10.0
    results: list[Result] = []
    async with Site(root / "g2g", room="bench-g2g", verbose=0) as site:
        units = [await site.spawn(i, video) for i in range(1, 4)]
        await wait_for(lambda: _all_delivering(units), 90, "3 units to stream to each other")
        late = await site.spawn(4, video)
        units.append(late)
        await wait_for(lambda: _all_delivering(units), 60, "the fourth unit")
        starts = [_start_sample(late)]
        await asyncio.sleep(2.0)  # settle: the late joiner's keyframes, the encoders' rate control
        before = {k: v["frames"] for k, v in _streams(units).items()}
        await asyncio.sleep(measure)
        samples: list[float] = []
        fps: list[float] = []
        for key, peer in _streams(units).items():
            new = peer["frames"] - before.get(key, 0)
            fps.append(new / measure)
            recent = peer.get("latency_samples_ms", [])[-new:] if new > 0 else []
            samples.extend(recent)
        if samples:
            detail = f"4 units at 640x480, {len(samples)} frames over 12 streams, {measure:g} s; streams {min(fps):.0f}-{max(fps):.0f} fps"
            results.append(Result("g2g_p50_ms", round(percentile(samples, 0.50), 1), "ms", detail))
            results.append(Result("g2g_p95_ms", round(percentile(samples, 0.95), 1), "ms", detail))
        else:
            results.append(Result("g2g_p50_ms", None, "ms", "no stamped frames were read"))
            results.append(Result("g2g_p95_ms", None, "ms", "no stamped frames were read"))
        for _ in range(2 if quick else 4):  # restart the fourth unit: more samples of a noisy figure
            units.remove(late)
            await late.stop()
            await wait_for(lambda: _all_delivering(units) and _peer_counts(units) == {2}, 60, "the room without unit 4")
            late = await site.spawn(4, video)
            units.append(late)
            await wait_for(lambda: _all_delivering(units), 60, "the restarted fourth unit")
            starts.append(_start_sample(late))
        joins = [await _join_sample(late, units) for _ in range(2 if quick else 5)]
        results.append(
            Result("join_to_first_frame_s", round(statistics.median(joins), 3), "s",
                   f"the running 4th unit told to join (its status endpoint's join action, as the call button) "
                   f"-> first decoded remote frame, median of {len(joins)} joins {sorted(round(t, 2) for t in joins)}")
        )
        total = [s[0] for s in starts]
        daemon = [s[1] for s in starts]
        joined = [s[2] for s in starts]
        results.append(
            Result("start_to_first_frame_s", round(statistics.median(total), 3), "s",
                   f"4th unit's process start (python interpreter included) -> first decoded remote frame, "
                   f"median of {len(total)} starts {sorted(round(t, 2) for t in total)}; "
                   f"daemon construction -> joined (signaling and devices) median {statistics.median(joined):.2f} s, "
                   f"-> first frame median {statistics.median(daemon):.2f} s")
        )
    return results


def _start_sample(unit: UnitProcess) -> tuple[float, float, float]:
    """Seconds from process spawn to the first remote frame, from daemon construction to it,
    and from daemon construction to the room's ``joined`` (signaling and devices both ready)."""
    status = unit.status() or {}
    first = min(p["first_frame_at"] for p in status["peers"])
    return first - unit.spawned_at, first - status["started"], status["joined_at"] - status["started"]


async def _join_sample(unit: UnitProcess, room: list[UnitProcess]) -> float:
    """Hang ``unit`` up, then time its join action → its first decoded remote frame."""
    import aiohttp

    others = [u for u in room if u is not unit]
    url = (unit.status() or {})["status_url"]
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/actions/hangup") as resp:
            resp.raise_for_status()
        await wait_for(lambda: _peer_counts(others) == {len(others) - 1}, 30, f"the room without {unit.name}")
        await asyncio.sleep(0.5)  # let the hung-up links finish closing
        told = time.time()
        async with session.post(url + "/actions/join") as resp:
            resp.raise_for_status()

    def first_frame() -> float | None:
        times = [p["first_frame_at"] for p in (unit.status() or {}).get("peers", []) if p.get("first_frame_at")]
        fresh = [t for t in times if t >= told]
        return min(fresh) if fresh else None

    first = await wait_for(first_frame, 30, f"{unit.name}'s first frame after joining again")
    await wait_for(lambda: _all_delivering(room), 30, "the whole room again")
    return float(first) - told


def _peer_counts(units: list[UnitProcess]) -> set[int]:
    return {len((u.status() or {}).get("peers", [])) for u in units}


async def mesh6(root: Path, quick: bool) -> list[Result]:
    """6 units at 320×240 started at once: time to all 30 streams, then each stream's fps."""
    # the policy at work, capped at its 320x240 tier (250 kbit/s): the size this bench is defined at
    video = {"video": {"width": 320, "height": 240, "fps": 30}, "quality": {"adaptive": True, "max_tier": "low"}}
    measure = 4.0 if quick else 10.0
    async with Site(root / "mesh6", room="bench-mesh6", verbose=0) as site:
        units = [await site.spawn(i, video) for i in range(1, 7)]
        await wait_for(lambda: _all_delivering(units), 120, "all 30 streams of a 6-unit room")
        streams = _streams(units)
        joins = [(u.status() or {}).get("joined_at") for u in units]
        first_join = min(j for j in joins if j is not None)
        all_at = max(p["first_frame_at"] for p in streams.values())
        await asyncio.sleep(2.0)
        before = {k: v["frames"] for k, v in _streams(units).items()}
        cpu_before = [cpu_seconds(u.proc.pid) for u in units]
        t0 = time.monotonic()
        await asyncio.sleep(measure)
        after = _streams(units)
        dt = time.monotonic() - t0
        cpu = [(cpu_seconds(u.proc.pid) - c) / dt for u, c in zip(units, cpu_before, strict=True)]
        media = (units[0].status() or {}).get("media") or {}
        rates = {k: (after[k]["frames"] - before.get(k, 0)) / dt for k in after}
    slowest = min(rates, key=rates.__getitem__)
    encoder = media.get("encoder") or {}
    detail_fps = (
        f"30 streams at {encoder.get('width')}x{encoder.get('height')} {encoder.get('bitrate', 0) // 1000} kbit/s, "
        f"{media.get('audio_packet_ms')} ms Opus, over {measure:g} s: min {rates[slowest]:.1f} "
        f"({slowest[1]}->{slowest[0]}), median {statistics.median(rates.values()):.1f}; "
        f"CPU per unit median {statistics.median(cpu):.2f} of a core"
    )
    return [
        Result("mesh6_all_streams_s", round(all_at - first_join, 2), "s", "6 units at 320x240: first join -> 30/30 streams"),
        Result("mesh6_min_fps", round(rates[slowest], 1), "fps", detail_fps),
    ]


def run(quick: bool) -> list[Result]:
    results: list[Result] = []
    try:
        cpu = importlib.import_module("appliance.bench.media_cpu")
    except ImportError:
        cpu = None
    if cpu is not None:
        results.extend(cpu.run(quick))
    from appliance.bench import audio_latency

    results.extend(audio_latency.run(quick))
    with tempfile.TemporaryDirectory(prefix="wallmesh-bench-media-") as tmp:
        root = Path(tmp)
        results.extend(asyncio.run(latency_room(root, quick)))
        results.extend(asyncio.run(mesh6(root, quick)))
    from appliance.bench import unit_cpu

    results.extend(unit_cpu.run(quick))
    load = _load()
    from appliance.mesh.workers import worker_count

    workers = f"units at their default [media] workers ({worker_count(0)} on this machine's {os.cpu_count()} cores)"
    for r in results:
        if r.name.startswith(("g2g", "start_to", "join_to", "mesh6")):
            r.detail = "; ".join(part for part in (r.detail, workers, f"load avg {load}" if load else "") if part)
    return results


def _load() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return ""
