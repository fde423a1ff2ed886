"""Start-up overlaps signaling with opening the devices, and joins only once they are open.

A Pi camera takes about a second to start. The daemon here has its camera start held
until its signaling session exists (capped at 10 s): if signaling only began after the
devices, that would never happen and the cap would show it. The room must not see
the unit before its media can be offered, so ``join`` waits for the devices.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from appliance.demo.site import Site, wait_for
from appliance.unit import config
from appliance.unit.app import UnitDaemon

pytestmark = pytest.mark.slow


async def test_signaling_runs_while_devices_open_and_join_waits_for_them(tmp_path):
    site = Site(tmp_path, room="starttest")
    await site.start_server()
    _name, path, _status = site.unit_config(1, {"video": {"width": 160, "height": 120, "fps": 15}})
    daemon = UnitDaemon(config.load(path))
    seen: dict[str, object] = {}
    open_devices = daemon.media.start

    async def slow_camera_start() -> None:
        t0 = time.monotonic()
        while not daemon.signal.connected.is_set() and time.monotonic() - t0 < 10:
            await asyncio.sleep(0.02)  # the camera "warming up"
        seen["session_while_opening"] = daemon.signal.connected.is_set()
        await asyncio.sleep(0.3)  # a joined room would be answered within this on loopback
        seen["room_before_devices"] = daemon.mesh.room
        await open_devices()

    daemon.media.start = slow_camera_start  # type: ignore[method-assign]
    try:
        await daemon.start()
        assert seen["session_while_opening"], "signaling only started after the devices were open"
        assert seen["room_before_devices"] is None, "joined the room before the camera could be offered"
        await wait_for(lambda: daemon.mesh.room == "starttest", 20, "the join once the devices are open")
        assert daemon.media.video is not None
    finally:
        await daemon.close()
        await site.close()
