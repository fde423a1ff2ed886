"""Names in a room: what a participant calls itself arrives cleaned, and who it really is travels with it.

Anyone can call themselves "alice", and U+202E turns "ecila" into "alice" on screen. The
server cleans every name it passes on (appliance.protocol.clean_name) and adds the
``account`` its token proves, so the other participants' tiles can show who it is.
All against the real server with real logins and a real device enrollment.
"""

from __future__ import annotations

from appliance.signaling.server import SignalServer

from .conftest import PASSWORD, Client


async def login(http, server: SignalServer, username: str, password: str = PASSWORD) -> str:
    async with http.post(server.url + "/api/auth/login", json={"username": username, "password": password}) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["token"]


async def test_a_reversed_name_arrives_cleaned(server: SignalServer, http) -> None:
    token = await login(http, server, "alice")
    watcher = await Client.connect(http, server, token, name="Wall 1")
    await watcher.join("lobby")
    tricky = await Client.connect(http, server, token, name="\u202eecila\u200b \u2066x\u2069 ")
    joined = await tricky.join("lobby")
    announced = await watcher.recv("peer-joined")
    assert announced["name"] == "ecila x"
    assert not any(c in announced["name"] for c in "\u202e\u200b\u2066\u2069")
    assert joined["peers"][0]["name"] == "Wall 1"
    late = await Client.connect(http, server, token, name="late")
    roster = (await late.join("lobby"))["peers"]
    assert sorted(p["name"] for p in roster) == ["Wall 1", "ecila x"], "the roster carries the cleaned name too"


async def test_a_name_of_nothing_but_format_characters_falls_back_to_the_account(server: SignalServer, http) -> None:
    watcher = await Client.connect(http, server, await login(http, server, "alice"), name="Wall 1")
    await watcher.join("lobby")
    invisible = await Client.connect(http, server, await login(http, server, "alice"), name="\u200b\u202e\u200d")
    await invisible.join("lobby")
    announced = await watcher.recv("peer-joined")
    assert announced["name"] == "alice" and announced["account"] == "alice"


async def test_bob_calling_himself_alice_is_seen_as_bob(server: SignalServer, http) -> None:
    await server.admin.add_user("bob", PASSWORD)
    alice = await Client.connect(http, server, await login(http, server, "alice"), name="alice")
    await alice.join("board-room")
    bob = await Client.connect(http, server, await login(http, server, "bob"), name="alice")
    joined = await bob.join("board-room")
    announced = await alice.recv("peer-joined")
    assert (announced["name"], announced["account"], announced["kind"]) == ("alice", "bob", "user")
    (entry,) = joined["peers"]
    assert (entry["name"], entry["account"], entry["kind"]) == ("alice", "alice", "user")


async def test_a_device_is_known_by_its_id(server: SignalServer, http) -> None:
    enrollment = await server.admin.enrollment_token()
    body = {"enrollment_token": enrollment, "device_id": "wall-7f3a", "name": "\u202eRoom 4"}
    async with http.post(server.url + "/api/devices/enroll", json=body) as resp:
        assert resp.status == 201, await resp.text()
        secret = (await resp.json())["device_secret"]
    async with http.post(server.url + "/api/auth/device", json={"device_id": "wall-7f3a", "device_secret": secret}) as resp:
        token = (await resp.json())["token"]
    watcher = await Client.connect(http, server, await login(http, server, "alice"), name="alice")
    await watcher.join("lobby")
    unit = await Client.connect(http, server, token)  # no name of its own: the enrolled one, cleaned
    await unit.join("lobby")
    announced = await watcher.recv("peer-joined")
    assert (announced["name"], announced["account"], announced["kind"]) == ("Room 4", "wall-7f3a", "device")
