"""The HTTP API: login, throttling, enrollment, device login, health, metrics, JSON errors."""

from __future__ import annotations

import asyncio

import aiohttp
import jwt as pyjwt
import orjson

from appliance.signaling.server import SignalServer

from .conftest import PASSWORD, Client


async def _post(http, server, path, body):
    async with http.post(server.url + path, json=body) as r:
        return r.status, await r.json()


async def test_login_issues_a_user_token(server: SignalServer, http) -> None:
    status, body = await _post(http, server, "/api/auth/login", {"username": "alice", "password": PASSWORD})
    assert status == 200 and body["expires_in"] == server.config.tokens.user_ttl_s
    claims = pyjwt.decode(body["token"], options={"verify_signature": False})
    assert claims["kind"] == "user" and claims["sub"] == "alice" and claims["rooms"] == ["*"]
    assert {"iss", "aud", "exp", "iat", "jti", "name"} <= set(claims)
    client = await Client.connect(http, server, body["token"])
    assert client.peer_id


async def test_unknown_user_and_wrong_password_look_the_same(server: SignalServer, http) -> None:
    wrong = await _post(http, server, "/api/auth/login", {"username": "alice", "password": "nope-nope"})
    unknown = await _post(http, server, "/api/auth/login", {"username": "mallory", "password": "nope-nope"})
    assert wrong == unknown == (401, {"error": {"code": "invalid_credentials", "message": "unknown user or wrong password"}})


async def test_unknown_user_and_wrong_password_answer_byte_for_byte_alike(server: SignalServer) -> None:
    """Status, headers (but Date) and body are the same for an unknown user and a wrong
    password, and again once either is throttled (from separate addresses, so the throttle
    counts them alike)."""
    limit = server.config.rate.login_failures

    async def answers(ip: str, username: str) -> list[tuple[int, list[tuple[str, str]], bytes]]:
        out = []
        async with from_address(ip) as http:
            for _ in range(limit + 1):
                async with http.post(server.url + "/api/auth/login", json={"username": username, "password": "nope-nope"}) as r:
                    headers = sorted((k, v) for k, v in r.headers.items() if k.lower() != "date")
                    out.append((r.status, headers, await r.read()))
        return out

    wrong, unknown = await answers("127.0.0.5", "alice"), await answers("127.0.0.6", "nobody-here")
    assert [a[0] for a in wrong] == [401] * limit + [429]
    assert wrong == unknown


def from_address(ip: str) -> aiohttp.ClientSession:
    """A client whose connections come from ``ip`` (any 127.x address is loopback on Linux)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(ip, 0), limit=0))


async def _login(http, server, username, password, path="/api/auth/login"):
    body = {"username": username, "password": password} if path == "/api/auth/login" else {"device_id": username, "device_secret": password}
    async with http.post(server.url + path, json=body) as r:
        return r.status, await r.json(), r.headers.get("Retry-After")


async def test_guessing_a_password_does_not_lock_its_owner_out(server: SignalServer) -> None:
    """The rule: an address with ``login_failures`` failures is refused (429, Retry-After)
    until they age out of the window; an account with that many failures is refused only to
    addresses that have failed too. A correct password from a clean address always works."""
    limit = server.config.rate.login_failures
    async with from_address("127.0.0.2") as attacker, from_address("127.0.0.3") as owner, \
            from_address("127.0.0.4") as other:
        for name in ("alice", "nobody"):
            for _ in range(limit if name == "alice" else 1):
                status, body, _ = await _login(attacker, server, name, "wrong-password")
                assert status == (401 if name == "alice" else 429)
        status, body, retry = await _login(attacker, server, "alice", PASSWORD)
        assert (status, body["error"]["code"]) == (429, "rate_limited")
        assert 0 < int(retry) <= server.config.rate.login_window_s
        # the owner, from her own address, gets in -- again and again
        for _ in range(3):
            status, body, _ = await _login(owner, server, "alice", PASSWORD)
            assert status == 200 and body["token"]
        # an address that failed once (at anything) may not join the guessing at alice
        assert (await _login(other, server, "bob", "wrong-password"))[0] == 401
        assert (await _login(other, server, "alice", "wrong-password"))[0] == 429
        await server.admin.add_user("bob", PASSWORD)
        assert (await _login(other, server, "bob", PASSWORD))[0] == 200


async def test_a_unit_is_not_locked_out_by_guesses_at_its_secret(server: SignalServer) -> None:
    token = await server.admin.enrollment_token(ttl_s=600)
    async with from_address("127.0.0.5") as unit, from_address("127.0.0.6") as attacker:
        async with unit.post(server.url + "/api/devices/enroll", json={"enrollment_token": token, "device_id": "pi-7"}) as r:
            secret = (await r.json())["device_secret"]
        for _ in range(server.config.rate.login_failures + 3):
            status, _, _ = await _login(attacker, server, "pi-7", "x" * 43, "/api/auth/device")
            assert status in (401, 429)
        assert (await _login(attacker, server, "pi-7", secret, "/api/auth/device"))[0] == 429
        assert (await _login(unit, server, "pi-7", secret, "/api/auth/device"))[0] == 200


async def test_bogus_logins_from_one_address_do_not_starve_real_ones(server: SignalServer) -> None:
    async with from_address("127.0.0.7") as flood, from_address("127.0.0.8") as real:
        bogus = [asyncio.ensure_future(_login(flood, server, f"nobody{i}", "wrong-password")) for i in range(80)]
        await asyncio.sleep(0.3)  # every bogus login has arrived
        status, _, _ = await _login(real, server, "alice", PASSWORD)
        assert status == 200
        results = await asyncio.gather(*bogus)
    statuses = [r[0] for r in results]
    assert statuses.count(429) >= 60 and all(s in (401, 429) for s in statuses)
    assert all(r[2] is not None for r in results if r[0] == 429)  # every refusal says when to retry


async def test_json_endpoints_take_only_json(server: SignalServer, http) -> None:
    """A page on another origin can post text/plain or a form without a preflight: refused."""
    body = orjson.dumps({"username": "alice", "password": PASSWORD})
    for path in ("/api/auth/login", "/api/auth/device", "/api/devices/enroll"):
        for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
            headers = {"Content-Type": content_type} if content_type else {}
            async with http.post(server.url + path, data=body, headers=headers) as r:
                assert r.status == 415, (path, content_type)
                assert (await r.json())["error"]["code"] == "unsupported_media_type"
    async with http.post(server.url + "/api/auth/login", data=body, headers={"Content-Type": "application/json; charset=utf-8"}) as r:
        assert r.status == 200


async def test_bad_bodies_get_json_errors(server: SignalServer, http) -> None:
    as_json = {"Content-Type": "application/json"}
    async with http.post(server.url + "/api/auth/login", data=b"{not json", headers=as_json) as r:
        assert r.status == 400 and (await r.json())["error"]["code"] == "bad_request"
    status, body = await _post(http, server, "/api/auth/login", {"username": 5, "password": []})
    assert status == 400 and body["error"]["code"] == "bad_request"
    async with http.get(server.url + "/api/nothing-here") as r:
        assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
    async with http.get(server.url + "/api/auth/login") as r:
        assert r.status == 405 and (await r.json())["error"]["code"] == "method_not_allowed"
    async with http.post(server.url + "/api/auth/login", data=b"x" * 200_000, headers=as_json) as r:
        assert r.status == 413 and (await r.json())["error"]["code"] == "too_large"


async def test_enroll_then_device_login(server: SignalServer, http) -> None:
    token = await server.admin.enrollment_token(ttl_s=600, rooms=("lobby",))
    claims = pyjwt.decode(token, options={"verify_signature": False})
    assert claims["url"] == server.url and claims["kind"] == "enroll" and "fp" in claims
    status, body = await _post(http, server, "/api/devices/enroll", {"enrollment_token": token, "device_id": "pi-0001", "name": "Room 1"})
    assert status == 201 and body["device_id"] == "pi-0001" and len(body["device_secret"]) >= 32
    secret = body["device_secret"]
    again = await _post(http, server, "/api/devices/enroll", {"enrollment_token": token, "device_id": "pi-0001", "name": "x"})
    assert again[0] == 409 and again[1]["error"]["code"] == "device_exists"
    status, login = await _post(http, server, "/api/auth/device", {"device_id": "pi-0001", "device_secret": secret})
    assert status == 200
    dclaims = pyjwt.decode(login["token"], options={"verify_signature": False})
    assert (dclaims["kind"], dclaims["sub"], dclaims["name"], dclaims["rooms"]) == ("device", "pi-0001", "Room 1", ["lobby"])
    wrong = await _post(http, server, "/api/auth/device", {"device_id": "pi-0001", "device_secret": "x" * 43})
    unknown = await _post(http, server, "/api/auth/device", {"device_id": "pi-9999", "device_secret": "x" * 43})
    assert wrong == unknown and wrong[0] == 401
    devices = await server.admin.list_devices()
    assert [d["device_id"] for d in devices] == ["pi-0001"] and "hash" not in devices[0]
    stored = await server.store.get_device("pi-0001")
    assert stored["hash"].startswith("$argon2id$v=19$m=19456,t=2,p=1$") and secret not in str(stored)
    # a device token joins only its rooms
    client = await Client.connect(http, server, login["token"])
    assert (await client.join("other"))["code"] == "forbidden"
    assert (await client.join("lobby"))["type"] == "joined"


async def test_enrollment_token_refusals(server: SignalServer, http) -> None:
    user_login = await _post(http, server, "/api/auth/login", {"username": "alice", "password": PASSWORD})
    status, body = await _post(http, server, "/api/devices/enroll", {"enrollment_token": user_login[1]["token"], "device_id": "pi-1"})
    assert status == 401  # a user token is not an enrollment token
    token = await server.admin.enrollment_token(ttl_s=600)
    assert (await _post(http, server, "/api/devices/enroll", {"enrollment_token": token, "device_id": "bad id!"}))[0] == 400
    jti = pyjwt.decode(token, options={"verify_signature": False})["jti"]
    await server.admin.revoke_enrollment(jti)
    status, body = await _post(http, server, "/api/devices/enroll", {"enrollment_token": token, "device_id": "pi-2"})
    assert status == 401 and body["error"]["code"] == "unauthorized"


async def test_health_and_metrics(server: SignalServer, http, connect) -> None:
    async with http.get(server.url + "/api/health") as r:
        assert r.status == 200 and await r.json() == {"status": "ok", "store": "ok"}
    a = await connect()
    b = await connect()
    await a.join("m")
    await b.join("m")
    for _ in range(3):
        await b.send({"type": "signal", "to": a.peer_id, "data": {"candidate": {"candidate": "c", "sdpMid": "0"}}})
    await b.send({"type": "bogus"})
    await b.recv("error")
    for _ in range(3):
        await a.recv("signal")
    text = await (await http.get(server.url + "/metrics")).text()
    assert "wallmesh_signal_connections 2.0" in text
    assert "wallmesh_signal_rooms 1.0" in text
    assert "wallmesh_signal_members 2.0" in text
    assert "wallmesh_signal_frames_relayed_total 3.0" in text
    assert 'wallmesh_signal_errors_total{code="bad_message"} 1.0' in text
    assert "wallmesh_signal_store_up 1.0" in text


async def test_security_headers_on_the_page_files_and_api(server: SignalServer, http) -> None:
    host = server.url.removeprefix("http://")
    for path in ("/", "/app.js", "/style.css", "/protocol.js", "/api/health", "/metrics", "/api/nothing", "/nothing.js"):
        async with http.get(server.url + path) as r:
            csp = r.headers.get("Content-Security-Policy", "")
            directives = dict([*d.strip().split(" ", 1), ""][:2] for d in csp.split(";") if d.strip())
            assert directives.get("default-src") == "'none'", (path, csp)
            assert directives.get("script-src") == "'self'" and directives.get("style-src") == "'self'", (path, csp)
            assert directives.get("frame-ancestors") == "'none'", (path, csp)
            assert directives.get("connect-src") == f"'self' ws://{host}", (path, csp)
            assert "unsafe" not in csp, (path, csp)
            assert r.headers.get("X-Content-Type-Options") == "nosniff", path
            assert r.headers.get("Referrer-Policy") == "no-referrer", path
    # every reply that may carry a token or a secret is never cached, refusals included
    token = await server.admin.enrollment_token(ttl_s=600)
    replies = [
        ("/api/auth/login", {"username": "alice", "password": PASSWORD}, 200),
        ("/api/auth/login", {"username": "alice", "password": "not it"}, 401),
        ("/api/devices/enroll", {"enrollment_token": token, "device_id": "pi-h"}, 201),
        ("/api/auth/device", {"device_id": "pi-h", "device_secret": "x" * 43}, 401),
    ]
    for path, body, status in replies:
        async with http.post(server.url + path, json=body) as r:
            assert r.status == status, path
            assert r.headers.get("Cache-Control") == "no-store", path
            assert r.headers.get("X-Content-Type-Options") == "nosniff", path


async def test_a_forged_host_header_cannot_add_to_the_policy(server: SignalServer, http) -> None:
    async with http.get(server.url + "/", headers={"Host": "evil; script-src *"}) as r:
        csp = r.headers["Content-Security-Policy"]
    assert "evil" not in csp and "script-src 'self';" in csp
