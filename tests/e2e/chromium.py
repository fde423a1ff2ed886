"""Headless Debian Chromium driven over the DevTools protocol, for the browser client's tests.

Playwright and friends download their own browsers; these tests use the distribution's
``/usr/bin/chromium`` instead and talk to it with a small DevTools client over aiohttp
websockets (only ``Runtime.evaluate``, ``Page.*`` and ``Target.*`` are needed).

The browser runs with a fake camera and microphone and permission prompts answered. For
WebRTC it runs inside a network namespace that holds only ``lo`` (see ``netns.py``):
``--allow-loopback-in-peer-connection`` makes Chromium gather candidates on ``lo`` (it skips
loopback otherwise), and with the mDNS obfuscation of host candidates turned off those
candidates carry the plain ``127.0.0.1`` address that wall units (aiortc) can reach.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = os.environ.get("WALLMESH_CHROMIUM", "/usr/bin/chromium")

FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--metrics-recording-only",
    "--password-store=basic",
    "--use-mock-keychain",
    # media: a fake camera (moving test pattern) and microphone, no permission prompts
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    # keep every page at full speed although none is "visible"
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    # WebRTC on loopback only: gather on lo, show real addresses instead of .local names
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns,Translate,MediaRouter,OptimizationHints",
    "--force-webrtc-ip-handling-policy=default_public_and_private_interfaces",
    "--window-size=1280,800",
]


class CdpError(RuntimeError):
    """A DevTools command failed, or a page-side expression threw."""


class Browser:
    """One Chromium process and its DevTools websocket; ``close()`` is idempotent."""

    def __init__(self, proc: subprocess.Popen, profile: Path, session: aiohttp.ClientSession,
                 ws: aiohttp.ClientWebSocketResponse) -> None:
        self.proc = proc
        self.profile = profile
        self._http = session
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._events: dict[str | None, list[dict]] = {}
        self._reader = asyncio.create_task(self._read())
        self._closed = False

    @classmethod
    async def launch(cls, netns=None, extra_flags: list[str] | None = None, timeout: float = 30.0) -> "Browser":
        """Starts Chromium (inside ``netns`` when given) and connects to its DevTools endpoint."""
        if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
            raise FileNotFoundError(f"{CHROMIUM} not found (scripts/setup installs Debian's chromium)")
        profile = Path(tempfile.mkdtemp(prefix="wallmesh-chromium-"))
        prefix = netns.exec_prefix() if netns is not None else []
        args = [*prefix, CHROMIUM, *FLAGS, *(extra_flags or []), f"--user-data-dir={profile}",
                "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1", "about:blank"]
        log = open(profile / "chromium.log", "wb")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        port_file = profile / "DevToolsActivePort"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if port_file.exists():
                lines = port_file.read_text().splitlines()
                if len(lines) >= 2:
                    break
            if proc.poll() is not None or loop.time() > deadline:
                _kill(proc)
                text = (profile / "chromium.log").read_text(errors="replace")[-2000:]
                shutil.rmtree(profile, ignore_errors=True)
                raise RuntimeError(f"chromium did not start: {text}")
            await asyncio.sleep(0.1)
        port = int(lines[0].strip())
        if netns is not None:
            port = await netns.reach_inside_port(port)
        url = f"ws://127.0.0.1:{port}{lines[1].strip()}"
        session = aiohttp.ClientSession()
        ws = await session.ws_connect(url, max_msg_size=0)
        return cls(proc, profile, session, ws)

    async def _read(self) -> None:
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data:
                fut = self._pending.pop(data["id"], None)
                if fut and not fut.done():
                    if "error" in data:
                        fut.set_exception(CdpError(f"{data['error'].get('message')}"))
                    else:
                        fut.set_result(data.get("result", {}))
            else:
                self._events.setdefault(data.get("sessionId"), []).append(data)
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(CdpError("DevTools connection closed"))

    async def send(self, method: str, params: dict | None = None, session_id: str | None = None,
                   timeout: float = 30.0) -> dict:
        msg_id = next(self._ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session_id:
            msg["sessionId"] = session_id
        fut = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        await self._ws.send_str(json.dumps(msg))
        return await asyncio.wait_for(fut, timeout)

    def events(self, session_id: str | None, method: str) -> list[dict]:
        return [e for e in self._events.get(session_id, []) if e.get("method") == method]

    async def new_page(self, url: str, *, init_script: str | None = None) -> "Page":
        """Opens ``url`` in a fresh browser context (own storage), as a separate window."""
        ctx = await self.send("Target.createBrowserContext", {"disposeOnDetach": True})
        target = await self.send("Target.createTarget", {
            "url": "about:blank", "browserContextId": ctx["browserContextId"], "newWindow": True})
        attached = await self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        page = Page(self, target["targetId"], attached["sessionId"])
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        if init_script:
            await page.send("Page.addScriptToEvaluateOnNewDocument", {"source": init_script})
        await page.goto(url)
        return page

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.wait_for(self.send("Browser.close"), 5)
        except Exception:  # noqa: BLE001 - the process is killed below either way
            pass
        await self._ws.close()
        await self._http.close()
        self._reader.cancel()
        await asyncio.to_thread(_kill, self.proc)
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    """One tab, addressed through a flattened DevTools session."""

    def __init__(self, browser: Browser, target_id: str, session_id: str) -> None:
        self.browser = browser
        self.target_id = target_id
        self.session_id = session_id

    async def send(self, method: str, params: dict | None = None, timeout: float = 30.0) -> dict:
        return await self.browser.send(method, params, self.session_id, timeout)

    async def goto(self, url: str, timeout: float = 30.0) -> None:
        await self.send("Page.navigate", {"url": url})
        await self.wait_for("document.readyState === 'complete' && !!window.wallmesh", timeout=timeout)

    async def eval(self, expression: str, timeout: float = 30.0) -> Any:
        """Evaluates ``expression`` in the page (awaiting promises) and returns its JSON value."""
        res = await self.send("Runtime.evaluate", {
            "expression": expression, "awaitPromise": True, "returnByValue": True}, timeout=timeout)
        if "exceptionDetails" in res:
            details = res["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise CdpError(f"page threw: {text}")
        return res.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout: float = 20.0, interval: float = 0.2) -> Any:
        """Polls ``expression`` until it is truthy; returns its value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last: Any = None
        while True:
            try:
                last = await self.eval(expression)
            except CdpError as exc:
                last = exc
            if last and not isinstance(last, Exception):
                return last
            if loop.time() > deadline:
                raise TimeoutError(f"waited {timeout}s for {expression!r}; last value {last!r}")
            await asyncio.sleep(interval)

    async def fill(self, selector: str, value: str) -> None:
        await self.eval(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
            f" el.value = {json.dumps(value)}; el.dispatchEvent(new Event('input', {{bubbles: true}})); }})()")

    async def click(self, selector: str) -> None:
        await self.eval(f"document.querySelector({json.dumps(selector)}).click()")

    async def screenshot(self, path: Path) -> Path:
        res = await self.send("Page.captureScreenshot", {"format": "png"})
        path.write_bytes(base64.b64decode(res["data"]))
        return path

    # -- the wallmesh page ----------------------------------------------------------------

    async def sign_in_and_join(self, username: str, password: str, room: str) -> None:
        """Goes through the client the way a person does: sign in, type the room, press Join."""
        await self.wait_for("!document.getElementById('view-signin').hidden")
        await self.fill("#username", username)
        await self.fill("#password", password)
        await self.click("#signin-button")
        await self.wait_for("!document.getElementById('view-lobby').hidden")
        await self.fill("#room", room)
        await self.click("#join-button")
        await self.wait_for("!document.getElementById('view-call').hidden && wallmesh.state().room !== null")

    async def frames_decoded(self) -> dict[str, int]:
        """peer_id → frames this page has decoded from that peer's video (from getStats)."""
        stats = await self.eval("wallmesh.stats()")
        return {pid: (p.get("video") or {}).get("framesDecoded", 0) for pid, p in stats["peers"].items()}

    def console_messages(self) -> list[str]:
        out = []
        for event in self.browser.events(self.session_id, "Runtime.consoleAPICalled"):
            args = event["params"].get("args", [])
            out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
        return out


def _kill(proc: subprocess.Popen) -> None:
    """Stops the Chromium process group started by ``launch`` (only ours)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
