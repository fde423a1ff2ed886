"""``wallmesh bench sfu``: a room growing past the mesh cap, through a real Janus.

Six real units at 320×240 @ 15 fps make a full mesh; a seventh and an eighth join, the
server moves the room to Janus (run in a network namespace of its own by
:class:`~appliance.signaling.sfu.lab.JanusLab`, so this part needs root), and:

* ``sfu8_all_streams_s`` — the seventh's join → all 56 directed streams delivering through
  the SFU (every unit in ``sfu`` mode, every tile on its new path);
* ``sfu8_min_fps`` — the slowest of those 56 streams once they all run;
* ``sfu_switch_gap_ms`` — the longest any tile of the six went without a new frame during
  the switch (each unit measures its own tiles; the worst unit counts);
* ``sfu_unit_upload_kbps`` — what one unit sends to Janus (audio and video), against the
  bitrate of its one video stream;
* ``sfu_g2g_p50_ms`` — glass-to-glass latency through Janus over every stream.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from appliance.bench.media import _load, _streams, percentile
from appliance.bench.report import Result, cpu_seconds
from appliance.demo.site import Site, UnitProcess, wait_for

NAMES = ("sfu8_all_streams_s", "sfu8_min_fps", "sfu_switch_gap_ms", "sfu_unit_upload_kbps", "sfu_g2g_p50_ms")


def _all_through_sfu(units: list[UnitProcess]) -> bool:
    n = len(units)
    statuses = [u.status() or {} for u in units]
    if any(s.get("room_mode") != "sfu" or s.get("room_switched_at") is not None for s in statuses):
        return False
    streams = _streams(units)
    return len(streams) == n * (n - 1) and all(p["frames"] > 0 and p["first_frame_at"] for p in streams.values())


async def room(root: Path, quick: bool) -> list[Result]:
    from appliance.signaling.sfu.lab import JanusLab

    measure = 4.0 if quick else 10.0
    server_dir = root / "server"
    async with JanusLab(server_dir) as lab:
        sfu = {"sfu": {"type": "janus", "url": lab.url, "probe_s": 0.5, "return_after_s": 3600}}
        unit = {
            "video": {"width": 320, "height": 240, "fps": 15}, "quality": {"adaptive": False},
            "ice": {"loopback": False, "addresses": [lab.host_ip], "resolve_mdns": False}, "status": {"samples": True},
        }
        async with Site(root, room="bench-sfu", verbose=0, max_room_size=6, server_extra=sfu) as site:
            units = [await site.spawn(i, unit) for i in range(1, 7)]
            await wait_for(lambda: len(_streams(units)) == 30 and all(p["frames"] > 0 for p in _streams(units).values()),
                           120, "the 6-unit mesh")
            await asyncio.sleep(2.0)
            # the seventh and the eighth start together; the first of them to join is the seventh
            units += [await site.spawn(7, unit), await site.spawn(8, unit)]
            await wait_for(lambda: all((u.status() or {}).get("joined_at") for u in units[6:]), 60, "the two joiners' joins")
            seventh_join = min((u.status() or {})["joined_at"] for u in units[6:])
            await wait_for(lambda: _all_through_sfu(units), 120, "all 56 streams through the SFU")
            streams = _streams(units)
            all_at = max(p["first_frame_at"] for p in streams.values())
            gaps = [(u.name, (u.status() or {}).get("room_switch_gap_ms")) for u in units[:6]]
            await asyncio.sleep(2.0)
            before = {k: v["frames"] for k, v in _streams(units).items()}
            cpu_before = [cpu_seconds(u.proc.pid) for u in units]
            t0 = time.monotonic()
            await asyncio.sleep(measure)
            after = _streams(units)
            dt = time.monotonic() - t0
            cpu = [(cpu_seconds(u.proc.pid) - c) / dt for u, c in zip(units, cpu_before, strict=True)]
            statuses = [u.status() or {} for u in units]
    rates = {k: (after[k]["frames"] - before.get(k, 0)) / dt for k in after}
    slowest = min(rates, key=rates.__getitem__)
    samples: list[float] = []
    for key, peer in after.items():
        new = peer["frames"] - before.get(key, 0)
        samples.extend(peer.get("latency_samples_ms", [])[-new:] if new > 0 else [])
    uploads: list[float] = [float(s["room_upload_kbps"]) for s in statuses if s.get("room_upload_kbps") is not None]
    encoder = (statuses[0].get("media") or {}).get("encoder") or {}
    stream_kbps = (encoder.get("bitrate") or 0) / 1000
    worst_gap = max(gaps, key=lambda g: g[1] or 0.0)
    upload = round(statistics.median(uploads), 1) if uploads else None
    load = _load()
    tail = f"; load avg {load}" if load else ""
    return [
        Result("sfu8_all_streams_s", round(all_at - seventh_join, 2), "s",
               f"6-unit mesh + 2 at 320x240@15: 7th join -> 56/56 streams via Janus{tail}"),
        Result("sfu8_min_fps", round(rates[slowest], 1), "fps",
               f"56 streams over {measure:g} s: min {rates[slowest]:.1f} ({slowest[1]}->{slowest[0]}), "
               f"median {statistics.median(rates.values()):.1f}; CPU per unit median {statistics.median(cpu):.2f} of a core "
               f"(8 units: {sum(cpu):.2f} cores in all){tail}"),
        Result("sfu_switch_gap_ms", worst_gap[1], "ms", f"longest tile without a new frame, mesh -> SFU, worst unit {worst_gap[0]}; "
               f"all {sorted(round(g or 0) for _, g in gaps)}{tail}"),
        Result("sfu_unit_upload_kbps", upload, "kbit/s",
               f"median of {len(uploads)} units' publisher (audio + video); one video stream is {stream_kbps:g} kbit/s"
               + (f" ({upload / stream_kbps:.2f}x)" if upload and stream_kbps else "") + tail),
        Result("sfu_g2g_p50_ms", round(percentile(samples, 0.5), 1) if samples else None, "ms",
               f"{len(samples)} stamped frames over 56 streams through Janus{tail}"),
    ]


def run(quick: bool) -> list[Result]:
    from appliance.signaling.sfu.lab import LabUnavailable

    with tempfile.TemporaryDirectory(prefix="wallmesh-bench-sfu-") as tmp:
        try:
            return asyncio.run(room(Path(tmp), quick))
        except LabUnavailable as exc:
            return [Result(name, None, "", f"not measured: {exc}") for name in NAMES]

