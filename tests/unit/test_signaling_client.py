"""The unit's signaling client against the real signaling server on loopback.

Covers enrollment and the stored device secret, joining, reconnecting after the
server restarts, TLS fingerprint pinning, and mDNS discovery bound to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import stat

import pytest

from appliance.demo import server as demo_server
from appliance.errors import AuthError
from appliance.unit import config
from appliance.unit.credentials import SECRET_FILE
from appliance.unit.signaling import SignalClient, backoff_delays


class Recorder:
    """The daemon's side of the client (what it is told), recorded."""

    def __init__(self) -> None:
        self.welcomes: list[dict] = []
        self.joined: list[dict] = []
        self.messages: list[dict] = []
        self.downs = 0
        self.errors: list[BaseException] = []
        self.unreachable: list[BaseException] = []

    async def on_session(self, welcome):
        self.welcomes.append(welcome)

    async def on_joined(self, msg):
        self.joined.append(msg)

    async def on_server_message(self, msg):
        self.messages.append(msg)

    async def on_signaling_down(self):
        self.downs += 1

    async def on_signaling_error(self, exc):
        self.errors.append(exc)

    async def on_signaling_unreachable(self, exc):
        self.unreachable.append(exc)


def unit_conf(tmp_path, name, server, **server_extra):
    data = {
        "room": "client-test",
        "state_dir": str(tmp_path / name),
        "server": {
            "url": server,
            "name": name,
            "device_id": f"dev-{name}",
            "enrollment_token_file": str(tmp_path / "srv" / demo_server.TOKEN_FILE),
            "backoff_max_s": 0.5,
            **server_extra,
        },
    }
    return config.cfg.build(config.UnitConfig, data, "<test>")


async def until(check, timeout=15.0, what="condition"):
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


@pytest.fixture
async def server(tmp_path):
    srv = await demo_server.start(tmp_path / "srv")
    yield srv
    await srv.stop()


async def test_enrolls_once_joins_and_keeps_the_secret_private(tmp_path, server):
    rec = Recorder()
    client = SignalClient(unit_conf(tmp_path, "alpha", server.url), rec, name="alpha")
    await client.start()
    try:
        await until(lambda: rec.joined, what="joined")
    finally:
        await client.close()
    assert rec.joined[0]["room"] == "client-test"
    assert rec.welcomes[0]["limits"]["max_room_size"] >= 2
    secret = tmp_path / "alpha" / SECRET_FILE
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    # the enrollment token is gone: the stored secret alone must get the unit in again
    (tmp_path / "srv" / demo_server.TOKEN_FILE).unlink()
    rec2 = Recorder()
    again = SignalClient(unit_conf(tmp_path, "alpha", server.url), rec2, name="alpha")
    await again.start()
    try:
        await until(lambda: rec2.joined, what="joined with the stored secret")
    finally:
        await again.close()


async def test_two_clients_see_each_other_and_relay_signals(tmp_path, server):
    a_rec, b_rec = Recorder(), Recorder()
    a = SignalClient(unit_conf(tmp_path, "alpha", server.url), a_rec, name="alpha")
    b = SignalClient(unit_conf(tmp_path, "bravo", server.url), b_rec, name="bravo")
    await a.start()
    await until(lambda: a_rec.joined)
    await b.start()
    try:
        await until(lambda: b_rec.joined)
        assert [p["name"] for p in b_rec.joined[0]["peers"]] == ["alpha"]
        await until(lambda: any(m["type"] == "peer-joined" for m in a_rec.messages))
        await b.send_signal(a.peer_id, {"sdp": {"type": "offer", "sdp": "v=0"}})
        await until(lambda: any(m["type"] == "signal" for m in a_rec.messages))
        relayed = next(m for m in a_rec.messages if m["type"] == "signal")
        assert relayed["from"] == b.peer_id
    finally:
        await a.close()
        await b.close()


async def test_reconnects_and_rejoins_after_the_server_restarts(tmp_path):
    srv = await demo_server.start(tmp_path / "srv")
    port = srv.port
    rec = Recorder()
    client = SignalClient(unit_conf(tmp_path, "alpha", srv.url), rec, name="alpha")
    await client.start()
    try:
        await until(lambda: rec.joined)
        first_id = client.peer_id
        await srv.stop()
        await until(lambda: rec.downs == 1, what="the client to notice")
        assert not client.connected.is_set()
        srv = await demo_server.start(tmp_path / "srv", port)
        await until(lambda: len(rec.joined) == 2, timeout=20, what="rejoin")
        assert client.sessions == 2 and client.peer_id != first_id
    finally:
        await client.close()
        await srv.stop()


async def test_pinned_fingerprint_is_required_over_tls(tmp_path):
    srv = await demo_server.start(tmp_path / "srv", tls_on_loopback=True)
    try:
        assert srv.url.startswith("https://") and srv.fingerprint
        good = Recorder()
        client = SignalClient(unit_conf(tmp_path, "alpha", srv.url, fingerprint=srv.fingerprint), good, name="alpha")
        await client.start()
        try:
            await until(lambda: good.joined, what="joined over pinned TLS")
        finally:
            await client.close()
        wrong = "AA:" * 31 + "AA"
        bad = Recorder()
        client = SignalClient(unit_conf(tmp_path, "bravo", srv.url, fingerprint=wrong), bad, name="bravo")
        await client.start()
        try:
            await until(lambda: client.last_error is not None, what="a refused connection")
            await asyncio.sleep(0.5)
            assert not bad.welcomes
            assert "fingerprint" in client.last_error.lower() or "ssl" in client.last_error.lower()
            assert not (tmp_path / "bravo" / SECRET_FILE).exists()  # nothing was sent to the impostor
        finally:
            await client.close()
    finally:
        await srv.stop()


async def test_discovers_the_server_by_mdns_on_loopback(tmp_path):
    srv = await demo_server.start(tmp_path / "srv", mdns={"enabled": True, "interfaces": ["127.0.0.1"]})
    try:
        rec = Recorder()
        conf = unit_conf(tmp_path, "alpha", "discover", discover_interfaces=["127.0.0.1"], discover_timeout_s=5.0)
        client = SignalClient(conf, rec, name="alpha")
        await client.start()
        try:
            await until(lambda: rec.joined, timeout=20, what="joined a discovered server")
        finally:
            await client.close()
    finally:
        await srv.stop()


def test_backoff_is_capped_and_jittered():
    delays = list(itertools.islice(backoff_delays(4.0), 12))
    assert all(0 < d <= 4.0 for d in delays)
    assert delays[0] <= 0.25 and max(delays[-4:]) > 1.0
    assert len(set(delays)) > 6  # jitter: no lock-step retries across a fleet


async def test_refused_credentials_are_reported_and_retried(tmp_path, server):
    rec = Recorder()
    conf = unit_conf(tmp_path, "alpha", server.url, enrollment_token_file=str(tmp_path / "missing.token"))
    client = SignalClient(conf, rec, name="alpha")
    await client.start()
    try:
        await until(lambda: len(rec.errors) >= 2, what="two refused attempts")
        assert isinstance(rec.errors[0], AuthError) and "missing.token" in str(rec.errors[0])
        assert not rec.welcomes
    finally:
        await client.close()


async def test_discovery_without_a_server_times_out_with_a_clear_error():
    from appliance.unit.discovery import DiscoveryError, discover

    with pytest.raises(DiscoveryError, match="_wallmesh._tcp"):
        await discover(["127.0.0.1"], timeout=1.0)


async def test_a_link_coming_up_cuts_the_reconnect_backoff_short(tmp_path):
    import socket

    with socket.socket() as probe:  # a loopback port nothing listens on: every try is refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    def tries(rec: Recorder) -> int:
        return len(rec.unreachable) + len(rec.errors)

    rec = Recorder()
    client = SignalClient(unit_conf(tmp_path, "u1", f"http://127.0.0.1:{port}", backoff_max_s=600), rec, name="u1")
    await client.start()
    try:
        # five refused tries: the backoff has grown to 4-8 s before the sixth
        await until(lambda: tries(rec) >= 5, what="five refused tries")
        client.link_up("eth0")  # what the link watch calls when a link comes (back) up
        await until(lambda: tries(rec) >= 6, timeout=1.5, what="a try right after the link came up")
    finally:
        await client.close()
