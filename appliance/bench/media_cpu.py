"""Sender CPU with 1, 3 and 5 receiving peers: the shared encoder against aiortc's per-peer path.

Each case runs the sending unit in a process of its own (``python -m
appliance.bench.media_cpu --sender ...``, talking JSON lines over stdin/stdout), so the figure is that
process's CPU time (``time.process_time()``, every thread) divided by wall time over the
measurement window — CPU-seconds per second. The receiving peers live in the parent
process: real aiortc peer connections over loopback that decode every frame, so the sender
does exactly what it does in a call (RTCP, NACK, PLI included).

Every path sends the same thing: the test pattern at 640×480, 30 fps, H.264 constrained
baseline at 500 kbit/s over DTLS-SRTP. ``shared`` is :class:`appliance.mesh.fanout.SharedVideo`:
one libx264 encode per frame, packets fanned out. ``default`` is what aiortc does when one
source goes to many peers — the source through ``MediaRelay`` to N ordinary tracks, each
RTCRtpSender running its own H.264 encoder with aiortc's own x264 settings; its bitrate is
pinned to the same 500 kbit/s (REMB feedback would otherwise move it). ``matched`` is the
same per-peer path with the shared encoder's exact x264 settings, so that ratio isolates
what encoding once saves from what a faster preset saves. The bitrate each peer actually
got is in the detail column.

The value is the sending process's CPU-seconds per second while it sends 30 fps to every
peer; see :func:`summarise` for how slices in which a contended machine starved the sender
are left out. The whole window's raw figure and frame rate are in the detail column.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

from appliance.bench.report import Result

log = logging.getLogger(__name__)

WIDTH, HEIGHT, FPS, BITRATE = 640, 480, 30, 500_000
PEERS = (1, 3, 5)
THREADS = 1  # x264 threads per encoder, the same on both paths
SLICE = 0.5  # seconds per measurement slice


@dataclass
class Case:
    mode: str  # "shared" | "default"
    peers: int
    warmup: float
    seconds: float


def _loopback_only() -> contextlib.AbstractContextManager[None]:
    """Gather ICE host candidates on 127.0.0.1 only (aioice skips it), for the block's duration."""
    from appliance.mesh.ice import IcePolicy, process_default

    return process_default(IcePolicy(addresses=("127.0.0.1",)))


def _pin_aiortc_bitrate() -> None:
    """Hold aiortc's per-peer encoders at the shared encoder's bitrate (REMB would move it)."""
    from appliance.mesh.aiortc_hooks import pin_h264_bitrate

    if not pin_h264_bitrate(BITRATE):
        raise RuntimeError("aiortc's H.264 bitrate cannot be pinned: the default path would be compared at another bitrate")


def _matched_x264(threads: int) -> Any:
    """The shared encoder's x264 context for aiortc's encoders, as ``open(width, height, bitrate)``."""
    from appliance.capture.x264 import x264_context

    return functools.partial(_open_x264, x264_context, threads)


def _open_x264(x264_context: Any, threads: int, width: int, height: int, bitrate: int) -> Any:
    return x264_context(width, height, FPS, bitrate, threads=threads)


def _align_aiortc_encoder(threads: int) -> None:
    """Also give aiortc's per-peer encoders the shared encoder's x264 settings ("matched" mode).

    aiortc's H264Encoder opens its libx264 context lazily;
    :func:`appliance.mesh.aiortc_hooks.use_h264_encoder` has it open one with
    :func:`appliance.capture.x264.x264_context` first, for every sender of this process.
    """
    from appliance.mesh.aiortc_hooks import use_h264_encoder

    if not use_h264_encoder(_matched_x264(threads)):
        raise RuntimeError("aiortc's H.264 encoder cannot be given the shared encoder's x264 settings")


class _Link:
    """Newline-delimited JSON between the bench and its sender process (stdin/stdout)."""

    def __init__(self, reader: asyncio.StreamReader, write: Any) -> None:
        self.reader, self._write = reader, write

    async def send(self, obj: Any) -> None:
        await self._write((json.dumps(obj) + "\n").encode())

    async def recv(self) -> Any:
        line = await self.reader.readline()
        if not line:
            raise ConnectionError("the other bench process went away")
        return json.loads(line)


async def _stdio_link() -> _Link:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def write(data: bytes) -> None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()

    return _Link(reader, write)


async def _sender(link: _Link, case: Case) -> dict[str, Any]:
    from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaRelay

    from appliance.capture.pattern import PatternSource
    from appliance.mesh.fanout import SharedVideo
    from appliance.mesh.negotiation import prefer_wallmesh_codecs

    if case.mode in ("default", "matched"):  # a failure here reaches the detail column
        _pin_aiortc_bitrate()
    if case.mode == "matched":
        _align_aiortc_encoder(THREADS)
    source = PatternSource(width=WIDTH, height=HEIGHT, fps=FPS, sender=1)
    video: SharedVideo | None = None
    if case.mode == "shared":
        video = SharedVideo(source, width=WIDTH, height=HEIGHT, fps=FPS, bitrate=BITRATE, threads=THREADS)
        await video.start()
        sources: list[MediaStreamTrack] = [video.track() for _ in range(case.peers)]
    else:
        await source.start()
        relay = MediaRelay()
        camera = _source_track(source)
        sources = [relay.subscribe(camera, buffered=False) for _ in range(case.peers)]
    tracks = [_counting(track) for track in sources]
    pcs, senders = [], []
    for track in tracks:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        sender = pc.addTrack(track)
        prefer_wallmesh_codecs(pc)
        if video is not None:
            video.attach(sender)
        await pc.setLocalDescription(await pc.createOffer())
        pcs.append(pc)
        senders.append(sender)
    await link.send([pc.localDescription.sdp for pc in pcs])
    answers = await link.recv()
    for pc, sdp in zip(pcs, answers, strict=False):
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
    await asyncio.sleep(case.warmup)
    bytes0 = [await _bytes_sent(s) for s in senders]
    await link.send("measuring")
    slices: list[tuple[float, float, float]] = []  # (cpu seconds, wall seconds, frames per peer)
    started = time.monotonic()
    while time.monotonic() - started < case.seconds:
        frames0 = sum(t.frames for t in tracks)
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.sleep(SLICE)
        frames1 = sum(t.frames for t in tracks)
        slices.append((time.process_time() - cpu0, time.monotonic() - wall0, (frames1 - frames0) / len(tracks)))
    wall = time.monotonic() - started
    bytes1 = [await _bytes_sent(s) for s in senders]
    await link.send("done")
    result = summarise(slices)
    result["kbps"] = [round((b1 - b0) * 8 / wall / 1000) for b0, b1 in zip(bytes0, bytes1, strict=True)]
    for pc in pcs:
        await pc.close()
    if video is not None:
        await video.close()
    else:
        await source.close()
    return result


def summarise(slices: list[tuple[float, float, float]]) -> dict[str, Any]:
    """CPU-s/s from the slices in which the sender kept up with FPS, else scaled to FPS.

    On a machine shared with other work the sender is sometimes starved of CPU; in those
    slices it sends fewer frames and its CPU-s/s understates the real cost. So the figure
    comes from the slices in which it sent at least 90 % of FPS to every peer (their median:
    other work on the machine only ever adds to a slice's cost). If it never
    kept up (a path that is too slow for this machine), the whole window's CPU time is
    scaled by FPS / achieved fps — an estimate, and the detail column says so.
    """
    cpu = sum(c for c, _, _ in slices)
    wall = sum(w for _, w, _ in slices)
    frames = sum(f for _, _, f in slices)
    fps = frames / wall if wall else 0.0
    kept = [c / w for c, w, f in slices if w and f / w >= 0.9 * FPS]
    if len(kept) >= max(2, len(slices) // 4):
        value = statistics.median(kept)
        method = f"median of the {len(kept)}/{len(slices)} slices that kept up with {FPS} fps"
    else:
        value = cpu / wall * FPS / max(fps, 0.1) if wall else 0.0
        method = f"never kept up: scaled from {fps:.1f} fps"
    return {"cpu": value, "cpu_raw": cpu / wall if wall else 0.0, "sent_fps": fps, "wall": wall, "method": method}


async def _bytes_sent(sender: Any) -> int:
    stats = await sender.getStats()
    return sum(getattr(s, "bytesSent", 0) for s in stats.values() if s.type == "outbound-rtp")


def _counting(inner: Any) -> Any:
    """The same track, counting the frames (or packets) its sender takes: one per video frame."""
    from aiortc import MediaStreamTrack

    class Counting(MediaStreamTrack):
        kind = "video"
        frames = 0

        async def recv(self) -> Any:
            item = await inner.recv()
            self.frames += 1
            return item

        def stop(self) -> None:
            super().stop()
            inner.stop()

    return Counting()


def _source_track(source: Any) -> Any:
    from aiortc import MediaStreamTrack

    class SourceTrack(MediaStreamTrack):
        kind = "video"

        async def recv(self) -> Any:
            return await source.read()

    return SourceTrack()


async def _sender_main(mode: str, peers: int, warmup: float, seconds: float) -> None:
    link = await _stdio_link()
    try:
        result = await _sender(link, Case(mode, peers, warmup, seconds))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which prints it in the detail column
        await link.send({"error": f"{type(exc).__name__}: {exc}"})
        return
    await link.send(result)


async def _receivers(link: _Link) -> tuple[dict[str, Any], float]:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError

    offers = await link.recv()
    if isinstance(offers, dict):
        return offers, 0.0
    pcs, counters, tasks = [], [], []
    for sdp in offers:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        count = [0]

        async def consume(track: Any, count: list[int] = count) -> None:
            try:
                while True:
                    await track.recv()
                    count[0] += 1
            except MediaStreamError:
                pass

        pc.on("track", lambda track, c=consume: tasks.append(asyncio.ensure_future(c(track))))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        pcs.append(pc)
        counters.append(count)
    await link.send([pc.localDescription.sdp for pc in pcs])
    try:
        marker = await link.recv()
        if isinstance(marker, dict):
            return marker, 0.0
        start = [c[0] for c in counters]
        t0 = time.monotonic()
        await link.recv()  # "done"
        fps = min((c[0] - s) / (time.monotonic() - t0) for c, s in zip(counters, start, strict=True))
        return await link.recv(), fps
    finally:
        for task in tasks:
            task.cancel()
        for pc in pcs:
            await pc.close()


async def _measure(case: Case) -> tuple[dict[str, Any], float]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "appliance.bench.media_cpu", "--sender", case.mode, str(case.peers), str(case.warmup), str(case.seconds),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    stdin = proc.stdin

    async def write(data: bytes) -> None:
        stdin.write(data)
        await stdin.drain()

    try:
        return await asyncio.wait_for(_receivers(_Link(proc.stdout, write)), case.warmup + case.seconds + 60)
    except (TimeoutError, ConnectionError) as exc:
        return {"error": f"sender process: {exc or type(exc).__name__}"}, 0.0
    finally:
        if proc.returncode is None:
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def measure(case: Case) -> tuple[dict[str, Any], float]:
    """Run one case: the sender in its own process, the receivers here. Returns (sender result, min fps)."""
    with _loopback_only():
        return asyncio.run(_measure(case))


_PATHS = {
    "shared": "shared encoder: one x264 encode per frame, packets fanned out",
    "default": "aiortc default: one encoder per peer, aiortc's own x264 settings",
    "matched": "aiortc one encoder per peer, x264 settings matched to the shared encoder",
}


def _result(name: str, mode: str, peers: int, outcome: dict[str, Any], fps: float) -> Result:
    if "error" in outcome:
        return Result(name, None, "cpu-s/s", f"failed: {outcome['error']}")
    return Result(
        name, round(outcome["cpu"], 4), "cpu-s/s",
        f"{_PATHS[mode]}; {peers} peer(s), {WIDTH}x{HEIGHT}@{FPS} H.264 CB {BITRATE // 1000} kbps; "
        f"{outcome['method']}; whole window {outcome['cpu_raw']:.3f} cpu-s/s at {outcome['sent_fps']:.1f} fps/peer; "
        f"sent kbps/peer {outcome['kbps']}; slowest receiver {fps:.1f} fps; load avg {os.getloadavg()[0]:.1f}",
    )


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def run(quick: bool) -> list[Result]:
    """sender_cpu_{1,3,5}, default_sender_cpu_{1,3,5}, matched_sender_cpu_5 and the ratios."""
    warmup, seconds = (2.0, 4.0) if quick else (3.0, 10.0)
    cases = [("shared", n) for n in PEERS] + [("default", n) for n in PEERS] + [("matched", 5)]
    figures: dict[tuple[str, int], float | None] = {}
    results: list[Result] = []
    for mode, peers in cases:
        outcome, fps = measure(Case(mode, peers, warmup, seconds))
        name = {"shared": "sender_cpu_{}", "default": "default_sender_cpu_{}", "matched": "matched_sender_cpu_{}"}[mode].format(peers)
        results.append(_result(name, mode, peers, outcome, fps))
        figures[(mode, peers)] = results[-1].value
    s1, s5 = figures.get(("shared", 1)), figures.get(("shared", 5))
    results.append(Result("sender_cpu_5_over_1", _ratio(s5, s1), "ratio", "shared encoder, 5 peers / 1 peer (bar: <= 1.25)"))
    results.append(Result("default_over_shared_cpu_5", _ratio(figures.get(("default", 5)), s5), "ratio",
                          "aiortc default per-peer path / shared encoder, 5 peers (bar: >= 4)"))
    results.append(Result("matched_over_shared_cpu_5", _ratio(figures.get(("matched", 5)), s5), "ratio",
                          "per-peer encoding with identical x264 settings / shared encoder, 5 peers"))
    return results


def main(argv: list[str]) -> None:
    """``python -m appliance.bench.media_cpu [--quick] [--json]`` runs this part alone;
    ``--sender MODE PEERS WARMUP SECONDS`` is the sending process the bench starts."""
    if argv[:1] == ["--sender"]:
        mode, peers, warmup, seconds = argv[1], int(argv[2]), float(argv[3]), float(argv[4])
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        with _loopback_only():
            asyncio.run(_sender_main(mode, peers, warmup, seconds))
        return
    from appliance.bench.report import Report

    report = Report(run(quick="--quick" in argv))
    print(report.to_json() if "--json" in argv else report.to_table())


if __name__ == "__main__":
    main(sys.argv[1:])
