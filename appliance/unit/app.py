"""The unit daemon's composition root: config in, a running wall unit out.

:class:`UnitDaemon` builds every part from a :class:`~appliance.unit.config.UnitConfig`
— the unit's media (camera behind one shared encoder, microphone, speaker), the
mesh of peer connections, the signaling client, the state machine and the
loopback status endpoint — and is the production
:class:`~appliance.wall.controller.UnitController` that buttons, the status
endpoint and the display drive. It owns the order of start-up and shutdown;
each part owns its own resources.

Start-up overlaps the two slow things a unit does before its first picture:
signaling (mDNS discovery, enrollment, token, hello) runs while the camera,
encoder and audio devices open; the ``join`` waits for the devices, so the room
never sees a participant whose media cannot be offered yet.

A device that does not open (a camera unplugged, a USB speakerphone missing) does
not stop the unit: the wall shows what to do ("Camera not found — call IT"),
``/status`` says which device and why, the buttons and the status endpoint keep
working, and the devices are tried again every :data:`DEVICE_RETRY_S`; once they
open, the unit goes on into its room.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from appliance import protocol
from appliance.display import messages
from appliance.errors import DeviceError
from appliance.mesh import ice
from appliance.mesh.mesh import Mesh
from appliance.mesh.receive import default_stamp_reader
from appliance.mesh.workers import worker_count
from appliance.mesh.workers.pool import WorkerPool
from appliance.unit.config import UnitConfig
from appliance.unit.media import UnitMedia
from appliance.unit.signaling import SignalClient
from appliance.wall.controller import (
    FrameCallback,
    Listeners,
    StatusCallback,
    Unsubscribe,
)
from appliance.wall.machine import StateMachine
from appliance.wall.model import Tile, WallModel, quality_from
from appliance.wall.speaker import ActiveSpeaker, LevelMeter
from appliance.wall.states import UnitState
from appliance.wall.status import DaemonStatus, PeerStatus, ProcessFigures, SoftwareStatus, WorkerStatus

if TYPE_CHECKING:
    from appliance.unit.frontpanel import FrontPanel
    from appliance.unit.status import StatusServer

log = logging.getLogger(__name__)

#: How often the speaking highlight and the microphone meter take a reading (Hz).
AUDIO_WATCH_RATE = 20.0
NOTICE_SECONDS = 2.0  # how long a toast ("Volume 70%") stays on the wall
DEVICE_RETRY_S = 5.0  # how often devices that did not open are tried again
SOFTWARE_READ_S = 5.0  # how often the update record is read again (a trial's confirmation shows within this)


def process_figures() -> ProcessFigures:
    """Resident memory, open file descriptors and asyncio tasks of this process (leak checks)."""
    try:
        with open("/proc/self/statm") as fh:
            rss_kb = int(fh.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, ValueError, IndexError):
        rss_kb = None
    try:
        fds = len(os.listdir("/proc/self/fd"))
    except OSError:
        fds = None
    try:
        tasks = len(asyncio.all_tasks())
    except RuntimeError:
        tasks = None
    return {"pid": os.getpid(), "rss_kb": rss_kb, "fds": fds, "tasks": tasks}


class UnitDaemon:
    """One wall unit: media, mesh, signaling, state and status, wired together."""

    def __init__(self, conf: UnitConfig) -> None:
        self.conf = conf
        self.name = conf.server.name or socket.gethostname().split(".")[0]
        self.machine = StateMachine(name=self.name, room=conf.room, mute_resets=conf.call.mute_resets)
        self.volume = 70
        self.started_wall = time.time()
        self.media = UnitMedia(conf, sender=zlib.crc32(self.name.encode()) & 0xFFFF, name=self.name)
        self.signal = SignalClient(conf, self, name=self.name)
        workers = worker_count(conf.media.workers)
        # more than one worker: the peer connections live in worker processes (appliance.mesh.workers)
        self.workers = WorkerPool(workers, self.media, name=self.name) if workers > 1 else None
        self.mesh = Mesh(
            policy=ice.IcePolicy.from_config(conf.ice),
            media=self.media,
            send_signal=self.signal.send_signal,
            on_change=self._changed,
            stamp_reader=default_stamp_reader(),
            on_frame=self._frame_arrived,
            peer_factory=self.workers.peer if self.workers is not None else None,
        )
        self.status_server: StatusServer | None = None
        self.front_panel: FrontPanel | None = None  # display, buttons, LEDs (not when headless)
        self.heartbeat: Callable[[str], None] | None = None  # the systemd watchdog's beat(name), set by the runner
        self._listeners = Listeners("status")
        self._frame_listeners = Listeners("frame", drop_failing=True)
        self._jobs: set[asyncio.Task[Any]] = set()
        self._file_task: asyncio.Task[None] | None = None
        self._lag_task: asyncio.Task[None] | None = None
        self._audio_task: asyncio.Task[None] | None = None
        self.speaker = ActiveSpeaker()  # the one speaking-highlight rule, fed by _watch_audio
        self.mic_meter = LevelMeter()
        self._notice = ("", 0.0)  # the wall's toast and until when it shows
        self.loop_lag_ms = 0.0  # worst event-loop delay over the last second (overload shows here first)
        self._notify_pending = False
        self._closed = False
        self._devices_open = asyncio.Event()  # the join waits for it (see on_session)
        self._accounts: dict[str, str] = {}  # peer id -> who the server knows it to be (roster 'account')
        self.device_retry_s = DEVICE_RETRY_S
        self.devices_missing: DeviceError | None = None  # why the devices did not open, until they do
        self._held_room: str | None = None  # the room to join once the devices open
        self._device_task: asyncio.Task[None] | None = None
        self.software: SoftwareStatus | None = None  # which version runs and why (the update record)
        self._software_task: asyncio.Task[None] | None = None
        self.machine.subscribe(self._machine_changed)

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Signaling starts, then the devices open meanwhile; then status and the wall. The
        room is joined once the devices are open: a missing one is shown on the wall and
        tried again (see the module docstring), it does not stop the unit."""
        await asyncio.to_thread(lambda: Path(self.conf.state_dir).expanduser().mkdir(parents=True, exist_ok=True, mode=0o700))
        if self.workers is not None:  # their interpreters start while the devices open
            await self.workers.start()
        self.mesh.start()
        if self.conf.autojoin:
            self.machine.to(UnitState.JOINING, "autojoin at start")
        await self.signal.start()  # its task locates and authenticates while the devices open
        if not await self._open_devices():
            self._device_task = asyncio.create_task(self._retry_devices(), name="device-retry")
        self._devices_open.set()  # open or not: the session goes on (without a join while not)
        from appliance.fleet.update.running import running_version
        from appliance.unit.status import StatusServer

        self.software = await asyncio.to_thread(running_version, self._state_dir())
        self.status_server = StatusServer(self, self.conf.status.host, self.conf.status.port)
        try:
            await self.status_server.start()
        except OSError as exc:
            where = f"{self.conf.status.host}:{self.conf.status.port}"
            raise DeviceError(where, "status.port", f"cannot serve the status endpoint: {exc.strerror or exc}") from exc
        if not self.conf.headless:
            from appliance.unit.frontpanel import FrontPanel

            self.front_panel = FrontPanel(self.conf, self, heartbeat=self.heartbeat)
            await self.front_panel.start()
        self._lag_task = asyncio.create_task(self._watch_loop_lag(), name="loop-lag")
        self._software_task = asyncio.create_task(self._watch_software(), name="update-record")
        self._audio_task = asyncio.create_task(self._watch_audio(), name="audio-watch")
        if self.conf.status.file:
            self._file_task = asyncio.create_task(self._write_status_file(), name="status-file")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.signal.close()
        await self.mesh.close()
        if self.workers is not None:
            await self.workers.close()
        for task in (self._device_task, self._file_task, self._lag_task, self._audio_task, self._software_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self.status_server is not None:
            await self.status_server.close()
        if self.front_panel is not None:
            await self.front_panel.close()
        await self.media.close()

    # -- devices ---------------------------------------------------------------------------

    async def _open_devices(self) -> bool:
        """Open camera, microphone and speaker; False (and the wall says which) when one is missing.

        While a device is missing the unit stays out of its room: the room it was going to
        join is held, and joined once the devices open."""
        try:
            await self.media.start()
        except DeviceError as exc:
            await self.media.close()  # what did open is released; the next try opens it all afresh
            if self.devices_missing is None or str(exc) != str(self.devices_missing):
                log.warning("%s: %s; trying again every %g s", self.name, exc, self.device_retry_s)
            self.devices_missing = exc
            if self.signal.want_room:
                self._held_room = self.signal.want_room
                if self.signal.room is not None:
                    await self.signal.leave()
                self.signal.want_room = None
            self.machine.fail(messages.for_error(exc), "device missing")
            return False
        if self.media.mixer is not None:  # the speaker plays at the volume the wall shows
            self.media.mixer.set_volume(self.volume / 100.0)
        if self.devices_missing is not None:
            log.info("%s: the devices are open now", self.name)
        self.devices_missing = None
        return True

    async def _retry_devices(self) -> None:
        """Try the devices again until they open, then go on into the held room (or idle)."""
        while True:
            await asyncio.sleep(self.device_retry_s)
            if self.devices_missing is None:  # a join press opened them meanwhile
                return
            if await self._open_devices():
                break
        room, self._held_room = self._held_room, None
        if room:
            self.machine.to(UnitState.JOINING, "devices open")
            await self.signal.join(room)
        elif self.machine.state == UnitState.ERROR:
            self.machine.to(UnitState.IDLE, "devices open")

    # -- SignalHandler ---------------------------------------------------------------------

    async def on_session(self, welcome: dict[str, Any]) -> None:
        await self._devices_open.wait()  # the signaling client joins after this returns
        self.mesh.set_session(welcome)
        if self.machine.state == UnitState.ERROR and self.signal.want_room:
            self.machine.to(UnitState.JOINING, "signaling server accepted the unit")
        await self.signal.send_state(self.machine.muted, self.machine.camera)

    async def on_joined(self, msg: dict[str, Any]) -> None:
        self._accounts.clear()
        for entry in msg.get("peers") or []:
            if isinstance(entry, dict):
                self._learn(entry)
        await self.mesh.on_joined(msg)
        if self.machine.state != UnitState.IN_CALL:
            self.machine.to(UnitState.IN_CALL, f"joined {msg.get('room')}")

    async def on_server_message(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "error" and msg.get("code") in ("forbidden", "room_full") and msg.get("ref") in (None, "join"):
            log.warning("%s: cannot join %s: %s", self.name, self.conf.room, msg["code"])
            self.machine.fail(messages.for_code(msg["code"]), msg["code"])
        if msg["type"] == "peer-joined":
            self._learn(msg)
        await self.mesh.on_message(msg)
        if msg["type"] in ("peer-left", "left"):
            for gone in set(self._accounts) - set(self.mesh.peers):
                del self._accounts[gone]

    def _learn(self, entry: dict[str, Any]) -> None:
        """Clean a roster entry's name in place (an older server passes names on as they came)
        and remember its ``account``, so the tile can say who it is."""
        if isinstance(entry.get("name"), str):
            entry["name"] = protocol.clean_name(entry["name"])
        account = entry.get("account")
        if isinstance(account, str) and isinstance(entry.get("peer_id"), str):
            self._accounts[entry["peer_id"]] = protocol.clean_name(account)

    async def on_signaling_error(self, exc: BaseException) -> None:
        """Credentials refused: someone has to act (enroll the unit, fix the token file).

        The room sees a sentence it can act on; the server's own words stay in the log."""
        if self.machine.state != UnitState.IN_CALL:
            self.machine.fail(messages.for_error(exc), "auth")

    async def on_signaling_unreachable(self, exc: BaseException) -> None:
        """No session: a unit on its way into its room says so instead of spinning on
        "Joining…" (the status's ``signaling.error`` has the details). A call in progress
        carries on under the reconnecting banner; the next session joins again."""
        if self.machine.state == UnitState.JOINING:
            self.machine.fail(messages.for_error(exc), "signaling server unreachable")

    async def on_signaling_down(self) -> None:
        if self.machine.state in (UnitState.IN_CALL, UnitState.JOINING):
            self.machine.to(UnitState.RECONNECTING, "signaling server unreachable")

    # -- UnitController --------------------------------------------------------------------

    def status(self) -> DaemonStatus:
        """The ``GET /status`` document (fields: :mod:`appliance.wall.status`)."""
        m = self.machine
        # Peer.status() builds each entry as a plain dict of exactly PeerStatus's keys
        # (tests/unit/test_status.py holds the two together).
        peers = cast(list[PeerStatus], self.mesh.status(self.conf.status.samples))
        for peer in peers:
            account = self._accounts.get(peer["id"])
            if account is not None:
                peer["account"] = account
        doc: DaemonStatus = {
            "state": m.state.value,
            "room": self.mesh.room or m.room,
            "name": self.name,
            "muted": m.muted,
            "camera": m.camera,
            "volume": self.volume,
            "message": m.message,
            "since": round(time.monotonic() - m.since, 3),
            "peer_id": self.signal.peer_id,
            "signaling": self.signal.status(),
            "joined_at": self.mesh.joined_at,
            "peers": peers,
            "media": self.media.status(),
            "process": {**process_figures(), "loop_lag_ms": round(self.loop_lag_ms, 1)},
            "status_url": self.status_server.url if self.status_server is not None else None,
            "started": self.started_wall,
            "time": time.time(),
            "room_mode": self.mesh.mode,
            "room_switch_gap_ms": None if self.mesh.switch_gap_ms is None else round(self.mesh.switch_gap_ms, 1),
            "room_upload_kbps": self.mesh.sfu.upload_kbps if self.mesh.sfu is not None else None,
            "room_switched_at": None if self.mesh.switched_at is None else round(time.time() - (time.monotonic() - self.mesh.switched_at), 3),
        }
        if self.software is not None:
            doc["software"] = self.software
        if self.workers is not None:
            doc["media"]["workers"] = cast(list[WorkerStatus], self.workers.status())
        return doc

    async def join(self) -> None:
        """Join the room; with a device missing, try it once more, else hold the join for
        when it opens and refuse (the wall keeps saying what is missing)."""
        if self.machine.in_room and self.signal.want_room:
            return
        if self.devices_missing is not None:
            self._held_room = self.conf.room
            if not await self._open_devices():
                missing = self.devices_missing
                assert missing is not None
                raise DeviceError(missing.device, missing.key, f"{missing.problem}; the call starts once it opens") from missing
            self._held_room = None
        self.machine.to(UnitState.JOINING, "join requested")
        await self.signal.join(self.conf.room)

    async def hangup(self) -> None:
        self._held_room = None
        await self.signal.leave()
        await self.mesh.clear()
        if self.devices_missing is not None:
            return  # the wall goes on saying what is missing: an idle screen would hide it
        if self.machine.state != UnitState.IDLE:
            self.machine.to(UnitState.IDLE, "hang-up")

    async def set_muted(self, muted: bool) -> None:
        self.media.set_muted(muted)
        if self.machine.set_muted(muted):
            await self.signal.send_state(self.machine.muted, self.machine.camera)

    async def set_camera(self, on: bool) -> None:
        self.media.set_camera(on)
        if self.workers is not None:
            self.workers.set_camera(on)
        if self.machine.set_camera(on):
            await self.signal.send_state(self.machine.muted, self.machine.camera)

    async def restart_call(self) -> None:
        await self.hangup()
        await self.join()

    async def change_volume(self, delta: int) -> None:
        """Step the speaker volume; the wall shows it for :data:`NOTICE_SECONDS` (at the ends
        of the scale too, so a press always answers)."""
        volume = max(0, min(100, self.volume + int(delta)))
        self._notice = (f"Volume {volume}%", time.monotonic() + NOTICE_SECONDS)
        if volume != self.volume:
            self.volume = volume
            log.info("%s: volume %d%%", self.name, volume)
            if self.media.mixer is not None:
                self.media.mixer.set_volume(volume / 100.0)
        self._changed()

    def subscribe(self, callback: StatusCallback) -> Unsubscribe:
        return self._listeners.add(callback)

    def subscribe_frames(self, callback: FrameCallback) -> Unsubscribe:
        """Call ``callback()`` on the loop whenever any peer's new video frame arrives."""
        return self._frame_listeners.add(callback)

    def _frame_arrived(self) -> None:
        self._frame_listeners.emit()

    def wall_model(self) -> WallModel:
        m = self.machine
        tiles = []
        speaking = self.speaker.current
        for peer in self.mesh.peers.values():
            latest = peer.video.latest if peer.video is not None else None
            fig = peer.stats.figures
            tiles.append(
                Tile(
                    peer_id=peer.remote_id,
                    name=protocol.clean_name(peer.name),
                    account=self._accounts.get(peer.remote_id, ""),
                    kind=peer.kind,
                    frame=latest.frame if latest else None,
                    frame_time=latest.frame_time if latest else None,
                    muted=peer.muted,
                    camera=peer.camera,
                    quality=quality_from(fig.loss, fig.rtt),
                    reconnecting=peer.stale or peer.connection_state != "connected",
                    speaking=speaking is not None and peer.audio_key == speaking,
                )
            )
        self_view = self.media.self_view() if m.camera else None
        return WallModel(
            state=m.state,
            room=self.mesh.room or m.room,
            unit_name=self.name,
            tiles=tiles,
            self_view=self_view[0] if self_view else None,
            self_view_time=self_view[1] if self_view else None,
            muted=m.muted,
            camera=m.camera,
            message=m.message,
            mic_level=0.0 if m.muted else self.mic_meter.value,
            notice=self._notice[0] if time.monotonic() < self._notice[1] else "",
        )

    def watch_audio_once(self, now: float | None = None) -> None:
        """One reading for the speaking highlight (each peer's level as the mixer plays it)
        and the microphone meter (the level of what the unit sends)."""
        now = time.monotonic() if now is None else now
        mixer = self.media.mixer
        self.speaker.update(mixer.levels() if mixer is not None else {}, now)
        out = self.media.audio_out
        if out is None or self.machine.muted or out.muted:
            self.mic_meter.reset()
        else:
            self.mic_meter.update(out.level, now)

    # -- change notification ---------------------------------------------------------------

    def _machine_changed(self, machine: StateMachine) -> None:
        if machine.muted != self.media.muted:  # the machine unmuted at call end (call.mute_resets)
            self.media.set_muted(machine.muted)
            if not self._closed:
                job = asyncio.get_running_loop().create_task(self.signal.send_state(machine.muted, machine.camera))
                self._jobs.add(job)
                job.add_done_callback(self._jobs.discard)
        self._changed()

    def _changed(self) -> None:
        """Coalesce bursts of changes into one status callback per loop iteration."""
        if self._notify_pending or self._closed:
            return
        self._notify_pending = True
        asyncio.get_running_loop().call_soon(self._notify)

    def _notify(self) -> None:
        self._notify_pending = False
        self._listeners.emit(self.status())
        live = [p for p in self.mesh.peers.values() if not p.stale]
        losses = [p.stats.figures.out_loss for p in live if p.stats.figures.out_loss is not None]
        self.media.apply_quality(len(live) + 1, max(losses) if losses else None)

    async def _watch_audio(self) -> None:
        """Readings at a steady rate, whoever reads the wall model and however often."""
        while True:
            self.watch_audio_once()
            await asyncio.sleep(1.0 / AUDIO_WATCH_RATE)

    async def _watch_loop_lag(self, period: float = 0.1) -> None:
        loop = asyncio.get_running_loop()
        worst, since = 0.0, loop.time()
        while True:
            before = loop.time()
            await asyncio.sleep(period)
            now = loop.time()
            worst = max(worst, (now - before - period) * 1000)
            if now - since >= 1.0:
                self.loop_lag_ms, worst, since = worst, 0.0, now

    def _state_dir(self) -> Path:
        return Path(self.conf.state_dir).expanduser()

    async def _watch_software(self, period: float = SOFTWARE_READ_S) -> None:
        """Keep :attr:`software` current: the health watcher confirms a trial after the start."""
        from appliance.fleet.update.running import running_version

        while True:
            await asyncio.sleep(period)
            self.software = await asyncio.to_thread(running_version, self._state_dir())

    async def _write_status_file(self) -> None:
        """Write the status document atomically, twice a second (tests and the demo read it)."""
        path = Path(self.conf.status.file)
        tmp = path.with_name(path.name + ".tmp")
        while True:
            data = json.dumps(self.status(), default=str)
            await asyncio.to_thread(_write, tmp, path, data)
            await asyncio.sleep(0.5)


def _write(tmp: Path, path: Path, data: str) -> None:
    tmp.write_text(data)
    os.replace(tmp, path)
