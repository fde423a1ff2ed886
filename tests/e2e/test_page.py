"""The browser client page itself: served whole by the signaling server, sign-in and its failures."""

from __future__ import annotations

import json
import re

import aiohttp
import pytest

from appliance import protocol
from appliance.signaling.webclient import STATIC_DIR

pytestmark = [pytest.mark.timeout(120)]

ASSET = re.compile(r"""(?:src|href)="([^"]+)"|from\s+"(\./[^"]+)"|import\(\s*"(\./[^"]+)"\s*\)""")


async def test_client_is_served_whole_with_nothing_from_outside(signal_server):
    """Every file the page loads comes from the server itself: no CDN, no external URL."""
    seen: dict[str, str] = {}
    queue = ["index.html"]
    async with aiohttp.ClientSession() as http:
        async with http.get(signal_server.url + "/") as res:
            assert res.status == 200
            assert res.content_type == "text/html"
        while queue:
            name = queue.pop()
            if name in seen:
                continue
            async with http.get(f"{signal_server.url}/{name}") as res:
                assert res.status == 200, name
                body = await res.text()
                if name.endswith(".js"):
                    assert res.content_type in ("application/javascript", "text/javascript"), name
                elif name.endswith(".css"):
                    assert res.content_type == "text/css", name
            seen[name] = body
            assert not re.search(r"https?://|wss?://|//cdn", body), f"{name} refers to something outside the server"
            for match in ASSET.finditer(body):
                ref = next(g for g in match.groups() if g)
                if ref.startswith("data:"):
                    continue
                queue.append(ref.removeprefix("./"))
    assert {"index.html", "app.js", "style.css", "signaling.js", "peer.js", "icons.js", "session.js", "tiles.js",
            "media.js", "devices.js", "notices.js", "protocol.js"} <= set(seen)


async def test_wrong_password_is_explained_then_sign_in_works(browser, site):
    page = await browser.new_page(site.url + "/")
    await page.fill("#username", "alice")
    await page.fill("#password", "not her password")
    await page.click("#signin-button")
    message = await page.wait_for("!document.getElementById('signin-error').hidden"
                                  " && document.getElementById('signin-error').textContent")
    assert "Wrong username or password" in message
    assert await page.eval("!document.getElementById('view-lobby').hidden") is False
    # The token is never written anywhere the page would show it, and a failed try stores nothing.
    assert await page.eval("sessionStorage.length") == 0

    await page.fill("#password", "correct horse battery")
    await page.click("#signin-button")
    await page.wait_for("!document.getElementById('view-lobby').hidden")
    assert await page.eval("document.getElementById('who').textContent") == "alice"
    assert await page.eval("document.getElementById('password').value") == ""


async def test_a_refused_token_sends_the_user_back_to_sign_in(browser, site):
    """A session the server no longer accepts (expired, key rotated) ends at the sign-in form."""
    page = await browser.new_page(site.url + "/")
    forged = {"token": "not.a.jwt", "name": "alice", "expiresAt": 4102444800000}
    await page.eval(f"sessionStorage.setItem('wallmesh.session', {json.dumps(json.dumps(forged))})")
    await page.goto(site.url + "/?room=e2e-forged")
    await page.wait_for("!document.getElementById('view-lobby').hidden")
    assert await page.eval("document.getElementById('room').value") == "e2e-forged"
    await page.click("#join-button")
    message = await page.wait_for("!document.getElementById('view-signin').hidden"
                                  " && document.getElementById('signin-error').textContent", timeout=15)
    assert "sign in again" in message
    assert await page.eval("sessionStorage.getItem('wallmesh.session')") is None
    assert (await page.eval("wallmesh.state()"))["capturing"] == []   # back at sign-in, nothing stays captured


async def test_a_full_room_is_explained_in_the_lobby(browser, netns, server_factory):
    server = await server_factory(max_room_size=2)
    await netns.expose_host_port(server.port)
    for name, password in (("alice", "correct horse battery"), ("bob", "staple 42 staple")):
        page = await browser.new_page(server.url + "/")
        await page.sign_in_and_join(name, password, "e2e-full")
    late = await browser.new_page(server.url + "/")
    await late.wait_for("!document.getElementById('view-signin').hidden")
    await late.fill("#username", "mallory")
    await late.fill("#password", "not so secret")
    await late.click("#signin-button")
    await late.wait_for("!document.getElementById('view-lobby').hidden")
    await late.fill("#room", "e2e-full")
    await late.click("#join-button")
    message = await late.wait_for("!document.getElementById('join-error').hidden"
                                  " && document.getElementById('join-error').textContent", timeout=15)
    assert message == "That room is full (2 participants at most)."  # the size from this server's welcome
    state = await late.eval("wallmesh.state()")
    assert state["room"] is None and state["peers"] == []
    assert await late.eval("document.getElementById('view-call').hidden")


def test_the_page_keeps_no_copy_of_the_protocol_constants():
    """Room rule, close codes and limits live in appliance.protocol; the files only import them."""
    for path in STATIC_DIR.iterdir():
        text = path.read_text()
        for copy in ("a-z0-9", "{0,62}", "4401", "4403", "4429", "4400", "65536", "64 * 1024"):
            assert copy not in text, f"{path.name} carries its own {copy!r}"


ROOM_SAMPLES = ["a", "board-room-2", "0", "a" * 63, "a" * 64, "-lead", "Upper", "a_b", "a b", "", "a\n", "ä"]


async def test_served_protocol_module_matches_the_server(browser, site):
    """protocol.js is rendered from appliance.protocol: the page's room rule is the server's."""
    page = await browser.new_page(site.url + "/")
    got = await page.eval(
        "import('./protocol.js').then((m) => ({"
        f" rooms: {json.dumps(ROOM_SAMPLES)}.map((r) => m.ROOM_RE.test(r)),"
        " max: m.MAX_ROOM_CHARS, close: m.CLOSE, version: m.PROTOCOL_VERSION }))")
    assert got["rooms"] == [protocol.valid_room(r) for r in ROOM_SAMPLES]
    assert got["max"] == protocol.MAX_ROOM_CHARS
    assert got["close"] == {name.upper(): code for name, code in protocol.CLOSE_CODES.items()}
    assert got["version"] == protocol.VERSION
    assert await page.eval("document.getElementById('room').maxLength") == protocol.MAX_ROOM_CHARS


async def test_a_room_name_the_server_would_refuse_is_explained_before_connecting(browser, site):
    page = await browser.new_page(site.url + "/")
    await page.wait_for("!document.getElementById('view-signin').hidden")
    await page.fill("#username", "alice")
    await page.fill("#password", "correct horse battery")
    await page.click("#signin-button")
    await page.wait_for("!document.getElementById('view-lobby').hidden")
    await page.fill("#room", "-lead")
    await page.click("#join-button")
    message = await page.wait_for("!document.getElementById('join-error').hidden"
                                  " && document.getElementById('join-error').textContent")
    assert message == f"Use lower-case letters, digits and dashes (up to {protocol.MAX_ROOM_CHARS})."
    assert (await page.eval("wallmesh.state()"))["signaling"] == "closed"  # no connection was opened for it
    assert site.server.services.connections == set()


async def test_frames_over_the_welcome_limit_are_refused_in_the_page(browser, site):
    """The client holds the frame size the welcome gave: a bigger frame never leaves the page."""
    page = await browser.new_page(site.url + "/")
    got = await page.eval("""(async () => {
      const { SignalingClient } = await import('./signaling.js');
      const res = await fetch('/api/auth/login', { method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ username: 'alice', password: 'correct horse battery' }) });
      const { token } = await res.json();
      const url = new URL('ws', location.href); url.protocol = 'ws:';
      const client = new SignalingClient({ url: url.href, token, name: 'probe' });
      await client.connect();
      const errors = [];
      client.addEventListener('error', (e) => errors.push(e.detail));
      const max = client.limits.max_frame_bytes;
      const frame = (n) => ({ type: 'signal', to: 'nobody', data: { sdp: { type: 'offer', sdp: 'x'.repeat(n) } } });
      const big = client.send(frame(max));
      const small = client.send(frame(100));
      await new Promise((r) => setTimeout(r, 500));   // the server's answer to the small one
      client.close();
      return { limits: client.limits, big, small, errors };
    })()""")
    assert got["limits"] == {"max_room_size": site.server.config.max_room_size, "max_frame_bytes": protocol.MAX_FRAME_BYTES}
    assert got["big"] is False and got["small"] is True
    too_large, answer = got["errors"]
    assert too_large["code"] == "too_large" and too_large["ref"] == "signal"
    assert answer == {"type": "error", "code": "not_in_room", "message": "join a room before signaling", "ref": "signal"}


CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__cspViolations.push(e.violatedDirective + " " + (e.blockedURI || "inline")));
"""


async def test_the_page_works_under_its_content_security_policy(browser, site):
    """The server's CSP lets the page sign in and join (its own scripts, styles, fetch and
    WebSocket) with no violation, while an injected inline script does not run."""
    async with aiohttp.ClientSession() as http, http.get(site.url + "/") as res:
        csp = res.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    page = await browser.new_page(site.url + "/", init_script=CSP_WATCH)
    await page.sign_in_and_join("alice", "correct horse battery", "e2e-csp")
    assert await page.eval("getComputedStyle(document.querySelector('.topbar')).display") == "flex"  # style.css applied
    assert await page.eval("window.__cspViolations") == []
    ran = await page.eval("""(() => {
        const s = document.createElement("script");
        s.textContent = "window.__injected = true";
        document.body.appendChild(s);
        return window.__injected === true;
    })()""")
    assert ran is False
    await page.wait_for("window.__cspViolations.length > 0")
    assert all(v.startswith("script-src") for v in await page.eval("window.__cspViolations"))
