"""The browser client against hostile web pages and hostile participants.

* A page on another origin (a second aiohttp app on its own loopback port, which the
  browser treats as a different site) tries to open the server's ``/ws`` and to POST a
  login: both are refused before anything happens, while the real page works.
* The real page cannot be framed by another page (``frame-ancestors 'none'``).
* Participants whose names are markup (``<img onerror>``, ``<script>``, ``"><svg onload>``)
  are shown as that literal text in their tile and in the join notice; nothing runs.
* A room name that is markup gets a clean refusal in the page and on the wire.
* After sign-in and join the token is in no URL the page requested and not in
  ``localStorage`` (it lives in this tab's ``sessionStorage`` only, and goes out in the
  ``hello`` frame).
* A hostile page opened on a wall unit's own machine aims the unit's loopback ``/status``
  and ``/actions/*`` (posts, a beacon, a form into a frame): the unit's call goes on.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiohttp import web

from appliance import protocol

pytestmark = [pytest.mark.timeout(180)]

HOSTILE_NAMES = [
    '<img src=x onerror="window.__pwned=1">',
    "<script>window.__pwned=2</script>",
    '"><svg onload="window.__pwned=3">',
]
HOSTILE_ROOM = "<img src=x onerror=window.__pwned=4>"


@pytest.fixture
async def hostile_site(netns):
    """Another web site on another loopback port: a plain page with no policy of its own."""
    app = web.Application()

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><title>elsewhere</title><p>a page on another origin</p>",
                            content_type="text/html")

    app.router.add_get("/", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    await netns.expose_host_port(port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _counter(url: str, name: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as res:
        text = await res.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


async def _open_elsewhere(browser, site_url: str, url: str):
    """A fresh tab showing ``url`` (a page that is not the wallmesh client)."""
    page = await browser.new_page(site_url + "/")
    await page.send("Page.navigate", {"url": url})
    await page.wait_for(f"location.href.startsWith({json.dumps(url)}) && document.readyState === 'complete'")
    return page


ATTACK = """(async () => {
  const server = %(server)s;
  const ws = await new Promise((resolve) => {
    const s = new WebSocket(server.replace("http", "ws") + "/ws");
    let opened = false;
    s.onopen = () => { opened = true; s.send(JSON.stringify({type: "ping", id: "x"})); };
    s.onclose = (e) => resolve({opened, code: e.code});
  });
  const login = JSON.stringify({username: "alice", password: %(password)s});
  const out = {ws};
  for (const [key, init] of [
      ["plain", {method: "POST", body: login}],
      ["json", {method: "POST", body: login, headers: {"Content-Type": "application/json"}}],
      ["no_cors", {method: "POST", body: login, mode: "no-cors"}]]) {
    try {
      const r = await fetch(server + "/api/auth/login", init);
      out[key] = r.type === "opaque" ? "opaque" : "read " + r.status + " " + (await r.text());
    } catch (e) { out[key] = "blocked"; }
  }
  return out;
})()"""


async def test_a_page_on_another_origin_cannot_use_the_server(browser, site, hostile_site):
    from .conftest import USERS

    evil = await _open_elsewhere(browser, site.url, hostile_site + "/")
    result = await evil.eval(ATTACK % {"server": json.dumps(site.url), "password": json.dumps(USERS["alice"])},
                             timeout=30)
    # the WebSocket never opened (refused before the upgrade), and no answer was readable
    assert result["ws"]["opened"] is False and result["ws"]["code"] == 1006, result
    assert result["plain"] == result["json"] == "blocked", result
    assert result["no_cors"] == "opaque", result
    # ... and nothing happened on the server: no login, no connection
    assert await _counter(site.url, "wallmesh_signal_logins_total") == 0
    assert not site.server.services.connections

    # the real page, same browser, same password: works
    page = await browser.new_page(site.url + "/")
    await page.sign_in_and_join("alice", USERS["alice"], "e2e-origin")
    assert await _counter(site.url, "wallmesh_signal_logins_total") == 1
    assert len(site.server.services.connections) == 1


async def test_the_page_cannot_be_framed(browser, site, hostile_site):
    evil = await _open_elsewhere(browser, site.url, hostile_site + "/")
    await evil.send("Log.enable")
    await evil.eval(f"""new Promise((resolve) => {{
        const f = document.createElement("iframe");
        f.onload = () => resolve(true);
        f.src = {json.dumps(site.url + "/")};
        document.body.appendChild(f);
        setTimeout(() => resolve(false), 10000);
    }})""")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    refused: list[str] = []
    while not refused and loop.time() < deadline:
        entries = [e["params"]["entry"].get("text", "") for e in browser.events(evil.session_id, "Log.entryAdded")]
        refused = [t for t in entries if "frame-ancestors" in t]
        await asyncio.sleep(0.2)
    assert refused, "the browser did not refuse to frame the page"
    # the framed document never ran the client
    targets = (await browser.send("Target.getTargets"))["targetInfos"]
    assert not [t for t in targets if t["type"] == "iframe" and t["url"].startswith(site.url)]


async def _participant(url: str, token: str, name: str, room: str):
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(f"{url}/ws")
    await ws.send_json({"type": "hello", "token": token, "name": name})
    assert (await ws.receive_json(timeout=5))["type"] == "welcome"
    await ws.send_json({"type": "join", "room": room})
    while (msg := await ws.receive_json(timeout=5))["type"] != "joined":
        pass
    return http, ws


async def test_names_that_are_markup_show_as_text_and_never_run(open_client, browser, site):
    room = "e2e-names"
    alice = await open_client("alice", room)
    tokens = site.server.tokens
    joined = []
    try:
        for i, name in enumerate(HOSTILE_NAMES):
            # the account name (the token's subject) is markup too, shown beside the display name
            token = tokens.issue("user", f"<b>acct{i}</b>", name, ["*"], 600)
            joined.append(await _participant(site.url, token, name, room))
            shown = protocol.clean_name(name)
            await alice.wait_for(
                f"[...document.querySelectorAll('#grid .name')].some(e => e.textContent === {json.dumps(shown)})")
            await alice.wait_for(
                f"[...document.querySelectorAll('#notices .notice')].some(e => e.textContent.includes({json.dumps(shown)}))")
        await asyncio.sleep(1.0)  # an onerror/onload would have fired by now
        assert await alice.eval("window.__pwned") is None
        assert await alice.eval("document.querySelectorAll('#grid img, #grid script, [onerror], [onload]').length") == 0
        accounts = await alice.eval("[...document.querySelectorAll('#grid .account')].map(e => e.textContent)")
        assert sorted(accounts) == [f"<b>acct{i}</b>" for i in range(len(HOSTILE_NAMES))]
        assert await alice.eval("document.querySelectorAll('#grid b').length") == 0
    finally:
        for http, ws in joined:
            await ws.close()
            await http.close()

    # a room name that is markup: a clean refusal in the lobby, nothing run
    from .conftest import USERS

    bob = await browser.new_page(site.url + "/")
    await bob.fill("#username", "bob")
    await bob.fill("#password", USERS["bob"])
    await bob.click("#signin-button")
    await bob.wait_for("!document.getElementById('view-lobby').hidden")
    await bob.fill("#room", HOSTILE_ROOM)
    await bob.click("#join-button")
    error = await bob.wait_for("!document.getElementById('join-error').hidden && document.getElementById('join-error').textContent")
    assert "lower-case letters" in error
    assert await bob.eval("window.__pwned") is None


async def test_a_room_name_that_is_markup_is_refused_on_the_wire(site):
    token = site.server.tokens.issue("user", "mallory", "mallory", ["*"], 600)
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{site.url}/ws") as ws:
        await ws.send_json({"type": "hello", "token": token})
        assert (await ws.receive_json(timeout=5))["type"] == "welcome"
        await ws.send_json({"type": "join", "room": HOSTILE_ROOM})
        error = await ws.receive_json(timeout=5)
        assert error["type"] == "error" and error["code"] == "bad_message" and error.get("ref") == "join"
        assert HOSTILE_ROOM not in json.dumps(error)  # the refusal does not echo it back
        await ws.send_json({"type": "ping", "id": "still-here"})
        assert (await ws.receive_json(timeout=5)) == {"type": "pong", "id": "still-here"}
    assert not site.server.services.hub.rooms


async def test_the_token_is_in_no_url_and_not_in_local_storage(browser, site):
    from .conftest import USERS

    page = await browser.new_page(site.url + "/")
    await page.send("Network.enable")
    await page.goto(site.url + "/")
    await page.sign_in_and_join("alice", USERS["alice"], "e2e-token")
    token = await page.eval("JSON.parse(sessionStorage.getItem('wallmesh.session')).token")
    assert token and token.count(".") == 2
    assert await page.eval("localStorage.length") == 0
    assert token not in await page.eval("document.cookie + location.href")

    urls = [e["params"]["request"]["url"] for e in browser.events(page.session_id, "Network.requestWillBeSent")]
    sockets = [e["params"]["url"] for e in browser.events(page.session_id, "Network.webSocketCreated")]
    assert any(u.endswith("/api/auth/login") for u in urls), urls
    assert sockets and all(u.endswith("/ws") for u in sockets), sockets
    for url in urls + sockets:
        assert token not in url and "token" not in url.lower(), url
    # it goes to the server in the hello frame instead
    sent = [e["params"]["response"]["payloadData"] for e in browser.events(page.session_id, "Network.webSocketFrameSent")]
    assert any(json.loads(f).get("type") == "hello" and json.loads(f).get("token") == token for f in sent)


CSRF = """(async () => {
  const unit = %(unit)s;
  const out = {};
  for (const action of ["hangup", "mute"]) {
    try { out[action] = (await fetch(unit + "/actions/" + action, {method: "POST", mode: "no-cors", body: "{}"})).type; }
    catch (e) { out[action] = "error"; }
  }
  out.beacon = navigator.sendBeacon(unit + "/actions/hangup", "{}");
  try { out.status = "read " + (await (await fetch(unit + "/status")).text()); } catch (e) { out.status = "blocked"; }
  // a form posted into a hidden frame: a plain navigation, no script needed on this page
  const frame = document.createElement("iframe");
  frame.name = "sink";
  document.body.appendChild(frame);
  const form = document.createElement("form");
  form.method = "POST"; form.action = unit + "/actions/hangup"; form.target = "sink";
  document.body.appendChild(form);
  await new Promise((resolve) => { frame.onload = resolve; form.submit(); setTimeout(resolve, 5000); });
  return out;
})()"""


async def _post_inside(netns, port: int, path: str) -> int:
    """A local tool's POST (no Origin, no body) to 127.0.0.1:``port`` inside the namespace."""
    reader, writer = await netns.open_inside(port)
    try:
        writer.write(f"POST {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    return int(raw.split(b" ", 2)[1])


async def test_a_page_on_the_units_machine_cannot_hang_up_its_call(netns, site, browser, open_client, hostile_site, tmp_path):
    """A browser on the unit's own machine opens a hostile page, which aims the unit's
    loopback status endpoint: posts, a beacon, a form into a frame, a read. The call goes on."""
    import sys

    units_helper = sys.modules["wallmesh_e2e_units"]
    if missing := units_helper.unit_daemon_missing():
        pytest.skip(missing)
    units = units_helper.Units(netns, site, tmp_path / "units", "e2e-csrf")
    try:
        await units.start(1)
        alice = await open_client("alice", "e2e-csrf")

        async def in_call():
            status = await units.status("unit-1")
            return status if status and status.get("state") == "in_call" and status.get("peers") else None

        await units_helper.until(in_call, 90, "the unit to be in a call with the browser")
        port = units_helper.STATUS_PORT_BASE + 1
        evil = await _open_elsewhere(browser, site.url, hostile_site + "/")
        result = await evil.eval(CSRF % {"unit": json.dumps(f"http://127.0.0.1:{port}")}, timeout=30)
        assert result["status"] == "blocked", result  # and the page could not read the unit's state
        await asyncio.sleep(3.0)
        status = await in_call()
        assert status is not None, await units.status("unit-1")
        assert status["muted"] is False
        assert await alice.eval("wallmesh.state().peers.length") == 1
        # the same action from a local tool does hang up: the attack would have shown
        assert await _post_inside(netns, port, "/actions/hangup") == 200
        await units_helper.until(lambda: _not_in_call(units), 20, "the unit to leave the call")
    finally:
        await units.close()


async def _not_in_call(units) -> bool:
    status = await units.status("unit-1")
    return bool(status) and status.get("state") != "in_call"
