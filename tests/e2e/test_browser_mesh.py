"""Two browsers in one room through the real signaling server: video both ways, state, leave.

Each page is a real Chromium tab (fake camera) running the shipped client; only the DOM and
``window.wallmesh.stats()`` (getStats) are read, so these tests see what a user would see.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


async def _wait_frames_flowing(page, peer_id: str, minimum: int = 10, timeout: float = 30.0) -> int:
    """Waits until ``page`` has decoded ``minimum`` frames from ``peer_id``; returns the count."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    frames = {}
    while loop.time() < deadline:
        frames = await page.frames_decoded()
        if frames.get(peer_id, 0) >= minimum:
            return frames[peer_id]
        await asyncio.sleep(0.5)
    stats = await page.eval("wallmesh.stats()")
    raise AssertionError(f"no video from {peer_id}: {stats} console: {page.console_messages()[-10:]}")


async def _wait_frames_stop(page, peer_id: str, still_for: float = 1.5, timeout: float = 15.0) -> int:
    """Waits until no new frame from ``peer_id`` is decoded for ``still_for`` seconds; returns the count."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = (await page.frames_decoded())[peer_id]
    while loop.time() < deadline:
        await asyncio.sleep(still_for)
        now = (await page.frames_decoded())[peer_id]
        if now == last:
            return now
        last = now
    raise AssertionError(f"video from {peer_id} kept arriving ({last} frames) although its camera is off")


def _shot_dir(tmp_path: Path) -> Path:
    # WALLMESH_E2E_SHOTS keeps the screenshots for a person to look at.
    return Path(os.environ.get("WALLMESH_E2E_SHOTS") or tmp_path)


async def test_two_browsers_see_each_other(open_client, tmp_path):
    alice = await open_client("alice", "e2e-room")
    bob = await open_client("bob", "e2e-room")
    alice_id = (await alice.eval("wallmesh.state()"))["peer_id"]
    bob_id = (await bob.eval("wallmesh.state()"))["peer_id"]
    assert alice_id and bob_id and alice_id != bob_id

    # Video flows both ways and keeps flowing.
    first_ab = await _wait_frames_flowing(alice, bob_id)
    first_ba = await _wait_frames_flowing(bob, alice_id)
    # (polled with a generous cap: headless Chromium decodes slowly on a loaded machine)
    assert await _wait_frames_flowing(alice, bob_id, minimum=first_ab + 11) > first_ab + 10, "alice stopped decoding bob's video"
    assert await _wait_frames_flowing(bob, alice_id, minimum=first_ba + 11) > first_ba + 10, "bob stopped decoding alice's video"

    # H.264 is what the browsers agree on (the units' shared encoder speaks only that),
    # and the media path stays on loopback.
    stats = await alice.eval("wallmesh.stats()")
    peer = stats["peers"][bob_id]
    assert peer["codec"]["mimeType"].lower() == "video/h264"
    assert "packetization-mode=1" in peer["codec"]["sdpFmtpLine"]
    assert "profile-level-id=42e0" in peer["codec"]["sdpFmtpLine"]   # constrained baseline
    assert peer["candidatePair"]["local"].startswith("127.0.0.1:")
    assert peer["candidatePair"]["remote"].startswith("127.0.0.1:")
    assert peer["video"]["frameWidth"] > 0 and peer["video"]["frameHeight"] > 0
    # No STUN/TURN configured on the server: the page uses none (never a public default).
    assert peer["iceServers"] == [] and peer["gathered"]["srflx"] == 0 and peer["gathered"]["relay"] == 0

    # The grid shows the other participant by name.
    names = await alice.eval("[...document.querySelectorAll('#grid .tile .name')].map(e => e.textContent)")
    assert names == ["bob"]
    shot = await alice.screenshot(_shot_dir(tmp_path) / "two-browsers-alice.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_mute_camera_and_leave_reach_the_other_side(open_client, tmp_path):
    alice = await open_client("alice", "e2e-state")
    bob = await open_client("bob", "e2e-state")
    alice_id = (await alice.eval("wallmesh.state()"))["peer_id"]
    bob_id = (await bob.eval("wallmesh.state()"))["peer_id"]
    await _wait_frames_flowing(bob, alice_id, minimum=5)
    tile = f"document.querySelector('#grid .tile[data-peer=\"{alice_id}\"]')"

    await alice.click("#btn-mic")
    await bob.wait_for(f"!{tile}.querySelector('.badge-muted').hidden")
    assert (await alice.eval("wallmesh.state()"))["muted"] is True

    assert (await alice.eval("wallmesh.state()"))["capturing"] == ["audio", "video"]
    await alice.click("#btn-cam")
    await bob.wait_for(f"{tile}.classList.contains('camera-off')")
    assert (await alice.eval("wallmesh.state()"))["capturing"] == ["audio"]   # the camera itself is off
    # With the camera off nothing is sent: bob's decoded count stops growing (a frame or two
    # already in flight may still land, so look for it to hold still for 1.5 s).
    frozen = await _wait_frames_stop(bob, alice_id)

    await bob.screenshot(_shot_dir(tmp_path) / "peer-muted-camera-off.png")
    await alice.screenshot(_shot_dir(tmp_path) / "self-muted-camera-off.png")

    await alice.click("#btn-cam")
    await bob.wait_for(f"!{tile}.classList.contains('camera-off')")
    assert (await alice.eval("wallmesh.state()"))["capturing"] == ["audio", "video"]
    await _wait_frames_flowing(bob, alice_id, minimum=frozen + 10)

    await alice.click("#btn-leave")
    await bob.wait_for(f"!{tile} && wallmesh.state().peers.length === 0")
    assert (await bob.eval("wallmesh.state()"))["peers"] == []
    assert bob_id not in await alice.frames_decoded()


async def test_rooms_do_not_leak(open_client):
    alice = await open_client("alice", "e2e-one")
    bob = await open_client("bob", "e2e-two")
    await asyncio.sleep(3.0)
    assert (await alice.eval("wallmesh.state()"))["peers"] == []
    assert (await bob.eval("wallmesh.state()"))["peers"] == []
    assert await alice.eval("document.querySelectorAll('#grid .tile').length") == 0
    assert await alice.eval("!document.getElementById('empty').hidden")


async def test_media_survives_a_signaling_outage(open_client, site):
    """The server goes away mid-call: media keeps flowing; when it is back the pages rejoin and
    keep their existing connection (renamed to the new peer ids) instead of opening a second one."""
    alice = await open_client("alice", "e2e-outage")
    bob = await open_client("bob", "e2e-outage")
    alice_id = (await alice.eval("wallmesh.state()"))["peer_id"]
    bob_id = (await bob.eval("wallmesh.state()"))["peer_id"]
    await _wait_frames_flowing(alice, bob_id)
    await _wait_frames_flowing(bob, alice_id)
    links = (await alice.eval("wallmesh.stats()"))["peers"][bob_id]["link"], \
        (await bob.eval("wallmesh.stats()"))["peers"][alice_id]["link"]

    await site.stop()
    await alice.wait_for("wallmesh.state().signaling !== 'ready'")
    down_at = (await alice.frames_decoded())[bob_id]
    # the server stays down while this waits: the frames can only come over the existing link
    assert await _wait_frames_flowing(alice, bob_id, minimum=down_at + 11) > down_at + 10, "media stopped with the server"

    await site.start()
    back = "wallmesh.state().signaling === 'ready' && wallmesh.state().peer_id !== %s && wallmesh.state().peers.length === 1"
    await alice.wait_for(back % f"'{alice_id}'", timeout=40)
    await bob.wait_for(back % f"'{bob_id}'", timeout=40)
    new_alice = (await alice.eval("wallmesh.state()"))["peer_id"]
    new_bob = (await bob.eval("wallmesh.state()"))["peer_id"]
    # Each page knows the other under its new id, with no duplicate and no leftover stale link.
    await alice.wait_for(f"(async () => {{ const s = await wallmesh.stats(); const p = s.peers['{new_bob}'];"
                         " return Object.keys(s.peers).length === 1 && p && !p.stale; })()")
    await bob.wait_for(f"(async () => {{ const s = await wallmesh.stats(); const p = s.peers['{new_alice}'];"
                       " return Object.keys(s.peers).length === 1 && p && !p.stale; })()")
    # Same connections as before the outage, still carrying video.
    assert (await alice.eval("wallmesh.stats()"))["peers"][new_bob]["link"] == links[0]
    assert (await bob.eval("wallmesh.stats()"))["peers"][new_alice]["link"] == links[1]
    frames = (await alice.frames_decoded())[new_bob]
    assert frames > down_at + 10
    await _wait_frames_flowing(alice, new_bob, minimum=frames + 10)
    assert await alice.eval("document.querySelectorAll('#grid .tile').length") == 1
