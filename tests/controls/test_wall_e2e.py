"""The wall end to end: two real unit processes and a real signaling server on loopback.

Unit 1 is driven the way its buttons drive it (``POST /actions/...`` does what the
buttons do); unit 2 shows the call on its offscreen display and writes snapshots.
What unit 1 does must appear on unit 2's wall: the muted icon on unit 1's tile, the
camera-off card, "waiting for others" after the hang-up, the picture again after
the rejoin.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import pytest
from wallmesh_pixels import near, pixels, text_pixels

from appliance.display import theme
from appliance.display.layout import Rect, fit
from appliance.display.tiles import tile_rects

pytestmark = pytest.mark.slow

SIZE = (1280, 720)


def post(status: dict, action: str) -> dict:
    req = urllib.request.Request(f"{status['status_url']}/actions/{action}", method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=5) as resp:  # loopback only
        return json.loads(resp.read())


def latest(snapshots: Path):
    import pygame

    link = snapshots / "latest.png"
    try:
        return pygame.image.load(str(link.resolve()))
    except (FileNotFoundError, pygame.error):
        return None


def peer(status: dict | None, name: str) -> dict | None:
    for p in (status or {}).get("peers", []):
        if p["name"] == name:
            return p
    return None


@pytest.fixture
async def room(tmp_path):
    from appliance.demo.site import Site

    site = Site(tmp_path, room="walltest")
    await site.start_server()
    snapshots = tmp_path / "snapshots"
    try:
        one = await site.spawn(1)
        two = await site.spawn(
            2,
            {
                "headless": False,
                "snapshot_dir": str(snapshots),
                "snapshot_every_s": 0.25,
                "display": {"backend": "offscreen", "width": SIZE[0], "height": SIZE[1], "self_view": False},
                "buttons": {"pin_factory": "mock"},
                "leds": {"kind": "none"},
            },
        )
        yield site, one, two, snapshots
    finally:
        await site.close()


async def test_what_unit_1_does_shows_on_unit_2s_wall(room):
    from appliance.demo.site import wait_for

    site, one, two, snapshots = room
    tile = tile_rects(SIZE, 1)[0]
    video = fit(320, 240, tile)
    label = Rect(tile.x, tile.bottom - tile.h // 5, tile.w // 3, tile.h // 5)

    def picture_shown():
        shot = latest(snapshots)
        return shot is not None and pixels(shot, Rect(video.x + 20, video.y + 40, video.w - 40, video.h // 2)).std() > 25

    await wait_for(lambda: (peer(two.status(), "unit-1") or {}).get("frames", 0) > 10, 60, "unit 2 to receive unit 1")
    await wait_for(picture_shown, 20, "unit 1's picture on unit 2's wall")

    assert post(one.status(), "mute")["muted"] is True
    await wait_for(lambda: (peer(two.status(), "unit-1") or {}).get("muted"), 10, "unit 2 to learn of the mute")
    await wait_for(
        lambda: (s := latest(snapshots)) is not None and near(pixels(s, label), theme.MUTED, 25) > 40,
        10,
        "the muted icon on unit 1's tile",
    )

    assert post(one.status(), "camera-off")["camera"] is False
    await wait_for(
        lambda: (s := latest(snapshots)) is not None and near(pixels(s, tile), theme.TEXT_DIM, 30) > 200
        and pixels(s, Rect(video.x + 20, video.y + video.h - 60, video.w - 40, 40)).std() < 25,
        10,
        "the camera-off card",
    )

    hung_up = post(one.status(), "hangup")  # the answer is the status right after the action
    assert hung_up["state"] == "idle"
    assert hung_up["muted"] is False, "mute resets when the call ends"
    await wait_for(lambda: peer(two.status(), "unit-1") is None, 15, "unit 1 to leave unit 2's room")
    await wait_for(
        lambda: (s := latest(snapshots)) is not None and text_pixels(pixels(s, Rect(0, 250, SIZE[0], 200))) > 500
        and near(pixels(s, tile), theme.PANEL, 4) < 1000,
        10,
        "'waiting for others' on unit 2",
    )
    # the status file (rewritten twice a second) agrees once it has caught up
    await wait_for(lambda: (one.status() or {}).get("muted") is False, 5, "unit 1's status file to show the reset")

    post(one.status(), "camera-on")
    post(one.status(), "join")
    await wait_for(lambda: (peer(two.status(), "unit-1") or {}).get("frames", 0) > 10, 30, "unit 1 back in the room")
    await wait_for(picture_shown, 20, "unit 1's picture again")
    await asyncio.sleep(0)
