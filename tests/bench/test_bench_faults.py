"""``wallmesh bench faults`` and the behaviour it measures, against real servers and sockets.

No timing is judged here (the figures are the benchmark's); these tests check that a client
that never reads is evicted while the others in its room still get every frame, and that
the benchmark measures something real at smoke-test size.
"""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import orjson
import pytest

from appliance.bench import faults
from appliance.bench.signaling.wsclient import WsClient
from appliance.commands.bench import PARTS
from appliance.signaling.config import Mdns, SignalConfig
from appliance.signaling.server import SignalServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


class Member:
    """A raw WebSocket participant (the load generator's client) and what it received."""

    def __init__(self) -> None:
        self.frames: list[dict] = []
        self.client: WsClient | None = None
        self.closed = asyncio.Event()

    def on_message(self, payload: bytes) -> None:
        self.frames.append(orjson.loads(payload))

    def on_close(self, _code: int | None) -> None:
        self.closed.set()

    @classmethod
    async def join(cls, server: SignalServer, token: str, room: str, *, rcvbuf: int | None = None) -> Member:
        member = cls()
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", server.port))
        _, member.client = await loop.create_connection(lambda: WsClient(member.on_message, member.on_close), sock=sock)
        await member.client.upgrade("127.0.0.1", server.port, "/ws")
        member.client.send(orjson.dumps({"type": "hello", "token": token}))
        member.client.send(orjson.dumps({"type": "join", "room": room}))
        await member.wait("joined")
        return member

    async def wait(self, kind: str, timeout: float = 10.0) -> dict:
        async with asyncio.timeout(timeout):
            while True:
                for msg in self.frames:
                    if msg["type"] == kind:
                        return msg
                await asyncio.sleep(0.02)

    @property
    def peer_id(self) -> str:
        return next(m for m in self.frames if m["type"] == "joined")["peer_id"]


async def test_a_reader_that_never_reads_is_evicted_and_the_room_still_gets_its_frames(tmp_path: Path):
    config = SignalConfig(host="127.0.0.1", port=0, mdns=Mdns(enabled=False))
    async with SignalServer(config, state_dir=tmp_path / "state") as server:
        assert server.tokens is not None
        token = server.tokens.issue("user", "alice", "alice", ["*"], 600)
        room = "faults"
        sender = await Member.join(server, token, room)
        good = await Member.join(server, token, room)
        stuck = await Member.join(server, token, room, rcvbuf=4096)
        assert stuck.client is not None and stuck.client.transport is not None
        stuck.client.transport.pause_reading()  # from here on it never reads a byte
        stuck_id, good_id = stuck.peer_id, good.peer_id
        blob = "x" * 60_000
        big = orjson.dumps({"type": "signal", "to": stuck_id, "data": {"sdp": {"type": "offer", "sdp": blob}}})
        assert sender.client is not None
        sent = 0
        for i in range(400):
            sender.client.send(big)
            sender.client.send(orjson.dumps({"type": "signal", "to": good_id, "data": {"candidate": {"n": i}}}))
            sent += 1
            await asyncio.sleep(0.01)
            if any(m["type"] == "peer-left" and m["peer_id"] == stuck_id for m in sender.frames):
                break
        # the server let go of the reader (as a slow consumer) instead of queueing without end
        left = await sender.wait("peer-left", timeout=30)
        assert left["peer_id"] == stuck_id
        assert sent < 400, "the reader was never evicted"
        await good.wait("peer-left")
        assert len(server.services.connections) == 2
        # the reader's queue went with it: no frame of it is still held for that socket
        assert stuck_id not in server.services.hub.participants
        # ... and the well-behaved member got every frame meant for it, in order
        async with asyncio.timeout(10):
            while len([m for m in good.frames if m["type"] == "signal"]) < sent:
                await asyncio.sleep(0.05)
        got = [m["data"]["candidate"]["n"] for m in good.frames if m["type"] == "signal"]
        assert got == list(range(sent))
        for member in (sender, good, stuck):
            assert member.client is not None
            member.client.abort()


async def test_the_faults_bench_measures_a_real_server_at_smoke_size():
    assert PARTS["faults"] == "appliance.bench.faults:run"
    results = {r.name: r for r in await faults.measure(True, silent=12, seconds=3, login_samples=4)}
    assert set(results) == {"login_unknown_over_wrong_p50", "silent_clients_p99_delay_ms"}
    login, delay = results["login_unknown_over_wrong_p50"], results["silent_clients_p99_delay_ms"]
    assert login.value is not None and login.value > 0, login
    assert "4+4 tries" in login.detail and "throttled" not in login.detail
    assert delay.value is not None and delay.value > 0, delay
    assert " 0 lost" in delay.detail, delay
    # the hostile sockets really were there: the server closed the ones that never said hello
    closed = re.search(r"\((\d+) partial-head, (\d+) no-hello, (\d+) never-reads closed", delay.detail)
    assert closed and int(closed.group(2)) > 0, delay
