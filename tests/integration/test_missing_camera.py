"""``wallmesh run`` with no camera: the process stays up, says so, and draws the wall.

Before, a unit whose camera did not open exited before it drew anything: the room saw a
black screen. Now it shows the sentence, reports it in its status, and keeps retrying.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest

from appliance.demo.site import wait_for

pytestmark = pytest.mark.slow


def get_status(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/status", timeout=5) as resp:  # loopback only
        return json.loads(resp.read())


async def test_a_unit_without_its_camera_keeps_running_and_says_so(site, tmp_path):
    snapshots = tmp_path / "snapshots"
    unit = await site.spawn(1, {
        "headless": False,
        "video": {"type": "v4l2", "device": "/dev/video-wallmesh-absent"},
        "display": {"backend": "offscreen", "width": 640, "height": 360, "self_view": False},
        "snapshot_dir": str(snapshots),
        "snapshot_every_s": 0.25,
        "buttons": {"pin_factory": "mock"},
        "leds": {"kind": "none"},
    })
    status = await wait_for(lambda: (s := unit.status()) and s.get("state") == "error" and s, 30,
                            f"the error state\n{unit.log_tail()}")
    assert status["message"] == "Camera not found — call IT"
    assert "/dev/video-wallmesh-absent" in status["media"]["error"]
    await wait_for(lambda: (snapshots / "latest.png").exists(), 15, "the wall drawn")
    await asyncio.sleep(3)
    assert unit.alive, f"the unit exited:\n{unit.log_tail()}"
    live = await asyncio.to_thread(get_status, status["status_url"])
    assert live["state"] == "error" and live["message"] == "Camera not found — call IT"
    assert live["peers"] == [] and live["signaling"]["connected"], "in touch with the server, not in the room"
