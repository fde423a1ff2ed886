"""What one unit costs with five remote peers at 640×480 and at 1280×720, and what it holds on one or two cores.

The question these figures answer is whether a Raspberry Pi holds a full room: a unit
that needs a third of a core here on its busiest thread needs more than a whole Pi core.
So the unit under test is a real ``wallmesh run`` process (the daemon's own code path),
and the figures are that process's CPU-seconds per second (every thread) and those of its
busiest thread, from ``/proc``. The unit runs with ``[media] workers = 3``, a Pi 4's default
(``WALLMESH_BENCH_WORKERS`` sets another count, 1 for a unit without workers): the CPU figures
are those of the unit and its media workers together, and the busiest thread is the busiest of
any of them (:doc:`docs/media-workers.md`):

* ``unit_cpu_640`` / ``unit_busiest_thread_cpu_640`` — the unit sends 640×480 to five
  peers and receives five 640×480 streams (and five Opus streams);
* ``unit_cpu_720`` / ``unit_busiest_thread_cpu_720`` — the same at 1280×720;
* ``unit_min_fps_1core_640`` / ``unit_min_fps_2core_640`` — the slowest of the unit's
  ten video streams (five in, five out) when its processes are confined to one core, and to
  two (``sched_setaffinity`` on every thread of the unit and its workers, as ``taskset -a`` does).

The five peers are cheaper than units, as in the sender-CPU bench: they all live in one
process (``python -m appliance.bench.unit_cpu --peers ...``) that shares one encoder and
one Opus stream between them (the media a unit would send them is the same either way),
connects only to the unit under test (not to each other) and discards the unit's video
unseen. They sign in through the real signaling server as five enrolled devices and
speak the same protocol and negotiation as units: the unit under test cannot tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from appliance.bench.report import Result, cpu_seconds, process_tree, thread_cpu_seconds, tree_cpu_seconds
from appliance.demo.site import Site, UnitProcess, wait_for

log = logging.getLogger(__name__)

PEERS = 5
SIZES = {"640": (640, 480, 1_000_000), "720": (1280, 720, 2_000_000)}
FPS = 30
STATUS_INTERVAL = 0.5  # how often the peers' process writes its status file
#: The unit's ``[media] workers``: a Pi 4's default (four cores but one), whatever this machine has.
WORKERS = int(os.environ.get("WALLMESH_BENCH_WORKERS", "3"))


# -- the peers' process -------------------------------------------------------------------


class _LoadPeer:
    """One signed-in participant that links only to the unit under test (a SignalHandler)."""

    def __init__(self, conf: Any, media: Any, target: str) -> None:
        from appliance.mesh import ice
        from appliance.unit.signaling import SignalClient

        self.conf = conf
        self.media = media
        self.target = target
        self.policy = ice.IcePolicy.from_config(conf.ice)
        self.local_id = ""
        self.peer: Any = None
        self.client = SignalClient(conf, self, name=conf.server.name)

    async def on_session(self, welcome: dict[str, Any]) -> None:
        self.local_id = str(welcome["peer_id"])
        servers = [s for s in welcome.get("ice_servers") or [] if isinstance(s, dict)]
        self.policy = self.policy.with_servers(servers)

    async def on_joined(self, msg: dict[str, Any]) -> None:
        from appliance.mesh.peer import Peer

        self.local_id = str(msg["peer_id"])
        for entry in msg.get("peers") or []:
            if isinstance(entry, dict) and entry.get("name") == self.target and self.peer is None:
                self.peer = Peer(
                    local_id=self.local_id, remote_id=str(entry["peer_id"]), name=self.target,
                    kind=str(entry.get("kind", "")), policy=self.policy, media=self.media,
                    send_signal=self.client.send_signal, discard_video=True,
                )
                await self.peer.offer()  # the joiner offers, as a unit does

    async def on_server_message(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "signal" and self.peer is not None and msg.get("from") == self.peer.remote_id:
            await self.peer.handle_signal(msg["data"])

    async def on_signaling_down(self) -> None:
        return None

    async def on_signaling_error(self, exc: BaseException) -> None:
        log.warning("%s: signaling error: %s", self.conf.server.name, exc)

    async def on_signaling_unreachable(self, exc: BaseException) -> None:
        log.warning("%s: signaling server unreachable: %s", self.conf.server.name, exc)

    def status(self) -> dict[str, Any]:
        if self.peer is None:
            return {"name": self.conf.server.name, "connection": "new", "frames": 0}
        return {"name": self.conf.server.name, "connection": self.peer.connection_state,
                "frames": self.peer.discarded_frames}


def _write_status(path: str, doc: dict[str, Any]) -> None:
    tmp = path + ".tmp"
    Path(tmp).write_text(json.dumps(doc))
    os.replace(tmp, path)


async def _peers_main(configs: list[str], target: str, status_file: str) -> None:
    from appliance.unit.config import load
    from appliance.unit.media import UnitMedia

    confs = [load(path) for path in configs]
    media = UnitMedia(confs[0], sender=0x5EED, name="load-peers")
    await media.start()
    peers = [_LoadPeer(conf, media, target) for conf in confs]
    for peer in peers:
        await peer.client.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        while not stop.is_set():
            _write_status(status_file, {"at": time.time(), "peers": [p.status() for p in peers]})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), STATUS_INTERVAL)
    finally:
        for peer in peers:
            if peer.peer is not None:
                await peer.peer.close()
            await peer.client.close()
        await media.close()


# -- the bench ----------------------------------------------------------------------------


def _peer_frames(unit: UnitProcess) -> dict[str, int]:
    """Frames the unit under test has received from each load peer."""
    return {p["name"]: p["frames"] for p in (unit.status() or {}).get("peers", [])}


def _load_frames(status_file: Path) -> dict[str, int]:
    """Frames each load peer has received from the unit under test."""
    try:
        doc = json.loads(status_file.read_text())
    except (OSError, ValueError):
        return {}
    return {p["name"]: p["frames"] for p in doc["peers"]}


def _confine(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` and of its media workers onto ``cpus`` (what ``taskset -a -p`` does)."""
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{member}/task"):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.sched_setaffinity(int(task), cpus)


def _threads(pid: int) -> dict[tuple[int, int], float]:
    """CPU seconds of every thread of the unit and its workers, by (process, thread)."""
    return {(member, tid): used for member in process_tree(pid) for tid, used in thread_cpu_seconds(member).items()}


async def _window(unit: UnitProcess, load_pid: int, load_status: Path, seconds: float) -> dict[str, Any]:
    """CPU of the unit (process, busiest thread) and the rate of its ten streams over ``seconds``."""
    rx0, tx0, peer0 = _peer_frames(unit), _load_frames(load_status), cpu_seconds(load_pid)
    cpu0, threads0, t0 = tree_cpu_seconds(unit.proc.pid), _threads(unit.proc.pid), time.monotonic()
    await asyncio.sleep(seconds)
    rx1, tx1, peer1 = _peer_frames(unit), _load_frames(load_status), cpu_seconds(load_pid)
    cpu1, threads1, dt = tree_cpu_seconds(unit.proc.pid), _threads(unit.proc.pid), time.monotonic() - t0
    busiest_tid, busiest = max(
        ((key, used - threads0.get(key, 0.0)) for key, used in threads1.items()), key=lambda kv: kv[1],
        default=((unit.proc.pid, 0), 0.0),
    )
    rx = {k: (v - rx0.get(k, 0)) / dt for k, v in rx1.items()}
    tx = {k: (v - tx0.get(k, 0)) / dt for k, v in tx1.items()}
    return {
        "cpu": (cpu1 - cpu0) / dt, "busiest": busiest / dt, "busiest_name": _thread_name(unit.proc.pid, *busiest_tid),
        "rx": rx, "tx": tx, "min_fps": min([*rx.values(), *tx.values()], default=0.0), "seconds": dt,
        "peer_cpu": (peer1 - peer0) / dt,
    }


def _thread_name(unit: int, pid: int, tid: int) -> str:
    where = "the unit" if pid == unit else f"media worker {pid}"
    if tid == pid:
        return f"{where}'s main thread (its event loop)"
    try:
        return f"{where}'s " + Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
    except OSError:
        return "?"


async def room(root: Path, size: tuple[int, int, int], seconds: float, confine: set[int] | None = None) -> dict[str, Any]:
    """One unit and five load peers at ``size`` (width, height, bit/s); the window's figures:
    ``cpu`` and ``busiest`` (CPU-s/s), ``rx``/``tx`` (fps per stream into and out of the unit),
    ``min_fps``, ``affinity`` (the unit's threads' cores when confined), ``peer_cpu``."""
    width, height, bitrate = size
    video = {"video": {"width": width, "height": height, "fps": FPS, "bitrate": bitrate}}
    async with Site(root, room=f"bench-unit-{width}", verbose=0, workers=WORKERS) as site:
        unit = await site.spawn(1, video)
        await wait_for(lambda: (unit.status() or {}).get("state") == "in_call", 60, "the unit under test to join")
        configs = [str(site.unit_config(2 + i, video)[1]) for i in range(PEERS)]
        load_status = root / "load-peers.json"
        with _log_file(root / "load-peers.log") as log_file:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "appliance.bench.unit_cpu", "--peers", unit.name, str(load_status), *configs,
                env=site.env(), stdout=asyncio.subprocess.DEVNULL, stderr=log_file,
            )
        try:
            await wait_for(
                lambda: len([f for f in _peer_frames(unit).values() if f > 0]) == PEERS
                and len([f for f in _load_frames(load_status).values() if f > 0]) == PEERS,
                90, f"the unit and {PEERS} peers to stream to each other at {width}x{height}",
            )
            if confine is not None:
                others = set(range(os.cpu_count() or 1)) - confine
                _confine(unit.proc.pid, confine)
                if others:
                    _confine(proc.pid, others)  # the peers stay off the unit's cores
            await asyncio.sleep(3.0)  # settle: keyframes, rate control, the confinement's first effects
            figures = await _window(unit, proc.pid, load_status, seconds)
            figures["affinity"] = _affinity(unit.proc.pid)
            return figures
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


def _log_file(path: Path) -> Any:
    return path.open("ab")


def _affinity(pid: int) -> set[int]:
    """The cores any thread of ``pid`` or of its workers may run on."""
    cores: set[int] = set()
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{member}/task"):
                with contextlib.suppress(ProcessLookupError):
                    cores |= os.sched_getaffinity(int(task))
    return cores


def _detail(size: str, f: dict[str, Any]) -> str:
    width, height, bitrate = SIZES[size]
    rx, tx = f["rx"].values(), f["tx"].values()
    return (
        f"1 unit ({WORKERS} media workers) + {PEERS} load peers at {width}x{height} {bitrate // 1000} kbit/s {FPS} fps, {f['seconds']:.0f} s: "
        f"{len(rx)} streams in {min(rx, default=0):.1f}-{max(rx, default=0):.1f} fps, "
        f"{len(tx)} out {min(tx, default=0):.1f}-{max(tx, default=0):.1f} fps; "
        f"busiest thread '{f['busiest_name']}'; load peers' process {f['peer_cpu']:.2f} CPU-s/s"
    )


async def measure(root: Path, quick: bool) -> list[Result]:
    seconds = 4.0 if quick else 10.0
    results: list[Result] = []
    for size, dims in SIZES.items():
        f = await room(root / f"unit-{size}", dims, seconds)
        detail = _detail(size, f)
        results.append(Result(f"unit_cpu_{size}", round(f["cpu"], 3), "CPU-s/s", detail))
        results.append(Result(f"unit_busiest_thread_cpu_{size}", round(f["busiest"], 3), "CPU-s/s", detail))
    cores = os.cpu_count() or 1
    for n in (1, 2):
        name = f"unit_min_fps_{n}core_640"
        if n > cores:
            results.append(Result(name, None, "fps", f"this machine has {cores} core(s)"))
            continue
        f = await room(root / f"unit-{n}core", SIZES["640"], seconds, confine=set(range(n)))
        results.append(Result(name, round(f["min_fps"], 1), "fps",
                              f"unit confined to {n} core(s){' (the peers on the other)' if n < cores else ''}; "
                              + _detail("640", f)))
    return results


def run(quick: bool) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="wallmesh-bench-unit-") as tmp:
        results = asyncio.run(measure(Path(tmp), quick))
    load = Path("/proc/loadavg").read_text().split()[0]
    for r in results:
        r.detail = f"{r.detail}; load avg {load}"
    return results


def main(argv: list[str]) -> None:
    if len(argv) >= 4 and argv[0] == "--peers":
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
        asyncio.run(_peers_main(argv[3:], argv[1], argv[2]))
        return
    if argv and argv[0] == "--bench":
        for r in run("--quick" in argv):
            print(f"{r.name:32} {r.value!s:>8} {r.unit:8} {r.detail}")
        return
    sys.exit("usage: python -m appliance.bench.unit_cpu --peers TARGET STATUS_FILE CONFIG... | --bench [--quick]")


if __name__ == "__main__":
    main(sys.argv[1:])

