"""Choosing the camera, microphone and speaker, in the lobby and in the middle of a call.

Chromium runs with three fake cameras (``device-count=3``) besides its fake microphones and
speakers. Its second fake camera delivers Y16 depth frames, which no video encoder takes, so
the call switches between the first and the third (I420 and MJPEG, like real webcams).
Switching a device mid-call must keep media flowing to the other participant on the same
connection (replaceTrack, no new offer or answer) and end the track it replaced.
"""

from __future__ import annotations

import sys

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PASSWORDS = {"alice": "correct horse battery", "bob": "staple 42 staple"}

OPTIONS = "[...document.getElementById(%r).options].map((o) => ({ id: o.value, label: o.textContent }))"
SELECTED = "document.getElementById(%r).value"


@pytest.fixture
async def browser(netns):
    """This file's Chromium: three fake cameras instead of one, so there is a camera to switch to."""
    chromium = sys.modules["wallmesh_e2e_chromium"]   # loaded by conftest.py
    b = await chromium.Browser.launch(netns=netns, extra_flags=["--use-fake-device-for-media-stream=device-count=3"])
    try:
        yield b
    finally:
        await b.close()


async def _pick(page, select_id: str, device_id: str) -> None:
    """Chooses ``device_id`` in a picker the way a person does (the select's change event)."""
    await page.eval(f"(() => {{ const s = document.getElementById({select_id!r}); s.value = {device_id!r};"
                    " s.dispatchEvent(new Event('change', { bubbles: true })); })()")


async def _other(page, select_id: str, skip: tuple[str, ...] = ()) -> str:
    """A device in that picker other than the one selected (and than those labelled ``skip``)."""
    current = await page.eval(SELECTED % select_id)
    return next(o["id"] for o in await page.eval(OPTIONS % select_id) if o["id"] != current and o["label"] not in skip)


DEPTH_CAMERA = ("fake_device_1",)   # Y16 frames: a depth sensor, not something to send


async def _grows(page, expression: str, since: float, by: float = 5, timeout: float = 40.0) -> float:
    """Waits until the number ``expression`` resolves to exceeds ``since + by``."""
    return await page.wait_for(f"(async () => {{ const n = await ({expression}); return n > {since + by} ? n : 0; }})()",
                               timeout=timeout)


async def test_pickers_list_the_devices_in_the_lobby_and_the_call(browser, site):
    page = await browser.new_page(site.url + "/")
    await page.wait_for("!document.getElementById('view-signin').hidden")
    await page.fill("#username", "alice")
    await page.fill("#password", PASSWORDS["alice"])
    await page.click("#signin-button")
    await page.wait_for("!document.getElementById('view-lobby').hidden && document.getElementById('lobby-camera').options.length")
    devices = await page.eval("navigator.mediaDevices.enumerateDevices().then((l) => l.map((d) => ({"
                              " kind: d.kind, id: d.deviceId, label: d.label })))")

    def listed(kind):
        return [{"id": d["id"], "label": d["label"]} for d in devices if d["kind"] == kind]

    for select, kind in (("lobby-camera", "videoinput"), ("lobby-mic", "audioinput"), ("lobby-speaker", "audiooutput")):
        await page.wait_for(f"document.getElementById({select!r}).options.length === {len(listed(kind))}")
        assert await page.eval(OPTIONS % select) == listed(kind), select
        assert await page.eval(f"!document.getElementById({select!r}).closest('label').hidden"), select
    assert len(listed("videoinput")) == 3 and len(listed("audioinput")) >= 2
    # The selection is the device actually captured.
    state = await page.eval("wallmesh.state()")
    assert await page.eval(SELECTED % "lobby-camera") == state["devices"]["videoinput"]
    assert await page.eval(SELECTED % "lobby-mic") == state["devices"]["audioinput"]

    # In the lobby a new camera shows in the preview and the old one is released.
    await page.eval("window.__old = document.getElementById('lobby-video').srcObject.getVideoTracks()[0]")
    other = await _other(page, "lobby-camera", skip=DEPTH_CAMERA)
    await _pick(page, "lobby-camera", other)
    await page.wait_for(f"wallmesh.state().devices.videoinput === {other!r} && window.__old.readyState === 'ended'")
    assert await page.eval("document.getElementById('lobby-video').srcObject.getVideoTracks()"
                           ".map((t) => t.getSettings().deviceId)") == [other]

    # The call uses the camera chosen in the lobby, and its device panel lists the same devices.
    await page.fill("#room", "e2e-pickers")
    await page.click("#join-button")
    await page.wait_for("!document.getElementById('view-call').hidden && wallmesh.state().room !== null")
    assert (await page.eval("wallmesh.state()"))["devices"]["videoinput"] == other
    assert await page.eval("document.getElementById('call-devices').hidden")
    await page.click("#btn-devices")
    await page.wait_for("!document.getElementById('call-devices').hidden")
    assert await page.eval("document.getElementById('btn-devices').getAttribute('aria-expanded')") == "true"
    for select, kind in (("call-camera", "videoinput"), ("call-mic", "audioinput"), ("call-speaker", "audiooutput")):
        assert await page.eval(OPTIONS % select) == listed(kind), select
    assert await page.eval(SELECTED % "call-camera") == other
    # Escape closes the panel and gives the focus back to its button.
    await page.eval("document.getElementById('call-camera').focus()")
    await page.send("Input.dispatchKeyEvent", {"type": "keyDown", "key": "Escape", "code": "Escape", "windowsVirtualKeyCode": 27})
    await page.wait_for("document.getElementById('call-devices').hidden")
    assert await page.eval("document.activeElement.id") == "btn-devices"
    assert await page.eval("document.getElementById('btn-devices').getAttribute('aria-expanded')") == "false"


async def test_switching_camera_mic_and_speaker_mid_call(browser, site):
    alice = await browser.new_page(site.url + "/")
    await alice.sign_in_and_join("alice", PASSWORDS["alice"], "e2e-switch")
    bob = await browser.new_page(site.url + "/")
    await bob.sign_in_and_join("bob", PASSWORDS["bob"], "e2e-switch")
    alice_id = (await alice.eval("wallmesh.state()"))["peer_id"]
    bob_id = (await bob.eval("wallmesh.state()"))["peer_id"]
    video_at_bob = f"wallmesh.stats().then((s) => (s.peers[{alice_id!r}].video || {{}}).framesDecoded || 0)"
    audio_at_bob = f"wallmesh.stats().then((s) => (s.peers[{alice_id!r}].audio || {{}}).packetsReceived || 0)"
    await _grows(bob, video_at_bob, 0)
    await _grows(bob, audio_at_bob, 0)
    await alice.click("#btn-devices")
    await alice.wait_for("!document.getElementById('call-devices').hidden")
    before = (await alice.eval("wallmesh.stats()"))["peers"][bob_id]
    assert before["descriptions"] >= 1

    for select, kind, at_bob in (("call-camera", "video", video_at_bob), ("call-mic", "audio", audio_at_bob)):
        device_kind = "videoinput" if kind == "video" else "audioinput"
        await alice.eval(f"window.__old = document.getElementById('self-video').srcObject"
                         f".getTracks().find((t) => t.kind === {kind!r})")
        old_track = await alice.eval("window.__old.id")
        assert (await alice.eval("wallmesh.stats()"))["peers"][bob_id]["sending"][kind] == old_track
        other = await _other(alice, select, skip=DEPTH_CAMERA)
        await _pick(alice, select, other)
        await alice.wait_for(f"wallmesh.state().devices.{device_kind} === {other!r}"
                             " && window.__old.readyState === 'ended'", timeout=15)
        new_track = await alice.eval(f"document.getElementById('self-video').srcObject"
                                     f".getTracks().find((t) => t.kind === {kind!r}).id")
        assert new_track != old_track
        # The connection to bob now sends the new track ...
        await alice.wait_for(f"wallmesh.stats().then((s) => s.peers[{bob_id!r}].sending.{kind} === {new_track!r})")
        # ... and bob keeps receiving (counted from after the switch).
        since = await bob.eval(at_bob)
        await _grows(bob, at_bob, since)
        assert await alice.eval(SELECTED % select) == other
        assert (await alice.eval("wallmesh.state()"))["capturing"] == ["audio", "video"]

    # Same connection throughout, and no new offer or answer: the tracks were replaced in place.
    after = (await alice.eval("wallmesh.stats()"))["peers"][bob_id]
    assert after["link"] == before["link"] and after["descriptions"] == before["descriptions"]
    assert after["connectionState"] == "connected"

    # The speaker: bob's sound on alice's page plays through the chosen output.
    speaker = await _other(alice, "call-speaker")
    await _pick(alice, "call-speaker", speaker)
    tile_video = f"document.querySelector('#grid .tile[data-peer=\"{bob_id}\"] video')"
    await alice.wait_for(f"{tile_video}.sinkId === {speaker!r}")
    assert (await alice.eval("wallmesh.state()"))["devices"]["audiooutput"] == speaker


async def test_the_lobby_with_its_pickers_fits_a_laptop_screen(browser, site):
    """Preview, pickers and Join all on a 1280 x 720 screen at once: no scrolling to find Join."""
    page = await browser.new_page(site.url + "/")
    await page.send("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 720, "deviceScaleFactor": 1, "mobile": False})
    await page.wait_for("!document.getElementById('view-signin').hidden")
    await page.fill("#username", "alice")
    await page.fill("#password", PASSWORDS["alice"])
    await page.click("#signin-button")
    await page.wait_for("!document.getElementById('view-lobby').hidden && document.getElementById('lobby-camera').options.length")
    placed = await page.eval("""['room', 'lobby-video', 'lobby-camera', 'lobby-mic', 'lobby-speaker', 'join-button'].map((id) => {
      const r = document.getElementById(id).getBoundingClientRect();
      return { id, top: Math.round(r.top), bottom: Math.round(r.bottom), onScreen: r.top >= 0 && r.bottom <= innerHeight };
    })""")
    assert all(p["onScreen"] for p in placed), placed


@pytest.fixture
async def units(netns, site, tmp_path):
    helper = sys.modules["wallmesh_e2e_units"]   # loaded by conftest.py
    missing = helper.unit_daemon_missing()
    if missing:
        pytest.skip(missing)
    u = helper.Units(netns, site, tmp_path / "units", UNIT_ROOM)
    try:
        yield u
    finally:
        await u.close()


UNIT_ROOM = "e2e-switch-unit"


async def test_a_wall_unit_keeps_receiving_after_the_browser_switches_camera(browser, site, units):
    """aiortc on the far side: the new camera's frames reach the unit on the same connection."""
    helper = sys.modules["wallmesh_e2e_units"]
    await units.start(1)
    alice = await browser.new_page(site.url + "/")
    await alice.sign_in_and_join("alice", PASSWORDS["alice"], UNIT_ROOM)

    async def unit_frames():
        return helper.frames_from(await units.status("unit-1"), "alice")

    try:
        await helper.until(lambda: _more(unit_frames, 10), 60, "the unit to receive the browser's video")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{units.log_tail('unit-1')}") from None
    unit_id = await alice.wait_for("Object.values(wallmesh.state().peers)[0]")
    before = (await alice.eval("wallmesh.stats()"))["peers"][unit_id]

    await alice.click("#btn-devices")
    await alice.eval("window.__old = document.getElementById('self-video').srcObject.getVideoTracks()[0]")
    other = await _other(alice, "call-camera", skip=DEPTH_CAMERA)
    await _pick(alice, "call-camera", other)
    await alice.wait_for(f"wallmesh.state().devices.videoinput === {other!r} && window.__old.readyState === 'ended'")
    new_track = await alice.eval("document.getElementById('self-video').srcObject.getVideoTracks()[0].id")
    await alice.wait_for(f"wallmesh.stats().then((s) => s.peers[{unit_id!r}].sending.video === {new_track!r})")

    since = await unit_frames()
    await helper.until(lambda: _more(unit_frames, since + 10), 40, f"the unit to receive the new camera (after {since} frames)")
    after = (await alice.eval("wallmesh.stats()"))["peers"][unit_id]
    assert after["link"] == before["link"] and after["descriptions"] == before["descriptions"]


async def _more(count, than: int) -> bool:
    return await count() > than
