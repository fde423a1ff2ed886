"""The unit's side of its media workers: the processes, their links, and a peer that lives in one.

:class:`WorkerPool` starts ``[media] workers`` processes when the daemon starts (so a join
never waits for an interpreter), restarts one that dies, and is the mesh's
``peer_factory``: each new remote participant gets a :class:`WorkerPeer` on the least
loaded worker. A :class:`WorkerLink` is one worker: its socket, its picture memory, and the
two pumps that feed it the unit's media while it has peers — the shared encoder's packets
(only while some peer there wants video: the worker says so) and the Opus stream.

A :class:`WorkerPeer` is what the mesh, the wall and ``/status`` see of a participant whose
connection lives in a worker. Commands (offer, signal, rekey, rebuild, close) go to the
worker; its connection state comes back as it changes, its figures twice a second; its
pictures and its audio arrive as they are decoded and received, into a
:class:`~appliance.mesh.receive.VideoReceiver` and the unit's mixer here, so the display,
the speaking highlight and the latency figures work as for a peer of the unit's own.
When a worker dies its peers stay in the mesh ("connecting" on the wall); the restarted
worker gets them back at once and each starts over with a fresh offer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from appliance.mesh import ice
from appliance.mesh.peer import LocalMedia, SendSignal, decode_status, link_status, video_status, wall_clock
from appliance.mesh.receive import VideoReceiver
from appliance.mesh.stats import LinkFigures, StatsSampler
from appliance.mesh.workers import frames, wire
from appliance.tasks import TaskSet

log = logging.getLogger(__name__)

try:  # the test pattern's stamps, read by the worker and carried in each picture's record
    from appliance.capture.pattern import Stamp
except ImportError:  # pragma: no cover - a build without the test pattern
    Stamp = None  # type: ignore[assignment,misc]

#: Encoded video waiting for a worker beyond this is dropped up to the next keyframe.
VIDEO_BACKLOG = 2 * 1024 * 1024
RESPAWN_DELAY_S = 0.2
#: A worker that has sent nothing for this long (it reports twice a second) is hung: it is killed
#: and started again like one that died.
SILENT_S = 5.0
CLOSE_WAIT_S = 5.0

_serial = itertools.count(1)

#: What a peer's status takes from the worker's own report of its connection.
_FROM_WORKER = ("decode_dropped", "decode_inline", "decode_ms", "audio_inline", "remb_dropped")


class _Inlet:
    """Where the mixer takes a worker-served peer's audio: samples the worker has decoded."""

    decoded = True

    def __init__(self) -> None:
        self.deliver: Callable[[np.ndarray], None] | None = None

    def connect(self, deliver: Callable[[np.ndarray], None] | None) -> None:
        self.deliver = deliver


class InletTrack(MediaStreamTrack):
    """A remote audio stream for the unit's mixer whose samples come from a worker, decoded there
    (the mixer reads :attr:`inlet`; :meth:`recv` only waits for the end)."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.inlet = _Inlet()
        self._ended = asyncio.Event()

    async def recv(self) -> Any:
        await self._ended.wait()
        raise MediaStreamError

    def stop(self) -> None:
        super().stop()
        self._ended.set()


class WorkerLink:
    """One worker process (see the module docstring)."""

    def __init__(self, pool: WorkerPool, index: int) -> None:
        self.pool = pool
        self.index = index
        self.peers: dict[int, WorkerPeer] = {}
        self.proc: asyncio.subprocess.Process | None = None
        self.proto: wire.RecordProtocol | None = None
        self.pid: int | None = None
        self.ready = asyncio.Event()
        self.starts = 0
        self.wants_video = False
        self._pictures_fd = frames.make_region()
        self.pictures = frames.PictureReader(self._pictures_fd)
        self._feed_task: asyncio.Task[None] | None = None
        self._feed_wake = asyncio.Event()
        self._closing: dict[int, asyncio.Future[None]] = {}
        self._closed = False
        self._watch: asyncio.Task[None] | None = None
        self._skip_to_key = False
        self._heard_at = time.monotonic()

    @property
    def load(self) -> int:
        return len(self.peers)

    async def start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.ready.clear()
        loop = asyncio.get_running_loop()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "appliance.mesh.workers.process",
                "--sock", str(theirs.fileno()), "--pictures", str(self._pictures_fd),
                "--log-level", logging.getLevelName(logging.getLogger().getEffectiveLevel()),
                pass_fds=(theirs.fileno(), self._pictures_fd),
            )
        finally:
            theirs.close()
        self.starts += 1
        self._heard_at = time.monotonic() + 10.0  # an interpreter's start is not silence
        _, self.proto = await loop.create_unix_connection(lambda: wire.RecordProtocol(self._on_record, self._lost), sock=ours)
        self._watch = asyncio.create_task(self._wait_exit(self.proc), name=f"media-worker-{self.index}")
        log.info("%s: media worker %d started (pid %d)", self.pool.name, self.index, self.proc.pid)
        for peer in self.peers.values():  # a restarted worker: its peers start over
            self.send(peer.open_record())
            self.send(wire.ctl("offer", handle=peer.handle))
        self._pumps()
        if not self.pool.media_camera():
            self.send(wire.ctl("camera", on=False))

    def send(self, data: bytes) -> bool:
        return self.proto is not None and self.proto.send(data)

    def attach(self, peer: WorkerPeer) -> None:
        self.peers[peer.handle] = peer
        self.send(peer.open_record())
        self._pumps()

    async def detach(self, peer: WorkerPeer) -> None:
        if self.peers.pop(peer.handle, None) is None:
            return
        done = asyncio.get_running_loop().create_future()
        self._closing[peer.handle] = done
        if self.send(wire.ctl("close", handle=peer.handle)):
            try:
                await asyncio.wait_for(asyncio.shield(done), CLOSE_WAIT_S)
            except TimeoutError:
                log.warning("%s: media worker %d did not close peer %s in %.0f s", self.pool.name, self.index,
                            peer.remote_id, CLOSE_WAIT_S)
        self._closing.pop(peer.handle, None)
        self._pumps()

    # -- records from the worker ---------------------------------------------------------

    def _on_record(self, kind: int, body: bytearray) -> None:
        if kind == wire.FRAME:
            handle, slot, seq, width, height, stamped, sender, counter, captured = wire.FRAME_REC.unpack_from(body)
            peer = self.peers.get(handle)
            if peer is not None:
                stamp = Stamp(sender, counter, captured) if stamped and Stamp is not None else None
                read = self.pictures.read
                peer.video.take(None, stamp, width, height, lambda: read(slot, seq, width, height))
        elif kind == wire.AUDIO_IN:
            (handle,) = wire.HANDLE.unpack_from(body)
            peer = self.peers.get(handle)
            if peer is not None:
                peer.audio_in(np.frombuffer(bytes(body[wire.HANDLE.size :]), np.int16))
        elif kind == wire.CTL:
            self._on_ctl(wire.load_ctl(body))

    def _on_ctl(self, msg: dict[str, Any]) -> None:
        self._heard_at = time.monotonic()  # a worker reports twice a second: its silence is a hang
        op = msg["op"]
        if op == "hello":
            self.pid = int(msg["pid"])
            self.ready.set()
        elif op == "keyframe":
            video = self.pool.media_video()
            if video is not None:
                video.request_keyframe()
        elif op == "active":
            self.wants_video = bool(msg["on"])
            self._pumps()
        elif op == "closed":
            done = self._closing.get(msg["handle"])
            if done is not None and not done.done():
                done.set_result(None)
        elif op == "report":
            for handle, status in msg["peers"].items():
                peer = self.peers.get(handle)
                if peer is not None:
                    peer.reported(status)
        else:
            peer = self.peers.get(msg.get("handle"))  # type: ignore[arg-type]
            if peer is None:
                return
            if op == "signal":
                self.pool.spawn(peer.send_signal(str(msg["to"]), msg["data"]), f"signal-{peer.remote_id}")
            elif op == "state":
                peer.state_changed(str(msg["state"]), msg.get("connected_at"))

    def _lost(self) -> None:
        self.ready.clear()
        self.proto = None
        for done in self._closing.values():
            if not done.done():
                done.set_result(None)
        for peer in self.peers.values():
            peer.state_changed("connecting", None)

    async def _wait_exit(self, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        if self.proto is not None:
            self.proto.connection_lost(None)
        if self._closed:
            return
        log.error("%s: media worker %d (pid %d) ended with %s; restarting it with its %d peers", self.pool.name,
                  self.index, proc.pid, code, len(self.peers))
        await self._stop_pumps()
        await asyncio.sleep(RESPAWN_DELAY_S)
        if not self._closed:
            try:
                await self.start()
            except OSError as exc:
                log.error("%s: media worker %d could not start again: %s", self.pool.name, self.index, exc)

    # -- the unit's media into the worker ------------------------------------------------

    def _pumps(self) -> None:
        """Something changed (peers, the worker's wish for video): let the feed catch up."""
        if self.proto is not None and not self._closed and (self._feed_task is None or self._feed_task.done()):
            self._feed_task = asyncio.create_task(self._feed(), name=f"worker-{self.index}-feed")
        self._feed_wake.set()

    async def _stop_pumps(self) -> None:
        task, self._feed_task = self._feed_task, None
        self.wants_video = False
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _feed(self) -> None:
        """Keep this worker tapped into the unit's encoder (while a peer there wants video) and its
        Opus stream (while it has peers), following devices that are opened again."""
        video_tap: Any = None
        audio_tap: Any = None
        try:
            while self.proto is not None and not self._closed:
                video, audio = self.pool.media_video(), self.pool.media_audio()
                want_video = self.wants_video and video is not None
                if video_tap is not None and (not want_video or video_tap.owner is not video or video_tap.readyState != "live"):
                    video_tap.stop()
                    video_tap = None
                if want_video and video_tap is None:
                    self._skip_to_key = False
                    video_tap = video.tap(self._video_packet)
                want_audio = bool(self.peers) and audio is not None
                if audio_tap is not None and (not want_audio or audio_tap.owner is not audio or audio_tap.readyState != "live"):
                    audio_tap.stop()
                    audio_tap = None
                if want_audio and audio_tap is None:
                    audio_tap = audio.tap(self._audio_packet)
                self._feed_wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._feed_wake.wait(), 0.5)
                self._check_alive()
        finally:
            for tap in (video_tap, audio_tap):
                if tap is not None:
                    tap.stop()

    def _check_alive(self) -> None:
        silent = time.monotonic() - self._heard_at
        if silent > SILENT_S and self.proc is not None and self.proc.returncode is None:
            log.error("%s: media worker %d (pid %d) has said nothing for %.0f s: killing it", self.pool.name,
                      self.index, self.proc.pid, silent)
            self.proc.kill()  # _wait_exit starts it again

    def _video_packet(self, packet: Any) -> None:
        """One of the shared encoder's packets, unchanged, to the worker (dropped up to the next
        keyframe while the worker is too far behind)."""
        proto = self.proto
        if proto is None:
            return
        if self._skip_to_key and not packet.is_keyframe:
            return
        if proto.backlog > VIDEO_BACKLOG:
            self._skip_to_key = True
            video = self.pool.media_video()
            if video is not None:
                video.request_keyframe()
            return
        self._skip_to_key = False
        proto.send(wire.video(packet.pts or 0, packet.is_keyframe, bytes(packet)))

    def _audio_packet(self, item: Any) -> None:
        if self.proto is not None and isinstance(item, av.Packet):  # raw frames never reach a worker
            self.proto.send(wire.audio(item.pts or 0, bytes(item)))

    async def close(self) -> None:
        self._closed = True
        await self._stop_pumps()
        proc, self.proc = self.proc, None
        if self.proto is not None and self.proto.transport is not None:
            self.proto.transport.close()
        if proc is not None and proc.returncode is None:
            try:
                await asyncio.wait_for(proc.wait(), 5.0)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._watch is not None:
            await asyncio.gather(self._watch, return_exceptions=True)
        self.pictures.close()
        os.close(self._pictures_fd)


class WorkerPool:
    """``[media] workers`` processes and the peers placed on them (see the module docstring)."""

    def __init__(self, count: int, media: Any, *, name: str = "unit") -> None:
        self.media = media
        self.name = name
        self.links = [WorkerLink(self, i) for i in range(count)]
        self._jobs = TaskSet(name, log)

    def media_video(self) -> Any:
        return getattr(self.media, "video", None)

    def media_audio(self) -> Any:
        return getattr(self.media, "audio_out", None)

    def media_camera(self) -> bool:
        return bool(getattr(self.media, "camera", True))

    async def start(self) -> None:
        await asyncio.gather(*(link.start() for link in self.links))

    def set_camera(self, on: bool) -> None:
        for link in self.links:
            link.send(wire.ctl("camera", on=on))

    def spawn(self, coro: Any, what: str) -> None:
        self._jobs.spawn(coro, what)

    def peer(self, **link: Any) -> WorkerPeer:
        """The mesh's ``peer_factory`` (its keywords: :class:`~appliance.mesh.mesh.PeerFactory`): the new
        participant's link, on the least loaded worker."""
        worker = min(self.links, key=lambda w: (w.load, w.index))
        peer = WorkerPeer(worker, **link)
        worker.attach(peer)
        return peer

    def status(self) -> list[dict[str, Any]]:
        """``media.workers`` in ``GET /status`` (``appliance.wall.status.WorkerStatus``)."""
        return [{"index": w.index, "pid": w.pid, "peers": w.load, "remotes": sorted(p.name for p in w.peers.values()),
                 "starts": w.starts, "torn": w.pictures.torn} for w in self.links]

    async def close(self) -> None:
        await asyncio.gather(*(link.close() for link in self.links), return_exceptions=True)
        await self._jobs.cancel()


class WorkerPeer:
    """A remote participant whose connection lives in a worker (a :class:`~appliance.mesh.mesh.MeshPeer`)."""

    def __init__(
        self,
        link: WorkerLink,
        *,
        local_id: str,
        remote_id: str,
        name: str,
        kind: str,
        policy: ice.IcePolicy,
        media: LocalMedia,
        send_signal: SendSignal,
        on_change: Callable[[Any], None],
        stamp_reader: Callable[[Any], Any] | None,
        on_frame: Callable[[], None] | None,
    ) -> None:
        self.link = link
        self.handle = next(_serial)
        self.local_id, self.remote_id, self._name, self._kind = local_id, remote_id, name, kind
        self.policy = policy
        self.media = media
        self.send_signal = send_signal
        self.on_change = on_change
        self.muted = False
        self.camera = True
        self.stale = False
        self.audio_key = f"{remote_id}#{self.handle}w"
        self.video = VideoReceiver(None, label=f"{local_id}->{remote_id}({name})", stamp_reader=stamp_reader,
                                   on_frame=on_frame)
        self.stats = StatsSampler()
        self.connected_at: float | None = None
        self.rebuilds = 0
        self._state = "new"
        self._report: dict[str, Any] = {}
        self._audio_at: float | None = None
        self._rebuild_asked = float("-inf")
        self._closed = False
        self._track = InletTrack()
        self._inlet = self._track.inlet
        media.add_remote_audio(self.audio_key, self._track)

    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, name: str) -> None:  # the roster told the mesh (a link made before it knew)
        self._name = name
        self.link.send(wire.ctl("describe", handle=self.handle, name=self._name, kind=self._kind))

    @property
    def kind(self) -> str:
        return self._kind

    @kind.setter
    def kind(self, kind: str) -> None:
        self._kind = kind
        self.link.send(wire.ctl("describe", handle=self.handle, name=self._name, kind=self._kind))

    def open_record(self) -> bytes:
        return wire.ctl("open", handle=self.handle, local_id=self.local_id, remote_id=self.remote_id, name=self.name,
                        kind=self.kind, policy=self.policy)

    # -- what the worker says ------------------------------------------------------------

    def state_changed(self, state: str, connected_at: float | None) -> None:
        if self._closed or state == self._state:
            return
        self._state = state
        if state == "connected":
            self.connected_at = connected_at or time.monotonic()
        self.on_change(self)

    def reported(self, status: dict[str, Any]) -> None:
        self._report = status
        f = status.get("figures") or {}
        self.stats.figures = LinkFigures(bitrate=f.get("bitrate"), loss=f.get("loss"), rtt=f.get("rtt"),
                                         out_loss=f.get("out_loss"))
        self.rebuilds = max(self.rebuilds, int(status.get("rebuilds") or 0))

    def audio_in(self, samples: np.ndarray) -> None:
        self._audio_at = time.monotonic()
        deliver = self._inlet.deliver
        if deliver is not None:
            deliver(samples)

    # -- MeshPeer --------------------------------------------------------------------------

    @property
    def connection_state(self) -> str:
        return "closed" if self._closed else self._state

    def last_media_age(self) -> float | None:
        times = [t for t in (self.video.latest.frame_time, self._audio_at) if t is not None]
        return time.monotonic() - max(times) if times else None

    def rekey(self, local_id: str, remote_id: str) -> None:
        log.info("peer %s->%s: now known as %s->%s", self.local_id, self.remote_id, local_id, remote_id)
        self.local_id, self.remote_id = local_id, remote_id
        self.stale = False
        self.link.send(wire.ctl("rekey", handle=self.handle, local_id=local_id, remote_id=remote_id))

    async def offer(self) -> None:
        self.link.send(wire.ctl("offer", handle=self.handle))

    async def handle_signal(self, data: dict[str, Any]) -> None:
        self.link.send(wire.ctl("signal", handle=self.handle, data=data))

    def needs_rebuild(self, now: float) -> bool:
        if self._closed or now - self._rebuild_asked < 2.0:
            return False
        return bool(self._report.get("needs_rebuild"))

    async def rebuild(self) -> None:
        self._rebuild_asked = time.monotonic()
        self.rebuilds += 1
        self.link.send(wire.ctl("rebuild", handle=self.handle))

    async def sample_stats(self) -> None:
        """Nothing to do here: the worker samples its connections and reports the figures."""

    def status(self, samples: bool = False) -> dict[str, Any]:
        """Like a :class:`~appliance.mesh.peer.Peer`'s: the worker's figures of the connection, this
        unit's of the pictures (they are measured where they are shown)."""
        out = link_status(self, self.stats.figures)
        out.update(decode_status(None))
        out.update({"audio_inline": False, "remb_dropped": False, "connected_at": wall_clock(self.connected_at)})
        out.update({k: v for k, v in self._report.items() if k in _FROM_WORKER})
        out.update(video_status(self.video, samples))
        return out

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.media.remove_remote_audio(self.audio_key)
        self._track.stop()
        await self.link.detach(self)
        await self.video.close()
