"""The HTTP API: login, throttling, enrollment, device login, health, metrics, JSON errors."""

from __future__ import annotations

import jwt as pyjwt

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


async def test_login_throttled_per_account(server: SignalServer, http) -> None:
    limit = server.config.rate.login_failures
    for name in ("alice", "nobody"):
        for _ in range(limit):
            status, _ = await _post(http, server, "/api/auth/login", {"username": name, "password": "wrong-password"})
            assert status == 401
        status, body = await _post(http, server, "/api/auth/login", {"username": name, "password": PASSWORD})
        assert (status, body["error"]["code"]) == (429, "rate_limited")
    # another account is not affected
    await server.admin.add_user("bob", PASSWORD)
    status, _ = await _post(http, server, "/api/auth/login", {"username": "bob", "password": PASSWORD})
    assert status == 200
    metrics = await (await http.get(server.url + "/metrics")).text()
    assert 'wallmesh_signal_login_failures_total{reason="invalid_credentials"} %d.0' % (2 * limit) in metrics


async def test_bad_bodies_get_json_errors(server: SignalServer, http) -> None:
    async with http.post(server.url + "/api/auth/login", data=b"{not json") as r:
        assert r.status == 400 and (await r.json())["error"]["code"] == "bad_request"
    status, body = await _post(http, server, "/api/auth/login", {"username": 5, "password": []})
    assert status == 400 and body["error"]["code"] == "bad_request"
    async with http.get(server.url + "/api/nothing-here") as r:
        assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
    async with http.get(server.url + "/api/auth/login") as r:
        assert r.status == 405 and (await r.json())["error"]["code"] == "method_not_allowed"
    async with http.post(server.url + "/api/auth/login", data=b"x" * 200_000) as r:
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
