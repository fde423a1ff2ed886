"""Device identity, the boot file and atomic writes."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from appliance.errors import ConfigError
from appliance.fleet import bootfile, identity
from appliance.files import write_atomic


@pytest.mark.parametrize("content", ["", "uninitialized\n", "0" * 32 + "\n", "not-hex\n", None])
def test_placeholder_machine_ids_are_replaced(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "machine-id"
    if content is not None:
        path.write_text(content)
    mid, generated = identity.ensure_machine_id(path)
    assert generated and re.fullmatch(r"[0-9a-f]{32}", mid)
    assert path.read_text() == mid + "\n"
    assert identity.ensure_machine_id(path) == (mid, False)


def test_serial_from_devicetree_or_cpuinfo(tmp_path: Path) -> None:
    sys_, proc = tmp_path / "sys", tmp_path / "proc"
    proc.mkdir()
    (proc / "cpuinfo").write_text("processor\t: 0\nHardware\t: BCM2835\nSerial\t\t: 10000000AbCdEf12\nModel\t\t: Raspberry Pi 4\n")
    assert identity.read_serial(sys_, proc) == "10000000abcdef12"
    dt = sys_ / "firmware/devicetree/base"
    dt.mkdir(parents=True)
    (dt / "serial-number").write_bytes(b"00000000deadbeef\x00")
    assert identity.read_serial(sys_, proc) == "00000000deadbeef"
    (dt / "serial-number").write_bytes(b"0000000000000000\x00")
    (proc / "cpuinfo").write_text("Serial\t\t: 0000000000000000\n")
    assert identity.read_serial(sys_, proc) is None


def test_device_ids_and_host_names() -> None:
    a = identity.derive_device_id("10000000abcdef12", "1" * 32)
    b = identity.derive_device_id(None, "1" * 32)
    assert a.source == "serial" and b.source == "machine-id" and a.device_id != b.device_id
    assert a == identity.derive_device_id("10000000abcdef12", "2" * 32)  # the serial wins, stable across re-flashing
    assert "10000000abcdef12" not in a.device_id and "1" * 32 not in b.device_id
    assert re.fullmatch(r"wm-[0-9a-f]{12}", a.device_id)
    name = identity.hostname_for(a.device_id, "x" * 63)
    assert len(name) <= 63 and re.fullmatch(r"[a-z0-9-]+", name) and name.endswith(a.device_id[-6:])


def test_scrub_token_keeps_everything_else(tmp_path: Path) -> None:
    card = tmp_path / "wallmesh.toml"
    card.write_text('# boardroom unit\nroom = "boardroom"\n  enrollment_token = "eyJ.abc.def"\nname = "Window"\n')
    assert bootfile.scrub_token(tmp_path)
    text = card.read_text()
    assert "eyJ" not in text and "# boardroom unit" in text and 'name = "Window"' in text
    assert bootfile.read(tmp_path).room == "boardroom"
    assert not bootfile.scrub_token(tmp_path)


def test_token_hints() -> None:
    import base64
    import json

    claims = base64.urlsafe_b64encode(json.dumps({"url": "https://10.0.0.2:8443/", "fp": "AB:CD"}).encode()).rstrip(b"=").decode()
    hints = bootfile.token_hints(f"eyJhbGciOiJFUzI1NiJ9.{claims}.sig")
    assert hints == bootfile.TokenHints(url="https://10.0.0.2:8443", fingerprint="AB:CD")
    assert bootfile.token_hints("not-a-jwt") == bootfile.TokenHints()
    assert bootfile.token_hints("a.%%%.c") == bootfile.TokenHints()


def test_boot_file_errors_name_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "wallmesh.toml").write_text('server = "ftp://x"\n')
    with pytest.raises(ConfigError, match=r"wallmesh.toml: key 'server'"):
        bootfile.read(tmp_path)
    (tmp_path / "wallmesh.toml").write_bytes(b"room = \"\xff\"\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        bootfile.read(tmp_path)


def test_atomic_write_leaves_old_content_when_replacing_fails(tmp_path: Path) -> None:
    target = tmp_path / "unit.toml"
    write_atomic(target, "old\n", mode=0o640)
    assert target.read_text() == "old\n" and (target.stat().st_mode & 0o777) == 0o640
    blocker = tmp_path / "dir"
    blocker.mkdir()
    (blocker / "x").write_text("")
    with pytest.raises(OSError):
        write_atomic(blocker, "new\n")  # cannot rename a file over a non-empty directory
    assert sorted(os.listdir(tmp_path)) == ["dir", "unit.toml"]  # no temp file left behind
    write_atomic(target, "secret\n", mode=0o600)
    assert target.read_text() == "secret\n" and (target.stat().st_mode & 0o777) == 0o600


def test_the_documented_example_is_a_valid_boot_file(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "image" / "wallmesh.toml.example"
    (tmp_path / "wallmesh.toml").write_text(example.read_text())
    card = bootfile.read(tmp_path)
    assert card.room == "boardroom" and card.enrollment_token and card.server == "discover"
    assert bootfile.scrub_token(tmp_path) and bootfile.read(tmp_path).enrollment_token == ""
