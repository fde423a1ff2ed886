"""Cross-origin use of ``/ws`` and the HTTP API is refused; the site's own origins and
clients without an ``Origin`` (units, tools) are not."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from appliance.signaling.origin import normalise
from appliance.signaling.server import SignalServer

from .conftest import PASSWORD, Client, make_config, user_token

pytestmark = [pytest.mark.timeout(60)]

FOREIGN = ["http://127.0.0.2:8000", "http://evil.example", "null", "https://127.0.0.1", "file://", "not an origin"]


def _own(server: SignalServer) -> str:
    return server.url


def _cors(headers: "aiohttp.typedefs.LooseHeaders") -> list[str]:
    return [k for k in headers if k.lower().startswith("access-control-")]  # type: ignore[union-attr]


async def _counter(http: aiohttp.ClientSession, server: SignalServer, name: str) -> float:
    """The sum of one counter's samples on /metrics."""
    async with http.get(server.url + "/metrics") as res:
        text = await res.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


@pytest.mark.parametrize("origin", FOREIGN)
async def test_foreign_origin_cannot_open_the_websocket(server, http, origin):
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await http.ws_connect(server.ws_url, origin=origin)
    assert info.value.status == 403
    # the refusal is a JSON error, read with a plain GET carrying the same upgrade headers
    headers = {"Origin": origin, "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    async with http.get(server.url + "/ws", headers=headers) as res:
        assert res.status == 403
        assert (await res.json())["error"]["code"] == "forbidden_origin"
        assert not _cors(res.headers)
    assert not server.services.connections


@pytest.mark.parametrize("origin", FOREIGN)
async def test_foreign_origin_cannot_post_to_the_api(server, http, origin):
    for path, body in [("/api/auth/login", {"username": "alice", "password": PASSWORD}),
                       ("/api/auth/device", {"device_id": "u1", "device_secret": "x"}),
                       ("/api/devices/enroll", {"enrollment_token": "x", "device_id": "u1"})]:
        # text/plain is what another page can send without a preflight; JSON too, for good measure
        for kw in ({"data": json.dumps(body)}, {"json": body}):
            async with http.post(server.url + path, headers={"Origin": origin}, **kw) as res:
                assert res.status == 403, path
                assert (await res.json())["error"]["code"] == "forbidden_origin"
                assert not _cors(res.headers)
    # nothing was tried: a refused login counts no failure and issues no token
    assert await _counter(http, server, "wallmesh_signal_logins_total") == 0
    assert await _counter(http, server, "wallmesh_signal_login_failures_total") == 0


async def test_own_origin_and_no_origin_are_admitted(server, http):
    for headers in ({}, {"Origin": _own(server)}, {"Origin": _own(server) + "/"}):
        async with http.post(server.url + "/api/auth/login", json={"username": "alice", "password": PASSWORD},
                             headers=headers) as res:
            assert res.status == 200, headers
            assert not _cors(res.headers)
    token = user_token(server)
    local = f"localhost:{server.port}"  # the page opened by another name of this host
    for kw in ({}, {"origin": _own(server)}, {"origin": "http://" + local, "headers": {"Host": local}}):
        client = await Client.connect(http, server, token, **kw)
        assert client.peer_id
        await client.close()


async def test_reads_are_not_origin_checked_and_never_carry_cors(server, http):
    # a foreign page can make a GET, but without CORS headers it cannot read the answer
    async with http.get(server.url + "/api/health", headers={"Origin": "http://evil.example"}) as res:
        assert res.status == 200
        assert not _cors(res.headers)
    async with http.options(server.url + "/api/auth/login", headers={
            "Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"}) as res:
        assert res.status >= 400  # no preflight is ever granted
        assert not _cors(res.headers)


async def test_configured_origin_is_admitted_and_others_are_not(tmp_path: Path, http):
    config = make_config(http={"allowed_origins": ["https://meet.example.org"]})
    async with SignalServer(config, state_dir=tmp_path / "state") as server:
        await server.admin.add_user("alice", PASSWORD)
        body = {"username": "alice", "password": PASSWORD}
        async with http.post(server.url + "/api/auth/login", json=body, headers={"Origin": "https://meet.example.org"}) as res:
            assert res.status == 200
        async with http.post(server.url + "/api/auth/login", json=body, headers={"Origin": "https://meet.example.org:8443"}) as res:
            assert res.status == 403
        client = await Client.connect(http, server, user_token(server), origin="https://meet.example.org")
        await client.close()


async def test_a_rebound_dns_name_is_not_same_origin(server, http):
    """A page on a name the attacker controls, re-pointed at this server: Host and Origin
    agree, but the name is not one the site answers to."""
    port = server.port
    headers = {"Host": f"rebind.example:{port}", "Origin": f"http://rebind.example:{port}"}
    async with http.post(server.url + "/api/auth/login", json={"username": "alice", "password": PASSWORD},
                         headers=headers) as res:
        assert res.status == 403
    # the same page on another name of this host is not this page's origin either
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await http.ws_connect(server.ws_url, origin=f"http://localhost:{port}")


def test_origins_are_compared_normalised():
    assert normalise("HTTP://Example.ORG:80") == "http://example.org"
    assert normalise("https://example.org:443/") == "https://example.org"
    assert normalise("http://[::1]:8080") == "http://[::1]:8080"
    for bad in ("null", "", "file:///etc", "http://", "http://a.b/path", "javascript:alert(1)", "http://a:99999"):
        assert normalise(bad) is None
