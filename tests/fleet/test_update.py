"""Updates with rollback, end to end: a real site server, real wheels, real ``wallmesh`` processes.

The test plays systemd's part for ``wallmesh-unit.service``: it starts
``wallmesh update launch`` and, when that process dies, starts it again.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from appliance.signaling.config import SignalConfig
from appliance.signaling.server import SignalServer

from .update_parts import FACTORY, Unit, build_wheel, cli, enrolled_unit, in_room, launch, starts_in_room, status, stop, wait_for

GOOD, CRASH, HANG = "0.1.1", "0.1.2", "0.1.3"


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("wheels")
    return {GOOD: build_wheel(out, GOOD), CRASH: build_wheel(out, CRASH, "crash"), HANG: build_wheel(out, HANG, "hang")}


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[SignalServer]:
    srv = SignalServer(SignalConfig(host="127.0.0.1", port=0, tls_on_loopback=True), state_dir=tmp_path / "server")
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def unit(site: SignalServer, tmp_path: Path) -> Unit:
    return await enrolled_unit(site, tmp_path / "unit")


async def publish_and_update(site: SignalServer, unit: Unit, wheel: Path) -> str:
    code, out, err = await cli("release", "publish", str(wheel), "--state-dir", str(site.state_dir))
    assert code == 0, err
    code, out, err = await cli("update", "--config", str(unit.config))
    assert code == 0, err
    return out


@pytest.mark.timeout(240)
async def test_a_good_update_is_confirmed_and_kept(site, unit, wheels) -> None:
    out = await publish_and_update(site, unit, wheels[GOOD])
    assert f"installed wallmesh {GOOD} as a trial" in out
    # no systemd runs this machine: it says so, and the command that starts the trial
    assert f"start the trial with: wallmesh update launch --config {unit.config}" in out
    assert unit.slots_json()["trial"] == GOOD

    daemon = await launch(unit)
    try:
        doc = await in_room(unit, daemon)
        assert doc["software"]["version"] == GOOD and doc["software"]["state"] == "trial" and doc["software"]["slot"]
        await wait_for(lambda: unit.slots_json().get("current") == GOOD)
        # the daemon's /status follows the watcher's confirmation
        await wait_for(lambda: (status(unit.status_url) or {}).get("software", {}).get("state") == "confirmed", 15)
        assert "confirmed healthy: joined room boardroom" in status(unit.status_url)["software"]["why"]
    finally:
        await stop(daemon)
    record = unit.slots_json()
    assert record["trial"] is None and record["previous"] is None and "confirmed healthy: joined room boardroom" in record["last"]
    code, out, _ = await cli("update", "status", "--config", str(unit.config))
    assert code == 0 and f"runs: wallmesh {GOOD}" in out

    await starts_in_room(unit)  # the next start stays on the confirmed version
    assert unit.slots_json()["running"]["version"] == GOOD and unit.slots_json()["current"] == GOOD
    code, out, err = await cli("update", "--config", str(unit.config))
    assert code == 0 and "already installed" in out, err


@pytest.mark.timeout(240)
async def test_a_build_that_crashes_at_start_rolls_back_and_the_unit_is_back_in_its_room(site, unit, wheels) -> None:
    await publish_and_update(site, unit, wheels[CRASH])
    trial = await launch(unit)
    _, err = await trial.communicate()
    assert trial.returncode == 1 and "this build crashes at start" in err.decode()
    await wait_for(lambda: "exited" in unit.slots_json().get("trial_failure", ""))  # the watcher's word, before systemd's restart

    daemon = await launch(unit)
    try:
        doc = await in_room(unit, daemon)
    finally:
        await stop(daemon)
    assert doc["software"]["version"] == FACTORY and doc["software"]["state"] == "rolled_back"
    assert doc["software"]["why"].startswith(f"rolled back from {CRASH}") and not doc["software"]["slot"]
    record = unit.slots_json()
    assert record["current"] is None and record["trial"] is None
    assert record["running"]["version"] == FACTORY and record["last"].startswith(f"rolled back from {CRASH} to {FACTORY}")
    code, out, _ = await cli("update", "status", "--config", str(unit.config))
    assert code == 0 and f"runs: wallmesh {FACTORY}: rolled back from {CRASH}" in out and "exited" in out
    code, out, _ = await cli("doctor", "--config", str(unit.config), "--no-network", "--json")
    (version,) = [f for f in json.loads(out)["findings"] if f["check"] == "version"]
    assert version["status"] == "warn" and f"wallmesh {FACTORY} (rolled back): rolled back from {CRASH}" in version["summary"]


@pytest.mark.timeout(240)
async def test_a_build_that_never_becomes_healthy_rolls_back_after_the_deadline(site, unit, wheels) -> None:
    await publish_and_update(site, unit, wheels[HANG])
    trial = await launch(unit, deadline_s=4)
    await trial.communicate()
    assert trial.returncode == -9  # stopped by the watcher, so the service manager restarts it
    assert "not healthy within 4 s" in unit.slots_json()["trial_failure"]

    await starts_in_room(unit)
    record = unit.slots_json()
    assert record["running"]["version"] == FACTORY and f"rolled back from {HANG}" in record["last"]
    assert "not healthy within 4 s" in record["last"]


def _tamper_signature(doc: dict) -> None:
    sig = bytearray(__import__("base64").b64decode(doc["signature"]))
    sig[-1] ^= 1
    doc["signature"] = __import__("base64").b64encode(bytes(sig)).decode()


def _unsign(doc: dict) -> None:
    doc["signature"] = ""


def _bump_version(doc: dict) -> None:
    manifest = json.loads(doc["manifest"])
    manifest["version"] = "9.9.9"
    doc["manifest"] = json.dumps(manifest, sort_keys=True)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("spoil", [_tamper_signature, _unsign, _bump_version], ids=["bad-signature", "unsigned", "manifest-changed"])
async def test_a_release_whose_signature_does_not_verify_is_refused_and_nothing_changes(site, unit, wheels, spoil) -> None:
    code, _, err = await cli("release", "publish", str(wheels[GOOD]), "--state-dir", str(site.state_dir))
    assert code == 0, err
    latest = site.state_dir / "releases/latest.json"
    doc = json.loads(latest.read_text())
    spoil(doc)
    latest.write_text(json.dumps(doc))
    before = sorted(p.name for p in (unit.state_dir / "versions").glob("*")) if (unit.state_dir / "versions").exists() else []
    code, _, err = await cli("update", "--config", str(unit.config))
    assert code == 1 and "nothing was changed" in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    after = sorted(p.name for p in (unit.state_dir / "versions").glob("*")) if (unit.state_dir / "versions").exists() else []
    assert after == before and unit.slots_json() == {}


@pytest.mark.timeout(180)
async def test_a_release_signed_by_another_site_or_with_a_swapped_wheel_is_refused(site, unit, wheels, tmp_path) -> None:
    other = tmp_path / "other-site"
    other.mkdir()
    code, _, err = await cli("release", "publish", str(wheels[GOOD]), "--state-dir", str(other))
    assert code == 0, err
    releases = site.state_dir / "releases"
    releases.mkdir()
    (releases / "latest.json").write_bytes((other / "releases/latest.json").read_bytes())
    code, _, err = await cli("update", "--config", str(unit.config))
    assert code == 1 and "not this unit's pinned site certificate" in err, err

    code, _, err = await cli("release", "publish", str(wheels[GOOD]), "--state-dir", str(site.state_dir))
    assert code == 0, err
    (releases / GOOD / wheels[GOOD].name).write_bytes(wheels[CRASH].read_bytes())  # same name, other content
    code, _, err = await cli("update", "--config", str(unit.config))
    assert code == 1 and "does not match its signed manifest" in err, err
    assert unit.slots_json() == {} and not (unit.state_dir / "versions" / GOOD).exists()


async def test_releases_are_for_enrolled_devices_only(site) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        for path in ("/api/releases/latest", "/api/releases/files/wallmesh-0.1.1-py3-none-any.whl"):
            async with session.get(site.url + path, ssl=False, headers={"Authorization": "Bearer nope"}) as resp:
                assert resp.status == 401
                assert (await resp.json())["error"]["code"] == "unauthorized"


async def test_publish_refuses_what_is_not_a_wallmesh_wheel(site, tmp_path) -> None:
    bogus = tmp_path / "wallmesh-1.0-py3-none-any.whl"
    bogus.write_bytes(b"not a zip")
    code, _, err = await cli("release", "publish", str(bogus), "--state-dir", str(site.state_dir))
    assert code == 1 and str(bogus) in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    code, _, err = await cli("release", "publish", str(tmp_path / "missing.whl"), "--state-dir", str(site.state_dir))
    assert code == 1 and "missing.whl" in err


def test_the_unit_service_starts_through_the_launcher() -> None:
    """Without it an installed trial would never start, nor roll back."""
    from .update_parts import REPO

    lines = (REPO / "systemd/wallmesh-unit.service").read_text().splitlines()
    (start,) = [line.split("=", 1)[1].split() for line in lines if line.startswith("ExecStart=")]
    assert start[:3] == ["/opt/wallmesh/bin/wallmesh", "update", "launch"] and start[start.index("--config") + 1] == "/etc/wallmesh/unit.toml"
    assert "NotifyAccess=main" in lines  # the daemon is the main process after the launcher's exec


def _rewrite(unit: Unit, old: str, new: str) -> None:
    text = unit.config.read_text()
    assert old in text
    unit.config.write_text(text.replace(old, new))


async def test_an_update_needs_a_pinned_site_certificate(site, unit, wheels) -> None:
    code, _, err = await cli("release", "publish", str(wheels[GOOD]), "--state-dir", str(site.state_dir))
    assert code == 0, err
    _rewrite(unit, f'fingerprint = "{site.fingerprint}"', 'fingerprint = ""')
    code, _, err = await cli("update", "--config", str(unit.config))
    assert code == 1 and str(unit.config) in err and "server.fingerprint" in err and len(err.strip().splitlines()) == 1, err
    assert unit.slots_json() == {}


async def test_an_update_refuses_an_unenrolled_unit_or_another_users_state(site, unit) -> None:
    import os

    (unit.state_dir / "device.json").unlink()
    code, _, err = await cli("update", "--config", str(unit.config))
    assert code == 1 and "device.json" in err and "provision" in err, err
    if os.geteuid() == 0:  # as root, a state directory of another user can be made
        os.chown(unit.state_dir, 65534, 65534)
        code, _, err = await cli("update", "--config", str(unit.config))
        assert code == 1 and "run this as that user" in err, err
        assert unit.slots_json() == {}


@pytest.mark.parametrize(
    "doc, healthy",
    [
        ({"process": {"pid": 42, "loop_lag_ms": 3}, "signaling": {"connected": True}, "joined_at": 1.0, "room": "r", "state": "in_call"}, True),
        ({"process": {"pid": 42, "loop_lag_ms": 3}, "signaling": {"connected": True}, "joined_at": None, "state": "idle"}, True),
        ({"process": {"pid": 41, "loop_lag_ms": 3}, "signaling": {"connected": True}, "joined_at": 1.0, "state": "in_call"}, False),
        ({"process": {"pid": 42, "loop_lag_ms": 3}, "signaling": {"connected": False}, "joined_at": None, "state": "idle"}, False),
        ({"process": {"pid": 42, "loop_lag_ms": 3}, "signaling": {"connected": True}, "joined_at": None, "state": "joining"}, False),
        ({"process": {"pid": 42, "loop_lag_ms": 20000}, "signaling": {"connected": True}, "joined_at": 1.0, "state": "in_call"}, False),
        (None, False),
    ],
    ids=["joined", "idle-reachable", "another-process", "server-unreachable", "still-joining", "loop-stalled", "no-status"],
)
def test_what_confirms_a_trial(doc, healthy) -> None:
    from appliance.fleet.update.launch import healthy as judge

    assert (judge(doc, 42) is not None) == healthy


def test_the_chosen_version_is_never_a_copy_in_the_working_directory(tmp_path: Path) -> None:
    import subprocess

    from appliance.fleet.update.slots import Slots

    fake = tmp_path / "appliance"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "cli.py").write_text("print('wallmesh not-this-one')\n")
    program = Slots(tmp_path / "state").program(None)
    done = subprocess.run([*program, "--version"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == f"wallmesh {FACTORY}"


async def test_the_launcher_names_a_config_file_it_cannot_read(tmp_path: Path) -> None:
    bad = tmp_path / "unit.toml"
    bad.write_text("room = \n")
    code, _, err = await cli("update", "launch", "--config", str(bad))
    assert code == 1 and str(bad) in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
