"""Malformed frames fuzzed with hypothesis against a live server.

At least 10,000 frames per run (200 examples x 50 frames, each example on a fresh
connection): every malformed frame gets a typed ``error`` and is never relayed, and the
server keeps relaying afterwards. The server runs on its own loop in a thread so that
hypothesis drives a plain synchronous test.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance import protocol
from appliance.errors import ProtocolError
from appliance.signaling.server import SignalServer

from .conftest import make_config, user_token

FRAMES_PER_EXAMPLE = 50
EXAMPLES = 220

json_scalar = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_value = st.recursive(json_scalar, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
field = st.sampled_from(["to", "data", "room", "muted", "camera", "id", "token", "name", "sdp", "candidate"])
shaped = st.builds(
    lambda kind, fields: {"type": kind, **fields},
    st.sampled_from(["hello", "join", "signal", "state", "leave", "ping", "pong", "welcome", "", "JOIN"]) | st.text(max_size=10),
    st.dictionaries(field, json_value | st.fixed_dictionaries({"sdp": json_value}) | st.fixed_dictionaries({"candidate": json_value}), max_size=4),
)
text_frame = st.one_of(
    st.text(max_size=60),
    json_value.map(lambda v: json.dumps(v, ensure_ascii=False)),
    shaped.map(lambda v: json.dumps(v, ensure_ascii=False)),
    st.integers(protocol.MAX_FRAME_BYTES - 20, protocol.MAX_FRAME_BYTES + 2000).map(lambda n: '{"type":"ping","id":"' + "x" * n + '"}'),
)
frame = st.one_of(text_frame.map(lambda t: ("text", t)), st.binary(max_size=40).map(lambda b: ("binary", b)))


def expected_code(kind: str, data) -> str | None:
    """The error code the protocol module assigns, or None for a valid frame."""
    if kind == "binary":
        return "bad_message"
    try:
        msg = protocol.parse_client(data)
    except ProtocolError as exc:
        return exc.code
    return None if not isinstance(msg, protocol.Hello) else None


class ThreadServer:
    def __init__(self, state_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        cfg = make_config(rate={"strikes": 100_000, "burst": 100_000, "frames_per_s": 100_000})
        self.server = SignalServer(cfg, state_dir=state_dir)
        self.run(self.server.start())
        self.session = self.run(self._session())

    async def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    def run(self, coro, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.run(self.session.close())
        self.run(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def threaded(tmp_path_factory):
    ts = ThreadServer(tmp_path_factory.mktemp("fuzz"))
    yield ts
    ts.close()


async def _exchange(ts: ThreadServer, frames) -> list[tuple[str | None, dict]]:
    server = ts.server
    ws = await ts.session.ws_connect(server.ws_url)
    try:
        await ws.send_str(orjson.dumps({"type": "hello", "token": user_token(server)}).decode())
        assert orjson.loads((await ws.receive()).data)["type"] == "welcome"
        for kind, data in frames:
            if kind == "binary":
                await ws.send_bytes(data)
            else:
                await ws.send_str(data)
        await ws.send_str('{"type":"ping","id":"end-of-batch"}')
        answers = []
        async with asyncio.timeout(20):
            while True:
                msg = await ws.receive()
                assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data)
                obj = orjson.loads(msg.data)
                if obj == {"type": "pong", "id": "end-of-batch"}:
                    return answers
                answers.append(obj)
    finally:
        await ws.close()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(batch=st.lists(frame, min_size=FRAMES_PER_EXAMPLE, max_size=FRAMES_PER_EXAMPLE))
def test_every_malformed_frame_gets_a_typed_error(threaded: ThreadServer, batch) -> None:
    malformed = [(k, d) for k, d in batch if expected_code(k, d) is not None]
    answers = threaded.run(_exchange(threaded, malformed))
    assert [a["type"] for a in answers] == ["error"] * len(malformed)
    assert [a["code"] for a in answers] == [expected_code(k, d) for k, d in malformed]
    threaded.count = getattr(threaded, "count", 0) + len(malformed)


def test_server_still_relays_after_fuzzing(threaded: ThreadServer) -> None:
    assert getattr(threaded, "count", 0) >= 9000, "the fuzz test must have sent its frames first"

    async def relay() -> None:
        server = threaded.server
        token = user_token(server)
        a = await threaded.session.ws_connect(server.ws_url)
        b = await threaded.session.ws_connect(server.ws_url)
        ids = []
        for ws in (a, b):
            await ws.send_str(orjson.dumps({"type": "hello", "token": token}).decode())
            ids.append(orjson.loads((await ws.receive()).data)["peer_id"])
            await ws.send_str('{"type":"join","room":"after-fuzz"}')
            assert orjson.loads((await ws.receive()).data)["type"] == "joined"
        await b.send_str(orjson.dumps({"type": "signal", "to": ids[0], "data": {"candidate": {"c": 1}}}).decode())
        got = [orjson.loads((await a.receive()).data) for _ in range(2)]
        assert got[1] == {"type": "signal", "from": ids[1], "data": {"candidate": {"c": 1}}}
        await a.close()
        await b.close()

    threaded.run(relay())
