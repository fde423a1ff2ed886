"""``wallmesh doctor`` on this machine (no Pi hardware) and on Pi-like test trees."""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import appliance
from appliance.fleet.doctor import hardware
from appliance.fleet.doctor import Context, Finding, exit_status, render_text, run_checks
from appliance.fleet.doctor.findings import load_config
from appliance.fleet.firstboot import Provisioner

from .conftest import boot_text


def by_check(findings: list[Finding]) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = {}
    for f in findings:
        out.setdefault(f.check, []).append(f)
    return out


def statuses(findings: list[Finding], check: str) -> set[str]:
    return {f.status for f in by_check(findings).get(check, [])}


UNIT_TOML = """\
room = "boardroom"
state_dir = "{state}"
[server]
url = "{url}"
fingerprint = "{fp}"
[video]
type = "picamera"
[audio]
source = "alsa"
sink = "alsa"
input_device = "hw:CARD=Device,DEV=0"
output_device = "hw:CARD=vc4hdmi0,DEV=0"
"""


def unit_toml(tmp_path: Path, url: str, fp: str = "", state: Path | None = None) -> Path:
    path = tmp_path / "unit.toml"
    path.write_text(UNIT_TOML.format(state=state or tmp_path / "state", url=url, fp=fp))
    return path


def pi_tree(root: Path, throttled: str = "0x0", temp_mc: int = 48500) -> tuple[Path, Path, Path]:
    """sysfs, /dev and procfs as a Raspberry Pi 4 with camera, HDMI screen and USB mic shows them."""
    sys_, dev, proc = root / "sys", root / "dev", root / "proc"
    dt = sys_ / "firmware/devicetree/base"
    dt.mkdir(parents=True)
    (dt / "model").write_bytes(b"Raspberry Pi 4 Model B Rev 1.5\0")
    conn = sys_ / "class/drm/card1-HDMI-A-1"
    conn.mkdir(parents=True)
    (conn / "status").write_text("connected\n")
    (conn / "modes").write_text("1920x1080\n1280x720\n")
    other = sys_ / "class/drm/card1-HDMI-A-2"
    other.mkdir(parents=True)
    (other / "status").write_text("disconnected\n")
    for i, name in enumerate(("unicam-image", "bcm2835-isp")):
        v = sys_ / f"class/video4linux/video{i}"
        v.mkdir(parents=True)
        (v / "name").write_text(name + "\n")
    zone = sys_ / "class/thermal/thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("cpu-thermal\n")
    (zone / "temp").write_text(f"{temp_mc}\n")
    fw = sys_ / "devices/platform/soc/soc:firmware"
    fw.mkdir(parents=True)
    (fw / "get_throttled").write_text(throttled + "\n")
    # device nodes: plain files stand in (the checks ask "present and accessible?")
    for node in ("dri/card1", "dri/renderD128", "media0", "video0", "gpiochip0", "snd/controlC0"):
        (dev / node).parent.mkdir(parents=True, exist_ok=True)
        (dev / node).write_text("")
    asound = proc / "asound"
    asound.mkdir(parents=True)
    (asound / "cards").write_text(
        " 0 [vc4hdmi0       ]: vc4-hdmi - vc4-hdmi-0\n                      vc4-hdmi-0\n"
        " 1 [Device         ]: USB-Audio - USB PnP Sound Device\n                      C-Media USB PnP Sound Device\n"
    )
    (asound / "card0/pcm0p").mkdir(parents=True)
    (asound / "card1/pcm0c").mkdir(parents=True)
    return sys_, dev, proc


def test_this_machine_reports_missing_pi_hardware(tmp_path: Path, unused_tcp_port: int) -> None:
    """Real /sys, /dev and /proc of this (non-Pi) machine: plain failures, no crash."""
    config = unit_toml(tmp_path, f"http://127.0.0.1:{unused_tcp_port}")
    findings = run_checks(Context(config_path=config, timeout_s=2))
    text = render_text(findings)
    assert "the check itself failed" not in text
    # what this machine lacks must be reported as missing (a CI VM may have a virtual GPU)
    if not any(Path("/sys/class/drm").glob("card*-*/status")):
        assert "no KMS display driver" in by_check(findings)["display"][0].summary
    if not any(Path("/dev").glob("gpiochip*")):
        assert "no GPIO controller" in by_check(findings)["gpio"][0].summary
    if not any(Path("/dev").glob("media*")) and not any(Path("/sys/class/video4linux").glob("video*")):
        assert "no camera found" in by_check(findings)["camera"][0].summary
    assert {"camera", "microphone", "speaker", "display", "gpio", "temperature", "throttling"} <= set(by_check(findings))
    assert "fail" in statuses(findings, "server") and "cannot reach" in text
    assert "fail" in statuses(findings, "provisioning")
    # this is no Pi, and the report says which findings only a unit's hardware can settle
    (board,) = by_check(findings)["board"]
    assert board.status == "warn" and "not a Raspberry Pi" in board.summary
    assert all(name in board.summary for name in ("camera", "microphone", "speaker", "display", "gpio"))
    (version,) = by_check(findings)["version"]
    assert version.status == "ok" and f"wallmesh {appliance.__version__} (image)" in version.summary
    assert exit_status(findings) == 1
    for f in findings:
        if f.status == "fail":
            assert f.fix, f


def test_cli_exit_status_and_text(tmp_path: Path) -> None:
    config = unit_toml(tmp_path, "http://127.0.0.1:9")
    done = subprocess.run([sys.executable, "-m", "appliance.cli", "doctor", "--config", str(config), "--no-network"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "[FAIL] display:" in done.stdout and "fix:" in done.stdout
    assert "Traceback" not in done.stderr


async def test_provisioned_pi_tree_is_healthy_then_revocation_shows(tmp_path: Path, server, make_card) -> None:
    token = await server.admin.enrollment_token(ttl_s=600)
    card = make_card("card", boot_text(server.url, token))
    await Provisioner(card).run_once()
    sys_, dev, proc = pi_tree(tmp_path / "pi")
    ctx = Context(config_path=card.unit_config, sys_root=sys_, dev_root=dev, proc_root=proc, vcgencmd=None, timeout_s=5)
    findings = await asyncio.to_thread(run_checks, ctx)  # doctor is synchronous; keep the server's loop free
    bad = [f for f in findings if f.status in ("fail", "warn") and f.check != "camera"]
    assert bad == [], render_text(findings)
    # picamera2 is a Raspberry Pi OS package: here only that part of the camera check fails
    camera = by_check(findings)["camera"]
    assert [f.status for f in camera if "media controller" in f.summary] == ["ok"]
    assert all("picamera2" in f.summary for f in camera if f.status == "fail")
    assert statuses(findings, "enrollment") == {"ok"} and statuses(findings, "server") == {"ok"}
    assert any("kmsdrm driver present" in f.summary for f in by_check(findings)["display"])  # pygame's own SDL
    assert [f.summary for f in by_check(findings)["board"]] == [f"Raspberry Pi 4 Model B Rev 1.5 ({platform.machine()})"]

    device_id = (card.state_dir / "provisioned").read_text().strip()
    await server.admin.revoke_device(device_id)
    findings = await asyncio.to_thread(run_checks, ctx)
    assert statuses(findings, "enrollment") == {"fail"}
    assert "revoked" in by_check(findings)["enrollment"][0].summary


async def test_server_down_is_unreachable(tmp_path: Path, unused_tcp_port: int) -> None:
    ctx = Context(config_path=unit_toml(tmp_path, f"http://127.0.0.1:{unused_tcp_port}"), timeout_s=2)
    findings = await asyncio.to_thread(run_checks, ctx)
    assert statuses(findings, "server") == {"fail"}


async def test_certificate_pinning(tmp_path: Path) -> None:
    from appliance.signaling.config import SignalConfig
    from appliance.signaling.server import SignalServer

    srv = SignalServer(SignalConfig(host="127.0.0.1", port=0, tls_on_loopback=True), state_dir=tmp_path / "srv")
    await srv.start()
    try:
        wrong = ":".join(["AB"] * 32)
        for fp, expect in ((wrong, "fail"), (srv.fingerprint, "ok"), ("", "warn")):
            path = unit_toml(tmp_path, srv.url, fp)
            findings = await asyncio.to_thread(run_checks, Context(config_path=path, timeout_s=5))
            assert statuses(findings, "pinning") == {expect}, render_text(findings)
            if expect == "fail":
                assert "server" not in by_check(findings)  # stops before talking to an impostor
            else:
                assert statuses(findings, "server") == {"ok"}
    finally:
        await srv.stop()


@pytest.mark.parametrize("value, status, words", [
    ("0x0", "ok", "no under-voltage"),
    ("0x50005", "fail", "under-voltage now"),
    ("0x50000", "warn", "under-voltage has occurred"),
])
def test_throttling(tmp_path: Path, value: str, status: str, words: str) -> None:
    sys_, dev, proc = pi_tree(tmp_path, throttled=value)
    ctx = Context(config_path=tmp_path / "none.toml", sys_root=sys_, dev_root=dev, proc_root=proc, vcgencmd=None, network=False)
    findings = run_checks(ctx, [hardware.check_throttling])
    assert [f.status for f in findings] == [status] and words in findings[0].summary


@pytest.mark.parametrize("millideg, status", [(45000, "ok"), (74000, "warn"), (83000, "fail")])
def test_temperature(tmp_path: Path, millideg: int, status: str) -> None:
    sys_, dev, proc = pi_tree(tmp_path, temp_mc=millideg)
    ctx = Context(config_path=tmp_path / "none.toml", sys_root=sys_, dev_root=dev, proc_root=proc, network=False)
    assert [f.status for f in run_checks(ctx, [hardware.check_temperature])] == [status]


def test_audio_device_naming_a_missing_card(tmp_path: Path) -> None:
    sys_, dev, proc = pi_tree(tmp_path)
    config = unit_toml(tmp_path, "http://127.0.0.1:9")
    config.write_text(config.read_text().replace("hw:CARD=Device,DEV=0", "hw:CARD=Headset,DEV=0").replace("hw:CARD=vc4hdmi0,DEV=0", "hw:1,0"))
    ctx = Context(config_path=config, sys_root=sys_, dev_root=dev, proc_root=proc, network=False)
    findings = run_checks(ctx, [hardware.check_microphone, hardware.check_speaker])
    mic, spk = findings
    assert mic.status == "fail" and "not there" in mic.summary and "Device" in mic.summary
    assert spk.status == "fail" and "no playback device" in spk.summary  # card 1 (USB mic) cannot play


def test_display_unplugged_and_duplicate_pins(tmp_path: Path) -> None:
    sys_, dev, proc = pi_tree(tmp_path)
    (sys_ / "class/drm/card1-HDMI-A-1/status").write_text("disconnected\n")
    config = unit_toml(tmp_path, "http://127.0.0.1:9")
    config.write_text(config.read_text() + '[buttons]\nmute = "GPIO17"\n')  # same pin as the call button
    ctx = Context(config_path=config, sys_root=sys_, dev_root=dev, proc_root=proc, network=False)
    display, *gpio = run_checks(ctx, [hardware.check_display, hardware.check_gpio])
    assert display.status == "fail" and "no screen connected" in display.summary and "HDMI-A-1" in display.summary
    assert any(f.status == "fail" and "GPIO17" in f.summary for f in gpio)


def test_a_broken_check_is_a_finding_not_a_crash(tmp_path: Path) -> None:
    def check_boom(ctx: Context):
        raise RuntimeError("sensor went away")
        yield  # pragma: no cover

    findings = run_checks(replace(Context(config_path=tmp_path / "x.toml"), network=False), [check_boom])
    assert findings == [Finding("boom", "fail", "the check itself failed: RuntimeError: sensor went away",
                                "report this with the output of `wallmesh -vv doctor`")]


async def test_discovery_on_loopback(tmp_path: Path) -> None:
    """server.url = "discover": doctor browses mDNS (bound to loopback here) and then checks what it found."""
    from appliance.signaling.config import Mdns, SignalConfig
    from appliance.signaling.server import SignalServer

    srv = SignalServer(SignalConfig(host="127.0.0.1", port=0, mdns=Mdns(enabled=True, interfaces=("127.0.0.1",))),
                       state_dir=tmp_path / "srv")
    await srv.start()
    try:
        path = unit_toml(tmp_path, "discover")
        path.write_text(path.read_text().replace('url = "discover"', 'url = "discover"\ndiscover_interfaces = ["127.0.0.1"]'))
        findings = await asyncio.to_thread(run_checks, Context(config_path=path, timeout_s=8))
        assert statuses(findings, "discovery") == {"ok"}, render_text(findings)
        assert srv.url in by_check(findings)["discovery"][0].summary
        assert by_check(findings)["discovery"][0].summary.endswith("by mDNS on 127.0.0.1")
        assert statuses(findings, "server") == {"ok"}
    finally:
        await srv.stop()


def test_audio_processing_binding_is_loaded_and_a_broken_one_is_named(tmp_path: Path) -> None:
    config = unit_toml(tmp_path, "http://127.0.0.1:9")
    ctx = load_config(Context(config_path=config, network=False))
    [good] = run_checks(ctx, [hardware.check_audio_processing])
    assert good.status == "ok" and "'webrtc'" in good.summary
    # a binding whose library is broken: a real import failure, in the doctor's own process
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "pywebrtc_audio.py").write_text("raise ImportError('libwebrtc_audio_processing.so.1: cannot open shared object file')\n")
    env = {**os.environ, "PYTHONPATH": f"{shadow}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, "-m", "appliance.cli", "doctor", "--config", str(config), "--no-network"],
                          capture_output=True, text=True, timeout=60, env=env)
    line = next(line for line in done.stdout.splitlines() if "audio processing:" in line)
    assert "[FAIL]" in line and "not available" in line and "without echo cancellation" in line
    assert "pip install pywebrtc-audio" in done.stdout and "Traceback" not in done.stderr


def test_no_unit_config_browses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine that is not set up has no server to look for: doctor must not browse mDNS
    on every interface it has (the default config's "discover" with no interface list)."""
    from appliance.unit import discovery

    browsed: list[object] = []

    async def refuse(*args: object, **kwargs: object) -> None:
        browsed.append(args)
        raise discovery.DiscoveryError("doctor browsed mDNS with no unit config")

    monkeypatch.setattr(discovery, "discover", refuse)
    findings = run_checks(Context(config_path=tmp_path / "missing.toml", timeout_s=1))
    assert browsed == []
    assert statuses(findings, "config") == {"fail"}
    assert by_check(findings)["server"] == [
        Finding("server", "skip", "no usable unit config, so no server to check and no mDNS browse; fix the config first")
    ]
    assert "discovery" not in by_check(findings)


@pytest.mark.skipif(not shutil.which("unshare") or os.geteuid() != 0, reason="needs unshare and root for a network namespace")
def test_cli_without_a_unit_config_says_it_does_not_browse(tmp_path: Path) -> None:
    """The real CLI in a network namespace of its own (only a down loopback), so that even a
    doctor that did browse could reach no real interface."""
    done = subprocess.run(["unshare", "--net", sys.executable, "-m", "appliance.cli", "doctor", "--config",
                           str(tmp_path / "missing.toml"), "--timeout", "1"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "[skip] server: no usable unit config, so no server to check and no mDNS browse" in done.stdout
    assert "discovery" not in done.stdout
    assert "Traceback" not in done.stderr
