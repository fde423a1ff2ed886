"""``wallmesh demo``: a whole room on one machine, with nothing to set up.

An embedded signaling server (plain HTTP on 127.0.0.1, in a temporary state
directory) and ``units`` simulated wall units, each a real ``wallmesh run``
process with a test-pattern camera, loopback ICE, and its audio in a simulated
room (:func:`room_audio`: each unit's microphone hears its own loudspeaker through
the room, a talker and a fan, and the unit cancels the echo before sending). Unit 1
has a display: a window when there is a desktop (``DISPLAY`` or
``WAYLAND_DISPLAY``), otherwise an offscreen one; ``--snapshot DIR`` writes
PNGs of it. Every second a line per unit shows its state, peers, received fps
and glass-to-glass latency, read from the units' status files.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from appliance.demo.site import Site, UnitProcess


def has_screen() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


#: The simulated rooms the demo's units stand in, in turn (docs/room-audio.md).
DEMO_ROOMS = ("small", "large", "drift", "jump", "clipping")


def room_audio(index: int) -> dict[str, Any]:
    """A unit's ``[audio]``: the room simulator's speaker and microphone (its loudspeaker's echo,
    a talker with pauses, a fan) and the unit's own echo cancellation, as on a wall unit."""
    return {"source": "room", "sink": "room", "room": DEMO_ROOMS[(index - 1) % len(DEMO_ROOMS)], "talker": True,
            "processing": "webrtc"}


def audio_text(st: dict[str, Any]) -> str:
    proc = (st.get("media") or {}).get("audio_processing") or {}
    if not proc:
        return ""
    if not proc.get("active"):
        return f"  aec {proc.get('mode')}" + (" (binding missing)" if proc.get("error") else "")
    return f"  aec {proc.get('cpu_ms_per_frame') or 0:.2f} ms/frame"


def unit_line(unit: UnitProcess, expected: int) -> str:
    st = unit.status()
    if not unit.alive:
        return f"{unit.name:<8} exited ({unit.proc.returncode})"
    if st is None:
        return f"{unit.name:<8} starting"
    peers = st.get("peers", [])
    live = [p for p in peers if p.get("frames", 0) > 0]
    fps = [p["fps"] for p in live]
    lat = [p["latency_ms"] for p in live if p.get("latency_ms") is not None]
    fps_text = f"{min(fps):4.1f}-{max(fps):4.1f}" if fps else "   -     "
    lat_text = f"{sum(lat) / len(lat):5.0f} ms" if lat else "    - ms"
    return f"{unit.name:<8} {st['state']:<12} peers {len(live)}/{expected}  fps {fps_text}  latency {lat_text}{audio_text(st)}"


def all_streams(units: list[UnitProcess]) -> bool:
    n = len(units)
    for unit in units:
        st = unit.status()
        if not st or sum(1 for p in st.get("peers", []) if p.get("fps", 0) > 0) < n - 1:
            return False
    return True


async def demo(
    *,
    units: int = 3,
    seconds: float | None = None,
    snapshot: Path | None = None,
    size: tuple[int, int] = (640, 480),
    out: TextIO = sys.stdout,
    keep: bool = False,
    sfu: bool = False,
) -> int:
    root = Path(tempfile.mkdtemp(prefix="wallmesh-demo-"))
    lab: Any = None
    extra: dict[str, Any] = {}
    if sfu:  # the site's conference server: Janus in a namespace of its own, reached over a veth pair
        from appliance.signaling.sfu.lab import JanusLab

        lab = JanusLab(root / "server")
        try:
            await lab.start()
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        extra = {"ice": {"loopback": False, "addresses": [lab.host_ip], "resolve_mdns": False}}
        print(f"conference server (Janus) at {lab.url}", file=out, flush=True)
    site = Site(root, room="demo", verbose=0, server_extra={"sfu": {"type": "janus", "url": lab.url}} if lab else None)
    width, height = size
    try:
        await site.start_server()
        print(f"signaling server on {site.url} (state in {root})", file=out, flush=True)
        video = {"width": width, "height": height, "fps": 30}
        display: dict[str, Any] = {
            "headless": False,
            "display": {"backend": "window" if has_screen() else "offscreen", "width": 1280, "height": 720},
            "buttons": {"pin_factory": "mock"},
            "video": video,
        }
        if snapshot is not None:
            await asyncio.to_thread(snapshot.mkdir, parents=True, exist_ok=True)
            display.update({"snapshot_dir": str(await asyncio.to_thread(snapshot.resolve)), "snapshot_every_s": 1.0})
        for index in range(1, units + 1):
            await site.spawn(index, {**(display if index == 1 else {"video": video}), "audio": room_audio(index), **extra})
        where = "a window" if has_screen() else "offscreen"
        print(f"{units} units in room 'demo'; unit-1's wall is drawn {where}"
              + (f", snapshots in {snapshot}" if snapshot else "") + "; Ctrl-C stops", file=out, flush=True)
        started = time.monotonic()
        full_at: float | None = None
        while seconds is None or time.monotonic() - started < seconds:
            await asyncio.sleep(1.0)
            if full_at is None and all_streams(site.units):
                full_at = time.monotonic() - started
                print(f"# all {units * (units - 1)} streams delivering after {full_at:.1f} s", file=out, flush=True)
            print(f"--- t={time.monotonic() - started:5.1f} s", file=out)
            for unit in site.units:
                print("  " + unit_line(unit, units - 1), file=out)
            out.flush()
            if not all(u.alive for u in site.units):
                dead = [u for u in site.units if not u.alive]
                for u in dead:
                    print(f"{u.name} exited:\n{u.log_tail(15)}", file=sys.stderr)
                return 1
        if full_at is None:
            print("wallmesh demo: not every unit received every other unit's video", file=sys.stderr)
            return 1
        return 0
    finally:
        await site.close()
        if lab is not None:
            await lab.close()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
