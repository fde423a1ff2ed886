"""The loopback status endpoint, served for real on an ephemeral port."""

from __future__ import annotations

import types
import typing

import aiohttp
import pytest

from appliance.unit.status import StatusServer
from appliance.wall.controller import UnitController
from appliance.wall.local import LocalController
from appliance.wall.machine import StateMachine
from appliance.wall.status import DaemonStatus, PeerStatus, UnitStatus


@pytest.fixture
async def unit():
    controller = LocalController(StateMachine(name="Wall 1", room="boardroom"))
    async with StatusServer(controller, "127.0.0.1", 0) as server, aiohttp.ClientSession(server.url) as http:
        yield controller, server, http


async def test_local_controller_honours_the_protocol():
    assert isinstance(LocalController(), UnitController)


async def test_status_document(unit):
    controller, server, http = unit
    assert server.port > 0
    async with http.get("/status") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["state"] == "idle" and body["room"] == "boardroom"
    assert body["muted"] is False and body["camera"] is True and body["peers"] == []


async def test_actions_do_what_the_buttons_do(unit):
    controller, _, http = unit

    async def act(name):
        async with http.post(f"/actions/{name}") as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    assert (await act("join"))["state"] == "in_call"
    assert (await act("mute"))["muted"] is True
    async with http.get("/status") as resp:
        assert (await resp.json())["muted"] is True
    assert (await act("unmute"))["muted"] is False
    assert (await act("camera-off"))["camera"] is False
    assert (await act("camera-on"))["camera"] is True
    assert (await act("volume-up"))["volume"] == 75
    assert (await act("volume-down"))["volume"] == 70
    await act("restart")
    assert controller.restarts == 1
    body = await act("hangup")
    assert body["state"] == "idle"


async def test_unknown_action_and_wrong_method(unit):
    _, _, http = unit
    async with http.post("/actions/self-destruct") as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "unknown_action"
    async with http.get("/actions/mute") as resp:
        assert resp.status == 405
    async with http.get("/status") as resp:
        assert (await resp.json())["muted"] is False


async def test_refused_action_is_a_409_not_a_crash():
    class Broken(LocalController):
        async def join(self):
            self.machine.fail("Camera not found — call IT")
            from appliance.errors import DeviceError

            raise DeviceError("camera", "video.device", "not found")

    async with StatusServer(Broken(), "127.0.0.1", 0) as server, aiohttp.ClientSession(server.url) as http:
        async with http.post("/actions/join") as resp:
            assert resp.status == 409
            assert "camera" in (await resp.json())["error"]["message"]
        async with http.get("/status") as resp:
            body = await resp.json()
            assert body["state"] == "error" and "call IT" in body["message"]


async def test_close_is_idempotent():
    server = StatusServer(LocalController())
    await server.start()
    await server.close()
    await server.close()
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectionError):  # the port is really released
            await http.get(f"{server.url}/status")


async def test_volume_change_shows_a_notice_for_a_moment():
    controller = LocalController()
    controller.notice_seconds = 0.2
    await controller.change_volume(+5)
    assert controller.wall_model().notice == "Volume 75%"
    await controller.change_volume(+50)
    assert controller.status()["volume"] == 100
    import asyncio

    await asyncio.sleep(0.25)
    assert controller.wall_model().notice == ""


async def test_ipv6_loopback():
    async with StatusServer(LocalController(), "::1", 0) as server, aiohttp.ClientSession(server.url) as http:
        assert server.url.startswith("http://[::1]:")
        async with http.get("/status") as resp:
            assert resp.status == 200


async def test_a_port_in_use_raises_and_leaves_nothing_open():
    async with StatusServer(LocalController()) as first:
        second = StatusServer(LocalController(), "127.0.0.1", first.port)
        with pytest.raises(OSError):
            await second.start()
        assert second._runner is None  # the half-started application was cleaned up
        second.port = 0
        await second.start()
        assert second.port != first.port
        await second.close()


async def test_a_failing_subscriber_neither_fails_the_command_nor_starves_the_others():
    controller = LocalController()
    seen = []

    def broken(status):
        raise OSError("LED pin gone")

    controller.subscribe(broken)
    controller.subscribe(seen.append)
    await controller.set_muted(True)
    await controller.change_volume(-10)
    assert controller.status()["muted"] is True and controller.status()["volume"] == 60
    assert [s["muted"] for s in seen] == [True, True] and seen[-1]["volume"] == 60


def conforms(doc, kind, where="status"):
    """Problems of ``doc`` against the TypedDict ``kind``: missing or unknown keys, wrong
    value types, nested documents checked the same way. An empty list means it conforms."""
    hints = typing.get_type_hints(kind)
    problems = [f"{where}: missing {key!r}" for key in kind.__required_keys__ - doc.keys()]
    problems += [f"{where}: undeclared {key!r}" for key in doc.keys() - hints.keys()]
    for key in doc.keys() & hints.keys():
        problems += _value_conforms(doc[key], hints[key], f"{where}.{key}")
    return problems


def _value_conforms(value, hint, where):
    if typing.get_origin(hint) is typing.NotRequired:
        hint = typing.get_args(hint)[0]
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for option in options:
        if option is type(None) and value is None:
            return []
        if typing.is_typeddict(option) and isinstance(value, dict):
            return conforms(value, option, where)
        if typing.get_origin(option) is list and isinstance(value, list):
            (item,) = typing.get_args(option)
            return [p for i, v in enumerate(value) for p in _value_conforms(v, item, f"{where}[{i}]")]
        if option is float and isinstance(value, int | float) and not isinstance(value, bool):
            return []
        if option in (int, str) and isinstance(value, option) and not isinstance(value, bool):
            return []
        if option is bool and isinstance(value, bool):
            return []
    return [f"{where}: {value!r} is not {hint}"]


def test_the_conformance_check_can_fail():
    good = LocalController().status()
    assert conforms(good, UnitStatus) == []
    assert conforms({**good, "muted": "no"}, UnitStatus) == ["status.muted: 'no' is not <class 'bool'>"]
    missing = dict(good)
    del missing["volume"]
    assert conforms({**missing, "colour": 1}, UnitStatus) == ["status: missing 'volume'", "status: undeclared 'colour'"]


@pytest.mark.parametrize("workers", [1, 2], ids=["workers1", "workers2"])
async def test_a_daemons_status_document_is_exactly_its_declared_type(tmp_path, workers):
    """Every key of ``GET /status`` from a real daemon with open devices and a peer is declared
    in :mod:`appliance.wall.status`, with the declared type, and every declared key is there."""
    from appliance.mesh.peer import Peer
    from appliance.unit import config
    from appliance.unit.app import UnitDaemon

    conf = config.cfg.build(
        config.UnitConfig,
        {
            "room": "status-test",
            "state_dir": str(tmp_path / "state"),
            "headless": True,
            "server": {"url": "http://127.0.0.1:9", "name": "unit-s", "device_id": "dev-s"},
            "video": {"type": "pattern", "width": 160, "height": 120, "fps": 15},
            "audio": {"source": "synthetic", "sink": "null"},
            "ice": {"loopback": True},
            "status": {"port": 0, "samples": True},
            "media": {"workers": workers},
        },
        "<test>",
    )
    daemon = UnitDaemon(conf)
    try:
        await daemon.media.start()
        async with StatusServer(daemon, "127.0.0.1", 0) as server, aiohttp.ClientSession(server.url) as http:
            daemon.status_server = server
            make: typing.Any = Peer
            if daemon.workers is not None:  # a link in a media worker: the same document
                await daemon.workers.start()
                make = daemon.workers.peer
            peer = make(
                local_id="p1", remote_id="p2", name="Lisbon", kind="device", policy=daemon.mesh.policy,
                media=daemon.media, send_signal=daemon.signal.send_signal, on_change=lambda p: None,
                stamp_reader=None, on_frame=None,
            )
            daemon.mesh.peers["p2"] = peer
            async with http.get("/status") as resp:
                body = await resp.json()
            assert conforms(body, DaemonStatus) == []
            assert body["media"]["encoder"] is not None and body["peers"][0]["name"] == "Lisbon"
            assert ("workers" in body["media"]) == (workers > 1)
            assert "latency_samples_ms" in body["peers"][0]  # [status] samples = true
            # without samples the optional key is absent, and the rest still conforms
            assert conforms(peer.status(samples=False), PeerStatus, "peer") == []
            assert "latency_samples_ms" not in peer.status(samples=False)
            await peer.close()
            del daemon.mesh.peers["p2"]
    finally:
        await daemon.close()


# A web page in the unit's browser can reach loopback too: by a plain form post to
# 127.0.0.1, or through a name of its own that it rebinds to 127.0.0.1. Neither may drive
# the unit; the unit's own tools (curl, urllib, aiohttp, the fleet tools) still do.


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1:1", "localhost.evil.example:{port}", "[::1", ""])
async def test_a_host_that_is_not_the_endpoint_is_refused(unit, host):
    controller, server, http = unit
    headers = {"Host": host.format(port=server.port)}
    async with http.get("/status", headers=headers) as resp:
        assert resp.status == 403
        assert (await resp.json())["error"]["code"] == "forbidden"
    async with http.post("/actions/join", headers=headers) as resp:
        assert resp.status == 403
    assert controller.status()["state"] == "idle", "a refused action did nothing"


@pytest.mark.parametrize("headers", [{"Origin": "http://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}])
async def test_requests_from_web_pages_are_refused(unit, headers):
    controller, _, http = unit
    await controller.join()
    async with http.post("/actions/hangup", headers=headers) as resp:
        assert resp.status == 403
        assert (await resp.json())["error"]["code"] == "forbidden"
    async with http.post("/actions/camera-off", headers=headers) as resp:
        assert resp.status == 403
    async with http.get("/status", headers=headers) as resp:
        assert resp.status == 403
    assert controller.status()["state"] == "in_call" and controller.status()["camera"] is True


async def test_an_action_with_a_body_must_be_json(unit):
    controller, _, http = unit
    async with http.post("/actions/join", data=b"mute=1", headers={"Content-Type": "text/plain"}) as resp:
        assert resp.status == 415
        assert (await resp.json())["error"]["code"] == "unsupported_media_type"
    async with http.post("/actions/join", data=b"a=1", headers={"Content-Type": "application/x-www-form-urlencoded"}) as resp:
        assert resp.status == 415
    assert controller.status()["state"] == "idle"
    async with http.post("/actions/join", json={}) as resp:
        assert resp.status == 200 and (await resp.json())["state"] == "in_call"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}"])
async def test_the_units_own_names_are_served(host):
    """``Host`` as curl, a browser's address bar or a tool writes it for this endpoint."""
    async with StatusServer(LocalController(), "127.0.0.1", 0) as server, aiohttp.ClientSession(server.url) as http:
        headers = {"Host": host.format(port=server.port)}
        async with http.get("/status", headers=headers) as resp:
            assert resp.status == (200 if "{port}" in host else 403), "without a port the Host names port 80"
        async with http.get("/status", headers={**headers, "Sec-Fetch-Site": "none"}) as resp:
            assert resp.status == (200 if "{port}" in host else 403)


async def test_the_tools_that_drive_a_unit_still_do(unit):
    """urllib as the tests and the image checks post (an empty form body), and a raw HTTP/1.0 GET
    as the network-namespace tests send it."""
    import asyncio
    import json
    import urllib.request

    controller, server, _ = unit

    def post(action):
        req = urllib.request.Request(f"{server.url}/actions/{action}", method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=5) as resp:  # loopback only
            return json.loads(resp.read())

    assert (await asyncio.to_thread(post, "join"))["state"] == "in_call"
    assert (await asyncio.to_thread(post, "mute"))["muted"] is True
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(f"GET /status HTTP/1.0\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
    raw = await reader.read()
    writer.close()
    assert raw.startswith(b"HTTP/1.0 200") or raw.startswith(b"HTTP/1.1 200")
    assert json.loads(raw.partition(b"\r\n\r\n")[2])["muted"] is True


async def test_ipv6_loopback_by_name():
    async with StatusServer(LocalController(), "::1", 0) as server, aiohttp.ClientSession(server.url) as http:
        async with http.get("/status", headers={"Host": f"[::1]:{server.port}"}) as resp:
            assert resp.status == 200
        async with http.get("/status", headers={"Host": f"[::2]:{server.port}"}) as resp:
            assert resp.status == 403
