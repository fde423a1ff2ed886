"""The event loop stays responsive while passwords are hashed, and logs never carry secrets."""

from __future__ import annotations

import asyncio
import logging
import time



from appliance.signaling.server import SignalServer

from .conftest import PASSWORD, Client, make_config, user_token


async def test_hashing_never_blocks_the_loop(tmp_path, http, caplog) -> None:
    # A deliberately slow hash (~0.5-1 s each): on the loop it would stall every pong below.
    cfg = make_config(hashing={"memory_kib": 65536, "time_cost": 4, "workers": 2})
    caplog.set_level(logging.DEBUG)
    async with SignalServer(cfg, state_dir=tmp_path) as server:
        started = time.perf_counter()
        await server.admin.add_user("gina", PASSWORD)
        one_hash = time.perf_counter() - started
        client = await Client.connect(http, server, user_token(server))

        async def login(i: int) -> int:
            body = {"username": "gina", "password": PASSWORD if i % 2 else "wrong password"}
            async with http.post(server.url + "/api/auth/login", json=body) as r:
                return r.status

        logins = asyncio.gather(*(login(i) for i in range(4)))
        worst = 0.0
        while not logins.done():  # any time the loop is held shows up as oversleeping
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            worst = max(worst, time.perf_counter() - before - 0.01)
        await client.send({"type": "ping", "id": "after"})
        assert (await client.recv("pong"))["id"] == "after"
        statuses = await logins
        assert sorted(statuses) == [200, 200, 401, 401]
        # four hashes take at least 2 x one_hash on two workers; no pong waited for even one
        assert worst < max(0.3, one_hash * 0.6), (worst, one_hash)
        text = caplog.text
        token = (await (await http.post(server.url + "/api/auth/login", json={"username": "gina", "password": PASSWORD})).json())["token"]
    assert PASSWORD not in text and "wrong password" not in text
    assert token not in caplog.text and token.split(".")[2] not in caplog.text


async def test_no_secret_in_logs_through_a_session(server: SignalServer, http, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    enroll = await server.admin.enrollment_token(ttl_s=600)
    async with http.post(server.url + "/api/devices/enroll", json={"enrollment_token": enroll, "device_id": "pi-log"}) as r:
        secret = (await r.json())["device_secret"]
    async with http.post(server.url + "/api/auth/device", json={"device_id": "pi-log", "device_secret": secret}) as r:
        device_token = (await r.json())["token"]
    a = await Client.connect(http, server, device_token)
    b = await Client.connect(http, server, user_token(server))
    await a.join("logs")
    await b.join("logs")
    sdp = {"sdp": {"type": "offer", "sdp": "v=0\r\no=- SECRET-SDP-MARKER 2 IN IP4 127.0.0.1\r\n"}}
    await b.send({"type": "signal", "to": a.peer_id, "data": sdp})
    assert (await a.recv("signal"))["data"] == sdp
    await server.admin.revoke_device("pi-log")
    await a.expect_close()
    for secret_text in (enroll, secret, device_token, "SECRET-SDP-MARKER", PASSWORD):
        assert secret_text not in caplog.text
    assert "pi-log" in caplog.text  # the identity is logged, its credentials are not

