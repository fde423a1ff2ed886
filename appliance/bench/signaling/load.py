"""A load-generator process of ``wallmesh bench signaling``: many WebSocket clients, one loop.

The benchmark runs one or two of these per server (``python -m appliance.bench.signaling.load``)
next to the server under test, so the clients have their own CPU and the server's figures
are not the generator's. Each process owns whole rooms of four clients and is
driven by the benchmark over its stdin/stdout, one JSON object per line:

* ``{"op": "connect"}`` opens every client (bounded concurrency) → ``{"ev": "connect", ...}``
* ``{"op": "storm", "t0": ns, "timeout": s}`` at monotonic time ``t0`` every room does a
  full-mesh join at once → latencies, frames received/expected, last delivery time
* ``{"op": "leave"}`` every member leaves its room (wallmesh only)
* ``{"op": "steady", "t0": ns, "seconds": s, "rate": rooms_per_s}`` rooms join, exchange
  and leave one after another at a site's pace → latencies
* ``{"op": "drop", "count": n}`` cuts the first n clients off (to prove lost frames show)
* ``{"op": "close"}``

The first stdin line is the secret the clients authenticate with, so it never appears in a
process listing. Two dialects speak the same traffic: ``wallmesh`` (protocol v1 over
``/ws``: ``hello``, ``join``, ``signal``, ``leave``) and ``peerjs`` (the PeerJS server's
``/peerjs`` socket: ``OFFER``, ``ANSWER``, ``CANDIDATE``, ``HEARTBEAT``). In both, the member
that comes later in a room sends the offer and its candidates; the other answers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import resource
import secrets
import sys
import time
from collections import Counter
from typing import Any

import orjson

from appliance.bench.signaling import traffic
from appliance.bench.signaling.servers import run_queue_wait_s
from appliance.bench.signaling.wsclient import OP_PING, WsClient, frame

CONNECT_CONCURRENCY = 48
HEARTBEAT_S = 5.0  # keep-alive period of both real clients (unit: aiohttp heartbeat=5; PeerJS: pingInterval)
LAG_PROBE_S = 0.01  # period of the generator's own loop-lag probe
STEADY_ARRIVAL_S = 0.1  # steady state: members of a room arrive this far apart
STEADY_TRICKLE_S = 0.002  # steady state: gap between two trickled candidates


def log(msg: str, *args: object) -> None:
    print("signaling-load: " + (msg % args if args else msg), file=sys.stderr, flush=True)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Member:
    """One client: a WebSocket, its room, and the id the server knows it by."""

    __slots__ = ("first", "index", "peer_id", "room", "seed", "ws")

    def __init__(self, index: int, room: Room) -> None:
        self.index = index
        self.room = room
        self.ws: WsClient | None = None
        self.peer_id = ""
        self.seed = index
        self.first: asyncio.Future[dict[str, Any]] | None = None


class Room:
    """A room of members and the exchange in progress in it, if any."""

    __slots__ = ("busy", "done", "index", "left", "members", "name", "pending")

    def __init__(self, index: int) -> None:
        self.index = index
        self.name = f"bench-{index}"
        self.members: list[Member] = []
        self.pending = 0
        self.done = asyncio.Event()
        self.left = 0
        self.busy = False

    def complete(self) -> bool:
        return len(self.members) == traffic.ROOM_SIZE and all(m.ws is not None for m in self.members)


class Tally:
    """What the receivers saw in one phase."""

    def __init__(self) -> None:
        self.latencies_us: list[int] = []
        self.received_at_us: list[int] = []  # receive times, to tell one long stall from a slow spread
        self.loop_lag_us: list[int] = []  # how late this process's own loop woke up
        self.received = 0
        self.duplicates = 0
        self.misrouted = 0
        self.stray = 0
        self.errors: Counter[str] = Counter()
        self.last_ns = 0
        self.seen: set[int] = set()

    def record(self, member: Member, sender: Member | None, sent_ns: int, key: int) -> None:
        now = time.monotonic_ns()
        if sender is None or sender.room is not member.room:
            self.misrouted += 1
            return
        if key in self.seen:
            self.duplicates += 1
            return
        self.seen.add(key)
        room = member.room
        if room.pending <= 0:
            self.stray += 1
            return
        self.received += 1
        self.latencies_us.append((now - sent_ns) // 1000)
        self.received_at_us.append(now // 1000)
        self.last_ns = now
        room.pending -= 1
        if room.pending == 0:
            room.done.set()

    def report(self) -> dict[str, Any]:
        return {
            "latencies_us": self.latencies_us,
            "received_at_us": self.received_at_us,
            "loop_lag_us": self.loop_lag_us,
            "received": self.received,
            "duplicates": self.duplicates,
            "misrouted": self.misrouted,
            "stray": self.stray,
            "errors": dict(self.errors),
            "last_ns": self.last_ns,
        }


class Load:
    """The clients of this process and the phases the benchmark drives them through."""

    def __init__(self, dialect: str, url: str, first: int, count: int, worker: int, secret: str) -> None:
        self.dialect = dialect
        self.url = url.rstrip("/")
        self.secret = secret
        self.worker = worker
        self.rooms = [Room(first // traffic.ROOM_SIZE + i) for i in range(count // traffic.ROOM_SIZE)]
        self.members = [Member(room.index * traffic.ROOM_SIZE + j, room) for room in self.rooms for j in range(traffic.ROOM_SIZE)]
        for member in self.members:
            member.room.members.append(member)
        self.by_id: dict[str, Member] = {}
        self.tally = Tally()
        self.seq = 0
        self.background: list[asyncio.Task[None]] = []
        self.connect_errors: Counter[str] = Counter()
        self.closing = False
        self.wait0 = 0.0
        self.exchanges: set[asyncio.Task[None]] = set()
        self.trickle_s = 0.0
        self.offer_sdp = [traffic.sdp("offer", s) for s in range(8)]
        self.answer_sdp = [traffic.sdp("answer", s) for s in range(8)]
        self._candidates: dict[int, list[dict[str, object]]] = {}

    # --- connections ----------------------------------------------------------------

    async def connect(self) -> dict[str, Any]:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        started = time.monotonic()

        async def one(member: Member) -> None:
            async with gate:
                try:
                    await self._open(member)
                except (TimeoutError, ConnectionError, OSError, ValueError, KeyError) as exc:
                    self.connect_errors[type(exc).__name__] += 1
                    if member.ws is not None:
                        member.ws.abort()
                    member.ws = None

        await asyncio.gather(*(one(m) for m in self.members))
        elapsed = time.monotonic() - started
        self.background.append(asyncio.create_task(self._heartbeats()))
        self.background.append(asyncio.create_task(self._watch_loop()))
        connected = sum(1 for m in self.members if m.ws is not None)
        # The clients live for the whole run: keep the collector from walking them again
        # and again, so that the generator's own pauses do not show up as relay latency.
        gc.collect()
        gc.freeze()
        log("worker %d: %d/%d clients connected in %.1f s", self.worker, connected, len(self.members), elapsed)
        return {"connected": connected, "clients": len(self.members), "errors": dict(self.connect_errors), "seconds": elapsed}

    async def _open(self, member: Member) -> None:
        member.first = asyncio.get_running_loop().create_future()
        on_message = self._on_message_for(member)
        on_close = self._on_close_for(member)
        if self.dialect == "wallmesh":
            ws = await WsClient.connect(self.url + "/ws", on_message, on_close)
            member.ws = ws
            ws.send(orjson.dumps({"type": "hello", "token": self.secret, "name": f"bench-{member.index}"}))
            obj = await asyncio.wait_for(member.first, 30)
            if obj.get("type") != "welcome":
                raise ValueError(f"no welcome: {obj.get('type')!r}")
            member.peer_id = obj["peer_id"]
        else:
            member.peer_id = f"b{member.index}"
            query = f"key=peerjs&id={member.peer_id}&token={secrets.token_hex(8)}"
            ws = await WsClient.connect(f"{self.url}/peerjs?{query}", on_message, on_close)
            member.ws = ws
            obj = await asyncio.wait_for(member.first, 30)
            if obj.get("type") != "OPEN":
                raise ValueError(f"no OPEN: {obj.get('type')!r}")
        self.by_id[member.peer_id] = member

    def _on_message_for(self, member: Member) -> Any:
        handle = self._on_wallmesh if self.dialect == "wallmesh" else self._on_peerjs

        def on_message(payload: bytes) -> None:
            try:
                obj = orjson.loads(payload)
                first = member.first
                if first is not None and not first.done():
                    first.set_result(obj)
                    return
                handle(member, obj)
            except (ValueError, KeyError, TypeError, AttributeError):
                # A frame the benchmark did not send in a shape it did not expect: count it,
                # keep the connection (the server under test is what is being judged).
                self.tally.errors["unexpected_frame"] += 1

        return on_message

    def _on_close_for(self, member: Member) -> Any:
        def on_close(code: int | None) -> None:
            first = member.first
            if first is not None and not first.done():
                first.set_exception(ConnectionError(f"closed before the first message ({code})"))
            if not self.closing:
                self.tally.errors[f"closed:{code}"] += 1

        return on_close

    async def _heartbeats(self) -> None:
        """Keep-alives as the real clients send them, spread evenly over the period: a
        wall unit's signaling client pings every 5 s (a WebSocket ping), the PeerJS
        browser client sends a HEARTBEAT message every 5 s."""
        beat = frame(b"", OP_PING) if self.dialect == "wallmesh" else frame(orjson.dumps({"type": "HEARTBEAT"}))
        live = [m for m in self.members if m.ws is not None]
        pause = HEARTBEAT_S / max(1, len(live))
        while True:
            for member in live:
                if member.ws is not None and not member.ws.closed:
                    member.ws.send_raw(beat)
                await asyncio.sleep(pause)

    # --- sending --------------------------------------------------------------------

    def _key(self) -> int:
        self.seq += 1
        return self.worker * 1_000_000_000 + self.seq

    def _send(self, member: Member, obj: dict[str, Any]) -> None:
        ws = member.ws
        if ws is None or ws.closed:
            self.tally.errors["send_on_closed"] += 1
            return
        ws.send(orjson.dumps(obj))

    def _frames(self, member: Member, to: str, kind: str) -> list[dict[str, Any]]:
        """One SDP (``offer`` or ``answer``) for ``to`` and the candidates that follow it,
        without their send times (stamped when each is sent)."""
        pool = self.offer_sdp if kind == "offer" else self.answer_sdp
        text = pool[member.seed % len(pool)]
        cands = self._candidates.get(member.seed)
        if cands is None:  # built once per member: the generator's CPU belongs to the relay
            cands = self._candidates[member.seed] = [traffic.candidate(i, member.seed) for i in range(traffic.CANDIDATES)]
        if self.dialect == "wallmesh":
            out = [{"type": "signal", "to": to, "data": {"sdp": {"type": kind, "sdp": text}}}]
            out += [{"type": "signal", "to": to, "data": {"candidate": c}} for c in cands]
        else:
            conn = f"mc_{min(member.peer_id, to)}_{max(member.peer_id, to)}"
            payload = {"sdp": {"type": kind, "sdp": text}, "type": "media", "connectionId": conn}
            out = [{"type": "OFFER" if kind == "offer" else "ANSWER", "dst": to, "payload": payload}]
            out += [{"type": "CANDIDATE", "dst": to, "payload": {"candidate": c, "type": "media", "connectionId": conn}} for c in cands]
        return out

    def _stamp(self, obj: dict[str, Any]) -> bytes:
        inner = obj["data"] if self.dialect == "wallmesh" else obj["payload"]
        inner["t"] = time.monotonic_ns()
        inner["k"] = self._key()
        return orjson.dumps(obj)

    def _exchange(self, member: Member, to: str, kind: str) -> None:
        """Negotiate with ``to``: in the storm, the SDP and all candidates in one write (as
        fast as a unit that has gathered them can send); in the steady state, trickled at
        an ICE agent's pace by a task of its own."""
        ws = member.ws
        if ws is None or ws.closed:
            self.tally.errors["send_on_closed"] += 1
            return
        frames = self._frames(member, to, kind)
        if not self.trickle_s:
            ws.send_many([self._stamp(f) for f in frames])
            return
        task = asyncio.create_task(self._trickle(member, frames))
        self.exchanges.add(task)
        task.add_done_callback(self.exchanges.discard)

    async def _trickle(self, member: Member, frames: list[dict[str, Any]]) -> None:
        for i, obj in enumerate(frames):
            if i:
                await asyncio.sleep(self.trickle_s)
            if member.ws is None or member.ws.closed:
                self.tally.errors["send_on_closed"] += 1
                return
            member.ws.send(self._stamp(obj))

    # --- receiving ------------------------------------------------------------------

    def _on_wallmesh(self, member: Member, obj: dict[str, Any]) -> None:
        kind = obj.get("type")
        if kind == "signal":
            data = obj["data"]
            sender = obj.get("from", "")
            self.tally.record(member, self.by_id.get(sender), data["t"], data["k"])
            sdp = data.get("sdp")
            if sdp is not None and sdp.get("type") == "offer":
                self._exchange(member, sender, "answer")
        elif kind == "joined":
            for peer in obj.get("peers", ()):
                self._exchange(member, peer["peer_id"], "offer")
        elif kind == "left":
            member.room.left += 1
        elif kind == "error":
            self.tally.errors[str(obj.get("code"))] += 1

    def _on_peerjs(self, member: Member, obj: dict[str, Any]) -> None:
        kind = obj.get("type")
        if kind in ("OFFER", "ANSWER", "CANDIDATE"):
            payload = obj["payload"]
            sender = obj.get("src", "")
            self.tally.record(member, self.by_id.get(sender), payload["t"], payload["k"])
            if kind == "OFFER":
                self._exchange(member, sender, "answer")
        elif kind in ("ERROR", "EXPIRE", "ID-TAKEN", "LEAVE"):
            self.tally.errors[kind] += 1

    # --- phases ---------------------------------------------------------------------

    async def _begin(self, room: Room, stagger_s: float = 0.0) -> None:
        """Start one full-mesh join of ``room``: its members arrive ``stagger_s`` apart
        (all at once in the storm), each later one offering to those already there."""
        room.pending = traffic.frames_per_room()
        room.done.clear()
        room.busy = True
        for later, member in enumerate(room.members):
            if later and stagger_s:
                await asyncio.sleep(stagger_s)
            if self.dialect == "wallmesh":
                self._send(member, {"type": "join", "room": room.name})
            else:
                for earlier in room.members[:later]:
                    self._exchange(member, earlier.peer_id, "offer")

    async def _end(self, room: Room) -> None:
        room.busy = False
        if self.dialect == "wallmesh":
            for member in room.members:
                self._send(member, {"type": "leave"})

    def _phase(self) -> tuple[Tally, float, float]:
        self.tally = Tally()
        self.wait0 = run_queue_wait_s()
        return self.tally, cpu_seconds(), time.monotonic()

    async def _watch_loop(self) -> None:
        """Record how late this process's event loop runs a timer: when the generator itself
        stalls (CPU starved, collector), its latency figures are not the server's."""
        period = LAG_PROBE_S
        while True:
            before = time.monotonic_ns()
            await asyncio.sleep(period)
            self.tally.loop_lag_us.append(max(0, (time.monotonic_ns() - before) // 1000 - int(period * 1e6)))

    async def storm(self, t0: int, timeout: float) -> dict[str, Any]:
        tally, cpu0, _ = self._phase()
        self.trickle_s = 0.0
        rooms = [r for r in self.rooms if r.complete()]
        await _sleep_until(t0)
        for room in rooms:
            await self._begin(room)
        sent_ns = time.monotonic_ns()
        deadline = t0 / 1e9 + timeout
        await _wait_rooms(rooms, deadline)
        out = tally.report()
        out.update(expected=len(rooms) * traffic.frames_per_room(), rooms=len(rooms), cpu_s=cpu_seconds() - cpu0, sent_ns=sent_ns,
                   cpu_wait_s=run_queue_wait_s() - self.wait0)
        log("worker %d: storm %d/%d frames", self.worker, tally.received, out["expected"])
        for room in rooms:
            room.pending = 0
            room.busy = False
        return out

    def drop(self, count: int) -> dict[str, Any]:
        """Cut the first ``count`` clients off, as units losing power would: the frames
        sent to them cannot arrive, which the next phase must report as lost."""
        dropped = 0
        for member in self.members[:count]:
            if member.ws is not None:
                member.ws.abort()
                dropped += 1
        return {"dropped": dropped}

    async def leave(self) -> dict[str, Any]:
        rooms = [r for r in self.rooms if r.complete()]
        for room in rooms:
            room.left = 0
            await self._end(room)
        deadline = time.monotonic() + 15
        live = {r.index: sum(1 for m in r.members if m.ws is not None and not m.ws.closed) for r in rooms}
        while time.monotonic() < deadline and any(r.left < live[r.index] for r in rooms):  # noqa: ASYNC110 - counters of many rooms, one deadline
            await asyncio.sleep(0.05)
        return {"left": sum(r.left for r in rooms)}

    async def steady(self, t0: int, seconds: float, rate: float) -> dict[str, Any]:
        tally, cpu0, _ = self._phase()
        self.trickle_s = STEADY_TRICKLE_S
        rooms = [r for r in self.rooms if r.complete()]
        cycles: list[asyncio.Task[None]] = []
        await _sleep_until(t0)
        start = time.monotonic()
        started = 0
        if rooms and rate > 0:
            period = 1.0 / rate
            index = 0
            while time.monotonic() - start < seconds:
                room = rooms[index % len(rooms)]
                index += 1
                if not room.busy:
                    cycles.append(asyncio.create_task(self._cycle(room)))
                    started += 1
                await asyncio.sleep(max(0.0, start + index * period - time.monotonic()))
        if cycles:
            await asyncio.wait(cycles, timeout=20)
        out = tally.report()
        out.update(expected=started * traffic.frames_per_room(), rooms=started, cpu_s=cpu_seconds() - cpu0, seconds=time.monotonic() - start,
                   cpu_wait_s=run_queue_wait_s() - self.wait0)
        log("worker %d: steady %d/%d frames in %d room joins", self.worker, tally.received, out["expected"], started)
        return out

    async def _cycle(self, room: Room) -> None:
        await self._begin(room, STEADY_ARRIVAL_S)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(room.done.wait(), timeout=10)
        room.pending = 0
        await asyncio.sleep(0.5)
        await self._end(room)

    async def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        for task in [*self.background, *self.exchanges]:
            task.cancel()
        for member in self.members:
            if member.ws is not None:
                member.ws.close()
        await asyncio.sleep(0.2)  # let the close frames go out


async def _sleep_until(t_ns: int) -> None:
    delay = (t_ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        await asyncio.sleep(delay)


async def _wait_rooms(rooms: list[Room], deadline: float) -> None:
    for room in rooms:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        try:
            await asyncio.wait_for(room.done.wait(), timeout=remaining)
        except TimeoutError:
            return


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    secret = (await reader.readline()).decode().strip()
    load = Load(args.dialect, args.url, args.first, args.count, args.worker, secret)
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            cmd = orjson.loads(line)
            op = cmd.pop("op")
            if op == "connect":
                out = await load.connect()
            elif op == "storm":
                out = await load.storm(cmd["t0"], cmd["timeout"])
            elif op == "leave":
                out = await load.leave()
            elif op == "drop":
                out = load.drop(cmd["count"])
            elif op == "steady":
                out = await load.steady(cmd["t0"], cmd["seconds"], cmd["rate"])
            elif op == "close":
                await load.close()
                _emit({"ev": "close"})
                break
            else:
                out = {"error": f"unknown op {op!r}"}
            _emit({"ev": op, **out})
    finally:
        await load.close()


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj) + b"\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dialect", choices=("wallmesh", "peerjs"), required=True)
    parser.add_argument("--url", required=True, help="http://127.0.0.1:PORT of the server under test")
    parser.add_argument("--first", type=int, required=True, help="index of this process's first client (a multiple of the room size)")
    parser.add_argument("--count", type=int, required=True, help="clients in this process (a multiple of the room size)")
    parser.add_argument("--worker", type=int, default=0)
    args = parser.parse_args(argv)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
