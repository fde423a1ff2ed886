"""ICE servers in ``welcome``: none by default, configured STUN/TURN with TURN REST credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from appliance.signaling.config import Ice
from appliance.signaling.server import SignalServer
from appliance.signaling.turn import ice_servers, turn_credentials

from .conftest import Client, make_config, user_token


def test_turn_rest_credentials() -> None:
    user, password = turn_credentials("s3cret", "peer1", 600, now=1_700_000_000)
    assert user == "1700000600:peer1"
    expected = base64.b64encode(hmac.new(b"s3cret", b"1700000600:peer1", hashlib.sha1).digest()).decode()
    assert password == expected


def test_no_ice_servers_by_default() -> None:
    assert ice_servers(Ice(), "p") == []


async def test_welcome_carries_configured_servers(tmp_path, http) -> None:
    cfg = make_config(ice={"stun_urls": ["stun:127.0.0.1:3478"], "turn_urls": ["turn:127.0.0.1:3478?transport=udp"],
                           "turn_secret": "s3cret", "turn_ttl_s": 300})
    async with SignalServer(cfg, state_dir=tmp_path) as server:
        client = Client(await http.ws_connect(server.ws_url))
        await client.send({"type": "hello", "token": user_token(server)})
        welcome = await client.recv("welcome")
        stun, turn = welcome["ice_servers"]
        assert stun == {"urls": ["stun:127.0.0.1:3478"]}
        expiry, peer = turn["username"].split(":")
        assert peer == welcome["peer_id"] and 0 < int(expiry) - time.time() <= 300
        digest = hmac.new(b"s3cret", turn["username"].encode(), hashlib.sha1).digest()
        assert turn["credential"] == base64.b64encode(digest).decode()


async def test_default_server_hands_out_no_ice_servers(server: SignalServer, http) -> None:
    client = Client(await http.ws_connect(server.ws_url))
    await client.send({"type": "hello", "token": user_token(server)})
    assert (await client.recv("welcome"))["ice_servers"] == []
