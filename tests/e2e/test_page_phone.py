"""The page on a phone: a 390 x 844 viewport (DevTools device emulation, as a phone reports it).

Nothing may stick out sideways: the top bar fits, every control is on screen and is the element
a tap at its centre reaches, and the other participants' tiles stack in one column.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PASSWORDS = {"alice": "correct horse battery", "bob": "staple 42 staple", "mallory": "not so secret"}
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 3, "mobile": True}
ROOM = "e2e-phone-layout-for-the-boardroom"   # long, as room names can be

# The page's width against the viewport's, and every visible element of `selector` that sticks out.
OVERFLOW = """((selector) => {
  const out = [];
  for (const el of document.querySelectorAll(selector)) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;   // not shown
    if (r.left < -0.5 || r.right > innerWidth + 0.5) out.push(`${el.id || el.className || el.tagName} ${r.left}..${r.right}`);
  }
  return { scrollWidth: document.documentElement.scrollWidth, innerWidth, outside: out };
})(%r)"""

# Every visible control of `selector`: on screen and reached by a tap at its centre.
REACHABLE = """((selector) => [...document.querySelectorAll(selector)].filter((el) => el.offsetParent !== null).map((el) => {
  const r = el.getBoundingClientRect();
  const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
  return { id: el.id, onScreen: r.left >= 0 && r.right <= innerWidth && r.top >= 0 && r.bottom <= innerHeight,
           tapped: !!hit && (hit === el || el.contains(hit)) };
}))(%r)"""


async def _fits(page, selector: str = "body *") -> None:
    got = await page.eval(OVERFLOW % selector)
    assert got["innerWidth"] == PHONE["width"], got
    assert got["scrollWidth"] <= got["innerWidth"], got
    assert got["outside"] == [], got


async def _reachable(page, selector: str) -> list[str]:
    controls = await page.eval(REACHABLE % selector)
    assert controls and all(c["onScreen"] and c["tapped"] for c in controls), controls
    return [c["id"] for c in controls]


async def test_phone_width_has_no_sideways_overflow_and_tiles_stack(browser, site, open_client, tmp_path):
    shots = Path(os.environ.get("WALLMESH_E2E_SHOTS") or tmp_path)
    alice = await browser.new_page(site.url + "/")
    await alice.send("Emulation.setDeviceMetricsOverride", PHONE)
    await alice.goto(site.url + "/")   # loaded afresh at the phone's size
    await alice.wait_for(f"innerWidth === {PHONE['width']} && !document.getElementById('view-signin').hidden")
    await _fits(alice)
    await alice.fill("#username", "alice")
    await alice.fill("#password", PASSWORDS["alice"])
    await alice.click("#signin-button")
    await alice.wait_for("!document.getElementById('view-lobby').hidden")
    await _fits(alice)
    await alice.fill("#room", ROOM)
    await alice.click("#join-button")
    await alice.wait_for("!document.getElementById('view-call').hidden && wallmesh.state().signaling === 'ready'")

    await open_client("bob", ROOM)
    await open_client("mallory", ROOM)
    await alice.wait_for("document.querySelectorAll('#grid .tile').length === 2")
    await _fits(alice)
    await _fits(alice, ".topbar, .topbar *")
    assert await alice.eval("(() => { const t = document.querySelector('.topbar'); return t.scrollWidth <= t.clientWidth; })()")
    assert await _reachable(alice, ".topbar button") == ["signout"]
    assert await _reachable(alice, ".controls button") == ["btn-mic", "btn-cam", "btn-devices", "btn-leave"]

    tiles = await alice.eval("[...document.querySelectorAll('#grid .tile')].map((t) => {"
                             " const r = t.getBoundingClientRect(); return { left: r.left, top: r.top, bottom: r.bottom,"
                             " width: r.width, height: r.height }; })")
    first, second = tiles
    assert first["left"] == second["left"] and first["width"] == second["width"], tiles   # one column
    assert second["top"] >= first["bottom"], tiles                                         # one above the other
    assert min(first["height"], second["height"]) > 100, tiles
    assert abs(first["height"] - second["height"]) <= 1, tiles                             # sharing the height
    await alice.screenshot(shots / "phone-call.png")

    # The device panel opens within the screen, and its pickers can be reached.
    await alice.click("#btn-devices")
    await alice.wait_for("!document.getElementById('call-devices').hidden")
    await _fits(alice)
    await _reachable(alice, "#call-devices select")
    await alice.screenshot(shots / "phone-devices.png")
    await alice.click("#btn-devices")

    # After leaving, the "You left" card fits too.
    await alice.click("#btn-leave")
    await alice.wait_for("!document.getElementById('view-left').hidden")
    await _fits(alice)
    assert await _reachable(alice, "#view-left button") == ["rejoin-button", "lobby-button"]
