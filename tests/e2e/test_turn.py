"""ICE servers come from the signaling server's welcome, TURN credentials included.

coturn (Debian's) runs inside the test's lo-only namespace in ``use-auth-secret`` mode; the
signaling server is configured with its URL and secret and mints a credential per session. The
pages are opened with ``?ice=relay`` (relay candidates only), so the call can only work if each
browser allocates on coturn with the welcome's servers and credentials.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(180),
    pytest.mark.skipif(shutil.which("turnserver") is None, reason="coturn missing: scripts/setup installs it"),
]

TURN_PORT = 3478   # inside the test's own namespace: always free


@pytest.fixture
async def coturn(netns, tmp_path):
    secret = secrets.token_hex(32)
    log = tmp_path / "turn.log"
    cmd = [*netns.exec_prefix(), "turnserver", "-n", "--no-cli", "--no-tls", "--no-dtls",
           "--listening-ip=127.0.0.1", f"--listening-port={TURN_PORT}", "--relay-ip=127.0.0.1",
           "--min-port=49160", "--max-port=49260", "--use-auth-secret", f"--static-auth-secret={secret}",
           "--realm=wallmesh.test", "--allow-loopback-peers", "--no-stdout-log",
           f"--log-file={log}", f"--pidfile={tmp_path / 'turn.pid'}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(150):
            text = "".join(p.read_text(errors="replace") for p in tmp_path.glob("turn*.log"))
            if proc.poll() is not None or "listener opened on" in text or "Total General servers" in text:
                break
            await asyncio.sleep(0.1)
        assert proc.poll() is None, f"coturn did not start: {text[-2000:]}"
        yield secret
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(asyncio.to_thread(proc.wait), 10)
        except TimeoutError:
            proc.kill()
            proc.wait()


async def test_browsers_use_the_turn_server_from_welcome(browser, netns, server_factory, coturn):
    from appliance.signaling.config import Ice

    server = await server_factory(ice=Ice(turn_urls=(f"turn:127.0.0.1:{TURN_PORT}?transport=udp",), turn_secret=coturn))
    await netns.expose_host_port(server.port)
    pages = []
    for name, password in (("alice", "correct horse battery"), ("bob", "staple 42 staple")):
        page = await browser.new_page(server.url + "/?ice=relay")
        await page.sign_in_and_join(name, password, "e2e-turn")
        pages.append(page)
    alice, bob = pages
    bob_id = (await bob.eval("wallmesh.state()"))["peer_id"]

    async def relayed():
        stats = (await alice.eval("wallmesh.stats()"))["peers"].get(bob_id)
        ok = stats and (stats["video"] or {}).get("framesDecoded", 0) > 10
        return stats if ok else None

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    stats = None
    while loop.time() < deadline and not (stats := await relayed()):
        await asyncio.sleep(0.5)
    assert stats, f"no video through the relay: {await alice.eval('wallmesh.stats()')}"
    # Only relay candidates were offered, and the media path runs through coturn's relay ports.
    assert stats["gathered"]["relay"] > 0 and stats["gathered"]["host"] == 0, stats["gathered"]
    assert stats["candidatePair"]["localType"] == "relay", stats["candidatePair"]
    assert 49160 <= int(stats["candidatePair"]["local"].rsplit(":", 1)[1]) <= 49260
