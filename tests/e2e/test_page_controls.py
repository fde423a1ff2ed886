"""The call's controls and what the page says: Leave and Rejoin, a lost server, join/leave notices.

Real Chromium pages (fake camera and microphone) against the real signaling server. A small
script installed before the page's own records every RTCPeerConnection and every WebSocket
close the page sees, so the tests can check what Leave really released.
"""

from __future__ import annotations

import asyncio

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

# Runs before the client's modules: keeps a reference to every connection the page opens.
RECORDER = """
window.__pcs = [];
window.__wsCloses = [];
const NativePeerConnection = window.RTCPeerConnection;
window.RTCPeerConnection = class extends NativePeerConnection {
  constructor(...args) { super(...args); window.__pcs.push(this); }
};
const NativeWebSocket = window.WebSocket;
window.WebSocket = class extends NativeWebSocket {
  constructor(...args) {
    super(...args);
    this.addEventListener("close", (e) => window.__wsCloses.push({ code: e.code, clean: e.wasClean }));
  }
};
"""

SHOWN = "(() => { const el = document.getElementById(%r); return !!el && !el.hidden && el.offsetHeight > 0; })()"


# The test users conftest.py creates.
PASSWORDS = {"alice": "correct horse battery", "bob": "staple 42 staple"}


async def _open(browser, site, username: str, room: str, init_script: str | None = None):
    page = await browser.new_page(site.url + "/", init_script=init_script)
    await page.sign_in_and_join(username, PASSWORDS[username], room)
    return page


async def _video_from(page, peer_id: str, more_than: int = 0, timeout: float = 40.0) -> int:
    """Waits until ``page`` has decoded more than ``more_than`` + 5 frames from ``peer_id``."""
    return await page.wait_for(
        f"(async () => {{ const p = (await wallmesh.stats()).peers[{peer_id!r}];"
        f" const n = p && p.video ? p.video.framesDecoded : 0; return n > {more_than + 5} ? n : 0; }})()",
        timeout=timeout)


async def test_leave_releases_camera_and_connections_then_rejoin_works(browser, site):
    alice = await _open(browser, site, "alice", "e2e-leave", init_script=RECORDER)
    bob = await _open(browser, site, "bob", "e2e-leave")
    alice_id = (await alice.eval("wallmesh.state()"))["peer_id"]
    bob_id = (await bob.eval("wallmesh.state()"))["peer_id"]
    await _video_from(bob, alice_id)
    await _video_from(alice, bob_id)
    await alice.eval("window.__tracks = document.getElementById('self-video').srcObject.getTracks()")
    assert await alice.eval("window.__tracks.map((t) => t.kind).sort()") == ["audio", "video"]
    assert await alice.eval("window.__pcs.length") >= 1

    await alice.click("#btn-leave")
    await alice.wait_for(SHOWN % "view-left")
    text = await alice.eval("document.querySelector('main').innerText")
    assert "You left" in text and "Rejoin" in text
    assert await alice.eval("document.getElementById('view-call').hidden")
    # The camera and the microphone are released: every track alice captured has ended.
    assert await alice.eval("window.__tracks.map((t) => t.readyState)") == ["ended", "ended"]
    assert (await alice.eval("wallmesh.state()"))["capturing"] == []
    # Every peer connection is closed.
    assert await alice.eval("window.__pcs.map((pc) => pc.connectionState)") == \
        ["closed"] * await alice.eval("window.__pcs.length")
    # The signaling connection was closed on purpose, with a clean close handshake.
    closes = await alice.wait_for("window.__wsCloses.length && window.__wsCloses")
    assert closes == [{"code": 1000, "clean": True}]
    await bob.wait_for("wallmesh.state().peers.length === 0", timeout=10)
    for _ in range(50):    # the server lets go of alice's connection (bob's is the one left)
        if len(site.server.services.connections) == 1:
            break
        await asyncio.sleep(0.1)
    assert len(site.server.services.connections) == 1

    await alice.click("#rejoin-button")
    await alice.wait_for("!document.getElementById('view-call').hidden && wallmesh.state().signaling === 'ready'"
                         " && wallmesh.state().peers.length === 1")
    state = await alice.eval("wallmesh.state()")
    assert state["room"] == "e2e-leave"
    assert state["peer_id"] not in (None, alice_id)
    assert state["capturing"] == ["audio", "video"]
    await bob.wait_for(f"wallmesh.state().peers.includes({state['peer_id']!r})")
    await _video_from(bob, state["peer_id"])
    await _video_from(alice, bob_id)


async def test_a_lost_server_is_said_in_the_main_area_and_the_page_rejoins(browser, site):
    alice = await _open(browser, site, "alice", "e2e-lost")
    old_id = (await alice.eval("wallmesh.state()"))["peer_id"]
    assert not await alice.eval(SHOWN % "outage")

    await site.stop()
    await alice.wait_for(SHOWN % "outage", timeout=30)
    outage = await alice.eval("""(() => {
      const el = document.getElementById('outage');
      const stage = document.querySelector('#view-call .stage').getBoundingClientRect();
      return { text: el.innerText, inMain: document.querySelector('main').contains(el),
               width: el.getBoundingClientRect().width, stage: stage.width };
    })()""")
    assert "unreachable" in outage["text"] and "Retrying" in outage["text"], outage
    assert outage["inMain"] and outage["width"] >= outage["stage"] / 2, outage
    await asyncio.sleep(2.0)   # a failed retry or two later it still says so
    assert await alice.eval(SHOWN % "outage")

    await site.start()          # same port, same keys: the page's token is still good
    await alice.wait_for("wallmesh.state().signaling === 'ready' && wallmesh.state().room === 'e2e-lost'"
                         f" && wallmesh.state().peer_id !== {old_id!r}", timeout=40)
    await alice.wait_for(f"!{SHOWN % 'outage'}")
    assert await alice.eval(SHOWN % "view-call")
    # Back in the room for real: a newcomer finds alice there.
    bob = await _open(browser, site, "bob", "e2e-lost")
    assert (await bob.eval("wallmesh.state()"))["peers"] == [(await alice.eval("wallmesh.state()"))["peer_id"]]


async def test_rejoin_while_the_server_is_down_says_so_in_the_lobby(browser, site):
    alice = await _open(browser, site, "alice", "e2e-rejoin-down")
    await alice.click("#btn-leave")
    await alice.wait_for(SHOWN % "view-left")
    await site.stop()
    await alice.click("#rejoin-button")
    message = await alice.wait_for(f"{SHOWN % 'join-error'} && document.getElementById('join-error').textContent",
                                   timeout=30)
    assert "could not reach the server" in message
    assert await alice.eval(SHOWN % "view-lobby")
    assert await alice.eval("document.getElementById('room').value") == "e2e-rejoin-down"   # ready to try again
    assert (await alice.eval("wallmesh.state()"))["signaling"] == "closed"
    await site.start()
    await alice.click("#join-button")
    await alice.wait_for("wallmesh.state().signaling === 'ready' && wallmesh.state().room === 'e2e-rejoin-down'", timeout=30)


async def test_join_and_leave_notices_appear_and_fade(browser, site):
    alice = await _open(browser, site, "alice", "e2e-notices")
    region = await alice.eval("(() => { const r = document.getElementById('notices');"
                              " return { role: r.getAttribute('role'), live: r.getAttribute('aria-live'),"
                              " inCall: document.getElementById('view-call').contains(r) }; })()")
    assert region == {"role": "status", "live": "polite", "inCall": True}
    notices = "[...document.querySelectorAll('#notices .notice')].map((n) => n.textContent)"
    assert await alice.eval(notices) == []

    bob = await _open(browser, site, "bob", "e2e-notices")
    await alice.wait_for(f"{notices}.includes('bob joined')", timeout=15)
    assert await bob.eval(notices) == []   # nobody joined after bob
    await bob.click("#btn-leave")
    await alice.wait_for(f"{notices}.includes('bob left')", timeout=15)
    # They go away by themselves after a few seconds.
    await alice.wait_for(f"{notices}.length === 0", timeout=15)


async def test_an_account_is_shown_beside_a_different_display_name(browser, site):
    """Peer entries may carry the account the server knows (user or device): shown when it
    differs from the display name, absent or equal it adds nothing."""
    alice = await _open(browser, site, "alice", "e2e-account")
    got = await alice.eval("""import('./tiles.js').then((m) => {
      const shown = (info) => {
        const tile = m.addTile({ kind: 'user', ...info });
        const out = { account: tile.querySelector('.account').textContent, caption: tile.querySelector('figcaption').innerText,
                      notice: m.displayName(info) };
        tile.remove();
        return out;
      };
      return { differs: shown({ peer_id: 'p1', name: 'Boardroom', account: 'unit-7' }),
               same: shown({ peer_id: 'p2', name: 'carol', account: 'carol' }),
               missing: shown({ peer_id: 'p3', name: 'dave' }) };
    })""")
    assert got["differs"]["account"] == "unit-7"
    assert "Boardroom" in got["differs"]["caption"] and "unit-7" in got["differs"]["caption"]
    assert got["differs"]["notice"] == "Boardroom (unit-7)"
    assert got["same"] == {"account": "", "caption": "carol", "notice": "carol"}
    assert got["missing"] == {"account": "", "caption": "dave", "notice": "dave"}


# Runs before the client's modules: keeps every track getUserMedia hands the page.
CAPTURES = """
window.__captured = [];
const nativeGetUserMedia = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = async (constraints) => {
  const stream = await nativeGetUserMedia(constraints);
  window.__captured.push(...stream.getTracks());
  return stream;
};
"""


async def test_a_quick_join_captures_once_and_leave_releases_it(browser, site):
    """Join pressed while the lobby is still opening the camera: one capture, and Leave ends it all."""
    page = await browser.new_page(site.url + "/", init_script=CAPTURES)
    await page.wait_for("!document.getElementById('view-signin').hidden")
    await page.fill("#username", "alice")
    await page.fill("#password", PASSWORDS["alice"])
    await page.fill("#room", "e2e-quick")
    # Sign in, and press Join the moment the lobby appears (its camera preview still opening).
    await page.eval("""new Promise((resolve) => {
      const lobby = document.getElementById('view-lobby');
      new MutationObserver((_, observer) => {
        if (lobby.hidden) return;
        observer.disconnect();
        document.getElementById('join-button').click();
        resolve();
      }).observe(lobby, { attributes: true });
      document.getElementById('signin-button').click();
    })""")
    await page.wait_for("!document.getElementById('view-call').hidden && wallmesh.state().signaling === 'ready'")
    await page.wait_for("wallmesh.state().capturing.length === 2")
    assert await page.eval("window.__captured.map((t) => t.kind).sort()") == ["audio", "video"]
    await page.click("#btn-leave")
    await page.wait_for(SHOWN % "view-left")
    assert await page.eval("window.__captured.map((t) => t.readyState)") == ["ended", "ended"]
