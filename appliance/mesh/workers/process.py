"""A media worker: the peer connections of some of a unit's remote participants, in a process of their own.

Started by the unit (:mod:`appliance.mesh.workers.pool`) as
``python -m appliance.mesh.workers.process --sock FD --pictures FD``. It runs the same
:class:`~appliance.mesh.peer.Peer` as a unit that has no workers — negotiation, ICE, DTLS,
SRTP, depacketizing, the inline decode — with the unit's media coming in over its socket:

* video: the unit's one encoder's access units feed a :class:`~appliance.mesh.fanout.SharedVideo`
  here through :class:`PipeSource` (nothing is encoded again); its keyframe requests and
  whether any peer here wants video go back to the unit's encoder;
* audio out: the unit's Opus packets are handed to each peer's track (:class:`AudioRelay`);
* audio in: each remote Opus packet is decoded here and its samples go back to the unit's
  mixer as it arrives;
* pictures: each decoded picture is written into shared memory (:mod:`.frames`) and named
  in a small record; the unit copies it out for its display and status.

A report of every peer (state, figures, whether it wants a rebuild) goes to the unit twice a
second. The worker ends when the unit's end of the socket closes.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
import time
import weakref
from typing import Any, cast

import av

from appliance.capture.audioformat import AUDIO_TIME_BASE
from appliance.capture.base import VIDEO_TIME_BASE, EncodedVideoSource, PacketOutput
from appliance.mesh import garbage
from appliance.mesh.receive import default_stamp_reader
from appliance.mesh.workers import frames, wire
from appliance.tasks import TaskSet

log = logging.getLogger(__name__)

REPORT_S = 0.5
STATS_S = 1.0


class PipeSource(EncodedVideoSource):
    """The unit's encoder, seen from a worker: packets come over the socket."""

    def __init__(self, send: Any) -> None:
        self.width = self.height = self.fps = self.bitrate = 0
        self._send = send
        self._output: PacketOutput | None = None
        self._ended = asyncio.Event()
        self.active = False

    async def start(self, output: PacketOutput) -> None:
        self._output = output

    async def ended(self) -> None:
        await self._ended.wait()

    def request_keyframe(self) -> None:
        self._send(wire.ctl("keyframe"))

    def set_active(self, active: bool) -> None:
        if active != self.active:
            self.active = active
            self._send(wire.ctl("active", on=active))

    def feed(self, body: bytearray) -> None:
        pts, key = wire.VIDEO_HEAD.unpack_from(body)
        packet = av.Packet(bytes(body[wire.VIDEO_HEAD.size :]))
        packet.pts, packet.time_base, packet.is_keyframe = pts, VIDEO_TIME_BASE, bool(key)
        if self._output is not None:
            self._output(packet)

    async def close(self) -> None:
        self._ended.set()


class AudioRelay:
    """The unit's Opus packets, fanned out to every peer's audio track here."""

    def __init__(self) -> None:
        self._tracks: set[Any] = set()

    def track(self) -> Any:
        from appliance.mesh.audio import SharedAudioTrack

        track = SharedAudioTrack(cast(Any, self))  # it only removes itself from _tracks on stop
        self._tracks.add(track)
        return track

    def feed(self, body: bytearray) -> None:
        (pts,) = wire.AUDIO_HEAD.unpack_from(body)
        packet = av.Packet(bytes(body[wire.AUDIO_HEAD.size :]))
        packet.pts, packet.time_base = pts, AUDIO_TIME_BASE
        for track in list(self._tracks):
            track.push(packet)

    def close(self) -> None:
        for track in list(self._tracks):
            track.stop()


class PeerMedia:
    """One peer's :class:`~appliance.mesh.peer.LocalMedia` inside a worker."""

    def __init__(self, worker: Worker, handle: int) -> None:
        self.worker = worker
        self.handle = handle

    def video_track(self) -> Any | None:
        from appliance.mesh.fanout import gated_video_track

        gate = gated_video_track(self.worker.video.track, self.worker.camera)
        self.worker.gates.add(gate)
        return gate

    def audio_track(self) -> Any | None:
        return self.worker.audio.track()

    def bind_video_sender(self, sender: Any) -> None:
        self.worker.video.attach(sender)

    def add_remote_audio(self, key: str, track: Any) -> bool:
        inlet = getattr(track, "inlet", None)
        if inlet is None:  # aiortc's own decoder path: its audio cannot reach the unit's mixer
            log.warning("worker: %s: remote audio is not on the inline path; it is not played", key)
            return False
        from appliance.mesh.audio import OpusDecoder

        send, head, opus = self.worker.send, wire.HANDLE.pack(self.handle), OpusDecoder()

        def deliver(payload: bytes) -> None:  # decoded here: the unit's mixer only buffers samples
            for samples in opus.decode(payload):
                pcm = samples.tobytes()
                send(wire.HEADER.pack(wire.AUDIO_IN, len(pcm) + 4) + head + pcm)

        inlet.connect(deliver)
        return True

    def remove_remote_audio(self, key: str) -> None:
        pass  # the inlet goes with the receiver the peer closes


class Worker:
    """One worker process's peers and the unit's media as they arrive (see the module docstring)."""

    def __init__(self, sock: socket.socket, pictures: int) -> None:
        self.sock = sock
        self.pictures = frames.PictureWriter(pictures)
        self.proto: wire.RecordProtocol | None = None
        self.video: Any = None
        self.audio = AudioRelay()
        self.source = PipeSource(self.send)
        self.camera = True
        self.gates: weakref.WeakSet[Any] = weakref.WeakSet()
        self.peers: dict[int, Any] = {}
        self.rings: dict[int, int] = {}
        self._jobs = TaskSet("worker", log)
        self._gone = asyncio.Event()
        self.stamp_reader = default_stamp_reader()  # the test pattern's stamps are read here, next to the decoder

    def send(self, data: bytes) -> None:
        if self.proto is not None:
            self.proto.send(data)

    async def run(self) -> None:
        from appliance.mesh.fanout import SharedVideo

        loop = asyncio.get_running_loop()
        _, proto = await loop.create_unix_connection(lambda: wire.RecordProtocol(self.on_record, self._gone.set), sock=self.sock)
        self.proto = proto
        self.video = SharedVideo(self.source, name=f"worker-{os.getpid()}")
        await self.video.start()
        self.send(wire.ctl("hello", pid=os.getpid()))
        garbage.freeze()
        reports = asyncio.create_task(self._report(), name="worker-report")
        try:
            await self._gone.wait()
        finally:
            reports.cancel()
            await asyncio.gather(reports, return_exceptions=True)
            await asyncio.gather(*(p.close() for p in self.peers.values()), return_exceptions=True)
            self.audio.close()
            await self.video.close()
            self.pictures.close()

    # -- from the unit -------------------------------------------------------------------

    def on_record(self, kind: int, body: bytearray) -> None:
        if kind == wire.VIDEO:
            self.source.feed(body)
        elif kind == wire.AUDIO:
            self.audio.feed(body)
        elif kind == wire.CTL:
            self.on_ctl(wire.load_ctl(body))

    def on_ctl(self, msg: dict[str, Any]) -> None:
        op = msg["op"]
        handle = msg.get("handle")
        handle = handle if isinstance(handle, int) else -1
        if op == "camera":
            self.camera = bool(msg["on"])
            for gate in list(self.gates):
                gate.set_open(self.camera)
            return
        if op == "open":
            self._open(msg)
            return
        peer = self.peers.get(handle)
        if peer is None:
            if op == "close":
                self.send(wire.ctl("closed", handle=handle))
            return
        if op == "offer":
            self._spawn(peer.offer(), f"offer-{handle}")
        elif op == "rebuild":
            self._spawn(peer.rebuild(), f"rebuild-{handle}")
        elif op == "signal":
            self._spawn(peer.handle_signal(msg["data"]), f"signal-{handle}")
        elif op == "rekey":
            peer.rekey(msg["local_id"], msg["remote_id"])
        elif op == "describe":
            peer.name, peer.kind = str(msg["name"]), str(msg["kind"])
        elif op == "close":
            self._spawn(self._close(handle), f"close-{handle}")

    def _open(self, msg: dict[str, Any]) -> None:
        from appliance.mesh.peer import Peer

        handle = int(msg["handle"])
        free = sorted(set(range(frames.RINGS)) - set(self.rings.values()))
        if handle in self.peers or not free:
            log.error("worker: cannot open peer %d (%s)", handle, "in use" if handle in self.peers else "no picture ring free")
            return
        self.rings[handle] = free[0]

        async def send_signal(to: str, data: dict[str, Any]) -> bool:
            self.send(wire.ctl("signal", handle=handle, to=to, data=data))
            return True

        def on_change(peer: Any) -> None:
            self.send(wire.ctl("state", handle=handle, state=peer.connection_state, connected_at=peer.connected_at))

        self.peers[handle] = Peer(
            local_id=msg["local_id"], remote_id=msg["remote_id"], name=msg["name"], kind=msg["kind"],
            policy=msg["policy"], media=PeerMedia(self, handle), send_signal=send_signal,
            on_change=on_change, on_frame=lambda: self._picture(handle), stamp_reader=self.stamp_reader,
        )

    async def _close(self, handle: int) -> None:
        peer = self.peers.get(handle)
        try:
            if peer is not None:
                await peer.close()
        finally:
            self.peers.pop(handle, None)
            self.rings.pop(handle, None)
            self.send(wire.ctl("closed", handle=handle))

    def _spawn(self, coro: Any, what: str) -> None:
        self._jobs.spawn(coro, what)

    # -- to the unit ---------------------------------------------------------------------

    def _picture(self, handle: int) -> None:
        peer, ring = self.peers.get(handle), self.rings.get(handle)
        if peer is None or ring is None or peer.video is None or peer.video.latest.frame is None:
            return
        latest = peer.video.latest
        frame = latest.frame
        written = self.pictures.write(ring, frame)
        if written is not None:
            self.send(wire.frame(handle, written[0], written[1], frame.width, frame.height, latest.stamp))

    async def _report(self) -> None:
        sampled = 0.0
        while True:
            await asyncio.sleep(REPORT_S)
            now = time.monotonic()
            if now - sampled >= STATS_S:
                sampled = now
                await asyncio.gather(*(p.sample_stats() for p in list(self.peers.values())), return_exceptions=True)
            peers = {}
            for handle, peer in list(self.peers.items()):
                status = peer.status()
                status["needs_rebuild"] = peer.needs_rebuild(now)
                status["figures"] = peer.stats.figures.as_dict()
                peers[handle] = status
            self.send(wire.ctl("report", peers=peers))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wallmesh-media-worker")
    parser.add_argument("--sock", type=int, required=True, help="the unit's socket (an inherited fd)")
    parser.add_argument("--pictures", type=int, required=True, help="the shared picture memory (an inherited fd)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format=f"%(asctime)s worker[{os.getpid()}] %(levelname)s %(name)s: %(message)s")
    from appliance.mesh import aioice_hooks, aiortc_hooks
    from appliance.mesh.eventloop import event_loop_factory

    for check in (aiortc_hooks.check, aioice_hooks.check):
        check()
    aiortc_hooks.install_dtls_verify()
    sock = socket.socket(fileno=args.sock)
    worker = Worker(sock, args.pictures)
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(worker.run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
