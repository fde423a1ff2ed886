"""The example coturn configuration is not an open relay.

Debian's coturn runs the example (its CHANGE-ME values filled for loopback,
where the "unit subnet" is 127.0.0.1) and aioice's TURN client talks to it:
no credential or a wrong one gets no allocation; a credential minted the way
the signaling server mints it does; a relay towards the unit subnet is
allowed and towards any other private address refused.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from appliance.signaling.turn import turn_credentials

EXAMPLE = Path(__file__).resolve().parents[2] / "systemd/turnserver.conf.example"

pytestmark = pytest.mark.skipif(shutil.which("turnserver") is None, reason="coturn missing: run scripts/setup")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def coturn(tmp_path: Path):
    port, secret = free_udp_port(), secrets.token_hex(32)
    relay_low = 40000 + secrets.randbelow(20000)
    text = EXAMPLE.read_text()
    for old, new in {
        "CHANGE-ME-SERVER-ADDRESS": "127.0.0.1",
        "CHANGE-ME-32-BYTES-OF-HEX": secret,
        "wallmesh.CHANGE-ME.example": "wallmesh.test",
        "CHANGE-ME-UNIT-SUBNET-FIRST-CHANGE-ME-UNIT-SUBNET-LAST": "127.0.0.1-127.0.0.1",
        "listening-port=3478": f"listening-port={port}",
        "min-port=49160": f"min-port={relay_low}",
        "max-port=49560": f"max-port={relay_low + 50}",
        "log-file=syslog": f"log-file={tmp_path / 'turn.log'}",
    }.items():
        assert old in text, old
        text = text.replace(old, new)
    assert not [line for line in text.splitlines() if "CHANGE-ME" in line and not line.startswith("#")]
    conf = tmp_path / "turnserver.conf"
    # coturn refuses loopback peers outright unless told otherwise; here the loopback
    # address stands in for the unit subnet, so the test (only) lets it through.
    conf.write_text(text + f"pidfile={tmp_path / 'turn.pid'}\nno-tls\nno-dtls\nno-stdout-log\nallow-loopback-peers\n")
    proc = subprocess.Popen(["turnserver", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and proc.poll() is None:
        if any("listener opened on" in p.read_text(errors="replace") or "Total General servers" in p.read_text(errors="replace")
               for p in tmp_path.glob("turn*.log")):
            break
        time.sleep(0.1)
    assert proc.poll() is None, "\n".join(p.read_text(errors="replace")[-2000:] for p in tmp_path.glob("turn*.log"))
    try:
        yield ("127.0.0.1", port), secret
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def allocate(server, username, password):
    from aioice.turn import create_turn_endpoint

    return await asyncio.wait_for(
        create_turn_endpoint(asyncio.DatagramProtocol, server_addr=server, username=username, password=password), 10)


async def test_no_open_relay(coturn) -> None:
    from aioice.stun import TransactionFailed

    server, secret = coturn
    for username, password in ((None, None), ("1999999999:unit", "wrong"), *[turn_credentials("other-secret", "unit", 600)]):
        with pytest.raises((TransactionFailed, ConnectionError, asyncio.TimeoutError)):
            await allocate(server, username, password)

    username, password = turn_credentials(secret, "unit-1", 600)
    transport, _ = await allocate(server, username, password)
    try:
        relayed = transport.get_extra_info("sockname")
        assert relayed[0] == "127.0.0.1"
        turn = transport._TurnTransport__inner_protocol  # aioice keeps the TURN client protocol private
        # a peer on the unit subnet may be relayed to
        await asyncio.wait_for(turn.channel_bind(0x4000, ("127.0.0.1", 9)), 10)
        # any other private or loopback address may not
        for number, peer in ((0x4001, "10.1.2.3"), (0x4002, "192.168.1.20"), (0x4003, "127.0.0.2")):
            with pytest.raises(TransactionFailed) as refused:
                await asyncio.wait_for(turn.channel_bind(number, (peer, 9)), 10)
            assert refused.value.response.attributes["ERROR-CODE"][0] == 403, peer
    finally:
        transport.close()
