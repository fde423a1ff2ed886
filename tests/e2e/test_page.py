"""The browser client page itself: served whole by the signaling server, sign-in and its failures."""

from __future__ import annotations

import json
import re

import aiohttp
import pytest

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
    assert {"index.html", "app.js", "style.css", "signaling.js", "peer.js", "icons.js", "session.js", "tiles.js"} <= set(seen)


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
    assert message == "That room is full."
    state = await late.eval("wallmesh.state()")
    assert state["room"] is None and state["peers"] == []
    assert await late.eval("document.getElementById('view-call').hidden")
