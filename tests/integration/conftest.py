"""Fixtures for multi-process tests: a real signaling server and real unit processes on loopback."""

from __future__ import annotations

import pytest

from appliance.demo.site import Site


@pytest.fixture(params=[1, 2], ids=["workers1", "workers2"])
async def site(tmp_path, request):
    """The units' peer connections on their own loop (``[media] workers = 1``) or in two worker
    processes each: every integration test runs both ways."""
    s = Site(tmp_path, room="itest", server_process=True, workers=request.param)
    await s.start_server()
    try:
        yield s
    finally:
        for unit in s.units:
            if unit.alive is False and unit.proc.returncode not in (0, -9, -15):
                print(f"--- {unit.name} exited {unit.proc.returncode}:\n{unit.log_tail(40)}")
        await s.close()
