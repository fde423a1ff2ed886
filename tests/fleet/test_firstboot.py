"""First boot against a real signaling server on loopback."""

from __future__ import annotations

import dataclasses
import json
import stat
from pathlib import Path

import aiohttp
import pytest

from appliance import config as cfg
from appliance.fleet import bootfile, identity
from appliance.fleet.firstboot import JOURNAL, NOTICE, Paths, ProvisioningError, Provisioner, pending
from appliance.unit.config import UnitConfig

from .conftest import boot_text


async def device_token_status(url: str, paths: Paths) -> int:
    ident = json.loads((paths.state_dir / "device.json").read_text())
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/api/auth/device", json=ident) as resp:
            return resp.status


def assert_provisioned(paths: Paths, room: str = "boardroom") -> str:
    """Every promise of a finished first boot; returns the device id."""
    assert not pending(paths.state_dir)
    secret = paths.state_dir / "device.json"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    ident = json.loads(secret.read_text())
    conf = cfg.load(UnitConfig, paths.unit_config)
    assert conf.room == room
    assert conf.server.device_id == ident["device_id"]
    assert conf.state_dir == str(paths.state_dir)
    assert conf.video.type == "picamera" and conf.audio.source == "alsa" and conf.audio.sink == "alsa"
    hostname = (paths.etc / "hostname").read_text().strip()
    assert hostname == identity.hostname_for(ident["device_id"], room)
    assert f"127.0.1.1\t{hostname}" in (paths.etc / "hosts").read_text()
    assert identity.read_machine_id(paths.machine_id) is not None
    card = (paths.boot / "wallmesh.toml").read_text()
    assert "enrollment_token =" not in card and f'room = "{room}"' in card
    assert bootfile.read(paths.boot).enrollment_token == ""
    assert not (paths.state_dir / NOTICE).exists()
    return ident["device_id"]


async def test_two_cards_from_one_image_get_distinct_ids_and_both_enroll(server, make_card) -> None:
    token = await server.admin.enrollment_token(ttl_s=600)
    a = make_card("a", boot_text(server.url, token, name="Boardroom left"))
    b = make_card("b", boot_text(server.url, token, name="Boardroom right"))
    await Provisioner(a).run_once()
    await Provisioner(b).run_once()
    id_a, id_b = assert_provisioned(a), assert_provisioned(b)
    assert id_a != id_b
    assert a.machine_id.read_text() != b.machine_id.read_text()
    enrolled = {d["device_id"]: d for d in await server.admin.list_devices()}
    assert enrolled[id_a]["name"] == "Boardroom left" and enrolled[id_b]["name"] == "Boardroom right"
    assert await device_token_status(server.url, a) == 200
    assert await device_token_status(server.url, b) == 200


async def test_second_run_does_nothing(server, make_card) -> None:
    token = await server.admin.enrollment_token(ttl_s=600)
    card = make_card("a", boot_text(server.url, token))
    await Provisioner(card).run_once()
    before = {p: p.read_bytes() for p in (card.unit_config, card.state_dir / "device.json", card.etc / "hostname")}
    await Provisioner(card).run_once()
    assert {p: p.read_bytes() for p in before} == before
    assert len(await server.admin.list_devices()) == 1


async def test_board_serial_gives_a_stable_id(server, make_card) -> None:
    token = await server.admin.enrollment_token(ttl_s=600)
    a = make_card("a", boot_text(server.url, token), serial="10000000abcdef01")
    b = make_card("b", boot_text(server.url, token), serial="10000000abcdef02")
    await Provisioner(a).run_once()
    await Provisioner(b).run_once()
    id_a, id_b = assert_provisioned(a), assert_provisioned(b)
    assert id_a != id_b
    assert id_a == identity.derive_device_id("10000000abcdef01", "0" * 32).device_id
    assert json.loads((a.state_dir / JOURNAL).read_text())["facts"]["device_id_source"] == "serial"


async def test_reflashed_board_enrolls_under_the_next_id(server, make_card) -> None:
    """Same board (serial), new card: the server knows the id, the card has no secret."""
    token = await server.admin.enrollment_token(ttl_s=600)
    first = make_card("first", boot_text(server.url, token), serial="10000000cafe0001")
    await Provisioner(first).run_once()
    again = make_card("again", boot_text(server.url, token), serial="10000000cafe0001")
    await Provisioner(again).run_once()
    old, new = assert_provisioned(first), assert_provisioned(again)
    assert new == f"{old}-2"
    assert await device_token_status(server.url, again) == 200


async def test_token_in_a_discover_file_finds_the_server(server, make_card) -> None:
    """With server = "discover", the token's own URL is used before any mDNS browse."""
    token = await server.admin.enrollment_token(ttl_s=600)
    card = make_card("a", f'room = "lobby"\nenrollment_token = "{token}"\n')
    await Provisioner(card).run_once()
    assert_provisioned(card, room="lobby")
    assert cfg.load(UnitConfig, card.unit_config).server.url == "discover"


@pytest.mark.parametrize("how", ["revoked", "expired", "garbage"])
async def test_refused_token_is_explained(server, make_card, how: str) -> None:
    if how == "revoked":
        token = await server.admin.enrollment_token(ttl_s=600)
        jti = (await server.admin.list_enrollments())[0]["id"]
        await server.admin.revoke_enrollment(jti)
    elif how == "expired":
        token = server.tokens.issue("enroll", "fleet", "fleet enrollment", ["*"], -30, url=server.url, fp=None)
    else:
        token = "not-a-token"
    card = make_card("a", boot_text(server.url, token))
    card = dataclasses.replace(card, console=card.etc.parent / "tty1")  # stands in for the HDMI console
    prov = Provisioner(card)
    with pytest.raises(ProvisioningError) as info:
        await prov.run(retry=False)
    message = str(info.value)
    assert "refused the enrollment token" in message and "wrong, expired or revoked" in message
    assert "wallmesh device token" in message
    assert token not in message
    notice = (card.state_dir / NOTICE).read_text()
    assert "not set up yet" in notice and "refused the enrollment token" in notice
    assert "refused the enrollment token" in card.console.read_text()
    assert pending(card.state_dir)
    assert "enrollment_token" in (card.boot / "wallmesh.toml").read_text()  # kept for the retry
    assert not (card.state_dir / "device.json").exists()
    assert await server.admin.list_devices() == []


async def test_server_without_its_store_is_not_blamed_on_the_token(server, make_card) -> None:
    token = await server.admin.enrollment_token(ttl_s=600)
    card = make_card("a", boot_text(server.url, token))
    await server.embedded.stop(release=False)  # the server answers 503 store_unavailable
    try:
        with pytest.raises(ProvisioningError) as info:
            await Provisioner(card).run(retry=False)
        message = str(info.value)
        assert "cannot enroll devices right now" in message and "wrong, expired or revoked" not in message
        assert pending(card.state_dir) and "enrollment_token" in (card.boot / "wallmesh.toml").read_text()
    finally:
        await server.embedded.start()
    await Provisioner(card).run_once()  # the same token works once the store is back
    assert_provisioned(card)


async def test_unreachable_server_then_retry_with_backoff(server, make_card, unused_tcp_port) -> None:
    import asyncio

    from appliance.signaling.config import SignalConfig
    from appliance.signaling.server import SignalServer

    url = f"http://127.0.0.1:{unused_tcp_port}"
    card = make_card("a", "")
    later = SignalServer(SignalConfig(host="127.0.0.1", port=unused_tcp_port), state_dir=card.state_dir.parent / "srv")
    # the token must come from the server that will answer; start it briefly to mint one
    await later.start()
    token = await later.admin.enrollment_token(ttl_s=600)
    await later.stop()
    (card.boot / "wallmesh.toml").write_text(boot_text(url, token))

    prov = Provisioner(card)
    with pytest.raises(ProvisioningError, match="cannot reach the signaling server"):
        await prov.run_once()
    task = asyncio.create_task(prov.run(retry=True, first_delay_s=0.1, max_delay_s=0.4))
    notice = card.state_dir / NOTICE
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while loop.time() < deadline and not (notice.exists() and "cannot reach" in notice.read_text()):
        await asyncio.sleep(0.05)
    assert not task.done() and "cannot reach" in notice.read_text()
    again = SignalServer(SignalConfig(host="127.0.0.1", port=unused_tcp_port), state_dir=card.state_dir.parent / "srv")
    await again.start()
    try:
        await asyncio.wait_for(task, 30)
        assert_provisioned(card)
    finally:
        await again.stop()


@pytest.mark.parametrize(
    "text, key",
    [("room = \"Board Room\"\n", "room"), ("colour = \"red\"\n", "colour"), ("room = [\n", None)],
)
async def test_bad_boot_file_names_file_and_key(make_card, text: str, key: str | None) -> None:
    card = make_card("a", text)
    with pytest.raises(ProvisioningError) as info:
        await Provisioner(card).run_once()
    message = str(info.value)
    assert str(card.boot / "wallmesh.toml") in message
    if key:
        assert f"'{key}'" in message
    assert pending(card.state_dir)


async def test_token_in_the_fleet_default_is_refused(make_card) -> None:
    card = make_card("a", "")
    card.fleet_defaults.write_text('enrollment_token = "abc"\n')
    with pytest.raises(ProvisioningError, match="must not be baked into the image"):
        await Provisioner(card).run_once()


async def test_https_pinning(tmp_path: Path, make_card) -> None:
    from appliance.signaling.config import SignalConfig
    from appliance.signaling.server import SignalServer

    srv = SignalServer(SignalConfig(host="127.0.0.1", port=0, tls_on_loopback=True), state_dir=tmp_path / "tls")
    await srv.start()
    try:
        assert srv.url.startswith("https://") and srv.fingerprint
        token = await srv.admin.enrollment_token(ttl_s=600)
        wrong = ":".join(["AB"] * 32)
        bad = make_card("bad", boot_text(srv.url, token, fingerprint=wrong))
        with pytest.raises(ProvisioningError, match="fingerprint is not the pinned one"):
            await Provisioner(bad).run_once()
        good = make_card("good", boot_text(srv.url, token, fingerprint=srv.fingerprint))
        await Provisioner(good).run_once()
        assert_provisioned(good)
        assert cfg.load(UnitConfig, good.unit_config).server.fingerprint == srv.fingerprint
    finally:
        await srv.stop()


async def run_cli(*args: str) -> tuple[int, str, str]:
    import asyncio
    import sys

    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "appliance.cli", "firstboot", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


def cli_args(paths: Paths) -> list[str]:
    return ["--boot", str(paths.boot), "--etc", str(paths.etc), "--state-dir", str(paths.state_dir),
            "--sys-root", str(paths.sys_root), "--proc-root", str(paths.proc_root)]


async def test_cli_provisions_and_explains_failures(server, make_card) -> None:
    bad = make_card("bad", boot_text(server.url, "not-a-token"))
    code, _, err = await run_cli(*cli_args(bad))
    assert code == 1 and "refused the enrollment token" in err and "Traceback" not in err
    token = await server.admin.enrollment_token(ttl_s=600)
    good = make_card("good", boot_text(server.url, token))
    code, _, err = await run_cli(*cli_args(good))
    assert code == 0, err
    assert_provisioned(good)
    assert token not in err
    code, _, err = await run_cli(*cli_args(good))  # the next boot: nothing to do
    assert code == 0, err


async def test_token_for_other_rooms_is_explained_before_enrolling(server, make_card) -> None:
    token = await server.admin.enrollment_token(ttl_s=600, rooms=("lobby", "kitchen"))
    card = make_card("a", boot_text(server.url, token, room="boardroom"))
    with pytest.raises(ProvisioningError, match=r"only grants the rooms lobby, kitchen.*'boardroom'"):
        await Provisioner(card).run_once()
    assert await server.admin.list_devices() == []
    ok = make_card("b", boot_text(server.url, token, room="kitchen"))
    await Provisioner(ok).run_once()
    assert_provisioned(ok, room="kitchen")


async def test_unwritable_file_is_explained_and_retried(server, make_card) -> None:
    """A step that cannot write is a plain explanation (and the retry loop goes on), not a crash."""
    token = await server.admin.enrollment_token(ttl_s=600)
    card = make_card("a", boot_text(server.url, token))
    blocker = card.etc / "wallmesh" / "unit.toml"
    blocker.mkdir(parents=True)  # a directory where the config file should go
    (blocker / "x").write_text("")
    with pytest.raises(ProvisioningError, match=r"step unit-config could not write .*unit.toml"):
        await Provisioner(card).run(retry=False)
    assert "could not write" in (card.state_dir / NOTICE).read_text()
    (blocker / "x").unlink()
    blocker.rmdir()
    await Provisioner(card).run_once()
    assert_provisioned(card)
