"""Names the unit shows are clean even from an older server that passes them on as they came,
and the account a newer server adds is kept only while that participant is there."""

from __future__ import annotations

from appliance.unit import config
from appliance.unit.app import UnitDaemon
from appliance.wall.states import UnitState


def unit_conf(tmp_path):
    data = {
        "room": "names",
        "state_dir": str(tmp_path / "state"),
        "headless": True,
        "server": {"url": "http://127.0.0.1:9", "name": "unit-n", "device_id": "dev-n"},
        "video": {"type": "pattern", "width": 160, "height": 120, "fps": 15},
        "audio": {"source": "synthetic", "sink": "null"},
        "ice": {"loopback": True},
    }
    return config.cfg.build(config.UnitConfig, data, "<test>")


async def test_roster_names_are_cleaned_and_accounts_follow_the_roster(tmp_path):
    daemon = UnitDaemon(unit_conf(tmp_path))
    try:
        daemon.machine.to(UnitState.JOINING, "test")
        daemon.mesh.set_session({"peer_id": "me", "ice_servers": [], "limits": {"max_room_size": 6}})
        await daemon.on_joined({
            "type": "joined", "room": "names", "peer_id": "me",
            "peers": [{"peer_id": "old", "name": "\u202eecila\u200b", "kind": "user", "state": {"muted": False, "camera": True}}],
        })
        await daemon.on_server_message({"type": "peer-joined", "peer_id": "new", "name": "alice ", "kind": "user", "account": "bob"})
        tiles = {t.peer_id: t for t in daemon.wall_model().tiles}
        assert (tiles["old"].name, tiles["old"].identity) == ("ecila", ""), "an older server: clean name, no account"
        assert (tiles["new"].name, tiles["new"].identity) == ("alice", "signed in as bob")
        peers = {p["id"]: p for p in daemon.status()["peers"]}
        assert peers["old"]["name"] == "ecila" and "account" not in peers["old"]
        assert peers["new"]["account"] == "bob"
        await daemon.on_server_message({"type": "peer-left", "peer_id": "new", "reason": "left"})
        assert [t.peer_id for t in daemon.wall_model().tiles] == ["old"]
        assert "new" not in daemon._accounts, "a participant that left is forgotten"
    finally:
        await daemon.close()
