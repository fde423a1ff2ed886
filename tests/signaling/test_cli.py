"""``wallmesh signal``, ``user`` and ``device`` as subprocesses, with and without a running server."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import jwt as pyjwt
import pytest

from appliance.signaling.tls import fingerprint_der

from .conftest import Client

WALLMESH = [sys.executable, "-m", "appliance.cli"]


def cli(*args: str, stdin: str = "", state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*WALLMESH, *args, "--state-dir", str(state)], input=stdin, capture_output=True, text=True, timeout=60)


class Running:
    """``wallmesh signal`` in a child process; reads the URL (and fingerprint) it prints."""

    def __init__(self, state: Path, *extra: str, verbose: int = 0) -> None:
        self.log = state.parent / f"signal-{id(self)}.log"
        self._log = open(self.log, "w")
        flags = ["-" + "v" * verbose] if verbose else []
        self.proc = subprocess.Popen(
            [*WALLMESH, *flags, "signal", "--state-dir", str(state), "--host", "127.0.0.1", "--port", "0", *extra],
            stdout=subprocess.PIPE, stderr=self._log, text=True,
        )
        self.url = ""
        self.fingerprint = None
        line = self.proc.stdout.readline().strip()
        assert line.startswith("listening on "), (line, self.log.read_text())
        self.url = line.removeprefix("listening on ")
        if self.url.startswith("https"):
            fp = self.proc.stdout.readline().strip()
            assert fp.startswith("fingerprint ")
            self.fingerprint = fp.removeprefix("fingerprint ")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGUSR1)  # stacks to the log, for the message below
            time.sleep(1)
            self.proc.kill()
            raise AssertionError("wallmesh signal did not stop on SIGTERM: " + self.log.read_text()[-3000:]) from None
        finally:
            self.proc.stdout.close()
            self._log.close()


async def _hello(http: aiohttp.ClientSession, server: Running, token: str) -> Client:
    """A WebSocket to the running server that has sent ``hello`` with ``token``."""
    client = Client(await http.ws_connect(server.url.replace("http", "ws") + "/ws"))
    await client.send({"type": "hello", "token": token})
    return client


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def test_admin_without_a_server(state: Path) -> None:
    assert cli("user", "add", "erin", "--rooms", "lobby,ops", stdin="long enough pw\n", state=state).returncode == 0
    listed = cli("user", "list", state=state)
    assert listed.returncode == 0 and "erin\trooms=lobby,ops" in listed.stdout
    dup = cli("user", "add", "erin", stdin="long enough pw\n", state=state)
    assert dup.returncode == 1 and "already exists" in dup.stderr
    assert cli("user", "remove", "erin", state=state).returncode == 0
    assert "erin" not in cli("user", "list", state=state).stdout
    missing = cli("user", "remove", "erin", state=state)
    assert missing.returncode == 1 and "no user" in missing.stderr
    token = cli("device", "token", "--ttl", "600", state=state)
    assert token.returncode == 0 and pyjwt.decode(token.stdout.strip(), options={"verify_signature": False})["kind"] == "enroll"
    assert not (state / "store.uri").exists()  # the CLI's own embedded store was stopped and unpublished


def test_bad_config_names_file_and_key(state: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "signal.toml"
    cfg.write_text("max_room_size = 100\n")
    out = cli("user", "list", "--config", str(cfg), state=state)
    assert out.returncode == 1
    assert str(cfg) in out.stderr and "max_room_size" in out.stderr and "from 2 to 32" in out.stderr


async def test_admin_beside_a_running_server_and_live_revoke(state: Path) -> None:
    server = Running(state)
    try:
        assert (state / "store.uri").exists()
        add = await asyncio.to_thread(cli, "user", "add", "frank", stdin="long enough pw\n", state=state)
        assert add.returncode == 0, add.stderr
        token = (await asyncio.to_thread(cli, "device", "token", state=state)).stdout.strip()
        assert pyjwt.decode(token, options={"verify_signature": False})["url"] == server.url
        async with aiohttp.ClientSession() as http:
            async with http.post(server.url + "/api/auth/login", json={"username": "frank", "password": "long enough pw"}) as r:
                assert r.status == 200
                frank_token = (await r.json())["token"]
            async with http.post(server.url + "/api/devices/enroll", json={"enrollment_token": token, "device_id": "pi-cli"}) as r:
                assert r.status == 201
                secret = (await r.json())["device_secret"]
            async with http.post(server.url + "/api/auth/device", json={"device_id": "pi-cli", "device_secret": secret}) as r:
                device_token = (await r.json())["token"]
            dev = await _hello(http, server, device_token)
            await dev.recv("welcome")
            assert "pi-cli" in (await asyncio.to_thread(cli, "device", "list", state=state)).stdout
            loop = asyncio.get_running_loop()

            async def closes_after_cli(client, *args: str) -> int:
                """Run the CLI in its own process; the client's close code, within 5 s of the start."""
                start = loop.time()
                done = await asyncio.to_thread(cli, *args, state=state)
                assert done.returncode == 0, done.stderr
                code = await client.expect_close(timeout=5)
                assert loop.time() - start < 5
                return code

            assert await closes_after_cli(dev, "device", "revoke", "pi-cli") == 4401
            # removing a user from another process closes that user's live connection too
            frank = await _hello(http, server, frank_token)
            await frank.recv("welcome")
            assert await closes_after_cli(frank, "user", "remove", "frank") == 4401
            late = await _hello(http, server, frank_token)
            assert (await late.recv())["code"] == "unauthorized"
    finally:
        assert server.stop() == 0
    assert not (state / "store.uri").exists()
    # after the server stopped, the CLI opens the same data itself
    listed = cli("device", "list", state=state)
    assert "pi-cli" in listed.stdout and "revoked" in listed.stdout


async def test_tls_fingerprint_printed_and_served(state: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "signal.toml"
    cfg.write_text("tls_on_loopback = true\n")
    server = Running(state, "--config", str(cfg))
    try:
        assert server.url.startswith("https://127.0.0.1:")
        der = ssl.PEM_cert_to_DER_cert((state / "tls" / "server.crt").read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n")
        assert server.fingerprint == fingerprint_der(der)
        assert len(server.fingerprint.split(":")) == 32
        pin = aiohttp.Fingerprint(hashlib.sha256(der).digest())
        async with aiohttp.ClientSession() as http:
            async with http.get(server.url + "/api/health", ssl=pin) as r:
                assert r.status == 200
            wrong = aiohttp.Fingerprint(hashlib.sha256(b"other").digest())
            with pytest.raises(aiohttp.ServerFingerprintMismatch):
                await http.get(server.url + "/api/health", ssl=wrong)
        key_mode = os.stat(state / "tls" / "server.key").st_mode & 0o777
        assert key_mode == 0o600
    finally:
        assert server.stop() == 0


def _store_pid(state: Path) -> int:
    return int((state / "store" / "nx-27017.pid").read_text().strip())


async def test_killed_server_leaves_no_store_behind(state: Path) -> None:
    server = Running(state)
    pid = _store_pid(state)
    assert Path(f"/proc/{pid}").exists()
    server.proc.kill()  # SIGKILL: no clean-up code runs in the server
    server.proc.wait(10)
    server.proc.stdout.close()
    server._log.close()
    for _ in range(100):
        if not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/status").read_text().find("State:\tZ") >= 0:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the embedded store outlived its killed server")
    # the state directory is usable again at once, by the CLI and by a new server
    assert cli("user", "add", "hana", stdin="long enough pw\n", state=state).returncode == 0
    again = Running(state)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(again.url + "/api/auth/login", json={"username": "hana", "password": "long enough pw"}) as r:
                assert r.status == 200
    finally:
        assert again.stop() == 0


def test_token_before_first_start_pins_the_certificate_the_server_will_serve(state: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "signal.toml"
    cfg.write_text('host = "127.0.0.1"\nport = 0\ntls_on_loopback = true\n')
    out = cli("device", "token", "--config", str(cfg), state=state)
    assert out.returncode == 0, out.stderr
    claims = pyjwt.decode(out.stdout.strip(), options={"verify_signature": False})
    assert claims["url"].startswith("https://127.0.0.1:")
    server = Running(state, "--config", str(cfg))
    try:
        assert server.fingerprint == claims["fp"]
    finally:
        assert server.stop() == 0


async def test_debug_logging_never_shows_a_password_hash(state: Path) -> None:
    """-vv is for operators reading logs; pymongo's DEBUG command log would print documents."""
    assert cli("user", "add", "gina", stdin="long enough pw\n", state=state).returncode == 0
    server = Running(state, verbose=2)
    try:
        async with aiohttp.ClientSession() as http:
            for password in ("long enough pw", "wrong password"):
                async with http.post(server.url + "/api/auth/login", json={"username": "gina", "password": password}) as r:
                    assert r.status in (200, 401)
            token = (await asyncio.to_thread(cli, "device", "token", state=state)).stdout.strip()
            async with http.post(server.url + "/api/devices/enroll", json={"enrollment_token": token, "device_id": "pi-log"}) as r:
                secret = (await r.json())["device_secret"]
            async with http.post(server.url + "/api/auth/device", json={"device_id": "pi-log", "device_secret": secret}) as r:
                assert r.status == 200
    finally:
        assert server.stop() == 0
    log = server.log.read_text()
    assert " DEBUG " in log  # -vv did turn debug logging on
    assert "$argon2" not in log and secret not in log and "long enough pw" not in log
