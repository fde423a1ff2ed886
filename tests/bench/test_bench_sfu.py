"""``wallmesh bench sfu`` end to end: six units, then a seventh and an eighth, through a real Janus.

This is the test of the room past the mesh cap at its real size: the bench only reports once
all 56 directed streams deliver through the SFU (every unit in ``sfu`` mode, every tile on its
new path), so a figure for each name means they all did. The bars themselves are the bench's
to report, not this test's (the machine may be loaded).
"""

from __future__ import annotations


import pytest

from appliance.bench import sfu

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


async def test_eight_units_receive_each_other_through_janus(tmp_path) -> None:
    from appliance.signaling.sfu.lab import LabUnavailable

    try:
        results = await sfu.room(tmp_path, quick=True)
    except LabUnavailable as exc:
        pytest.skip(f"no Janus lab here: {exc}")
    by_name = {r.name: r for r in results}
    assert set(by_name) == set(sfu.NAMES)
    assert all(by_name[n].value is not None for n in sfu.NAMES), results
    assert by_name["sfu8_min_fps"].value > 0
    # what SFU mode is for: one unit sends about one stream's worth, not seven
    assert "one video stream is" in by_name["sfu_unit_upload_kbps"].detail
    rate = float(by_name["sfu_unit_upload_kbps"].detail.split("one video stream is ")[1].split(" ")[0])
    assert by_name["sfu_unit_upload_kbps"].value < 3 * rate
