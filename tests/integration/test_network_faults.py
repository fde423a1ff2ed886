"""Real units on a lab LAN with real faults: loss, a partition, TURN as the only path.

Each test runs the same scenario ``wallmesh bench faults`` measures
(:mod:`appliance.bench.netfaults`), with the server on the lab's switch, one ``wallmesh
run`` per namespace gathering ICE on its own ``eth0``, and checks what the units did. The
limits are generous (the benchmark holds the bars: tier step 10 s, freeze 1 s, rejoin 5 s,
TURN 3 s); the machine running the tests is shared.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.bench import netfaults
from appliance.bench.netlab import PREFIX, missing

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(240),
    pytest.mark.skipif(missing() is not None, reason=f"no network lab here: {missing()}"),
]


@pytest.fixture(autouse=True)
def nothing_left_behind():
    yield
    import os

    out = subprocess.run(["ip", "netns", "list"], check=False, capture_output=True, text=True).stdout
    left = [line.split()[0] for line in out.splitlines() if line.startswith(f"{PREFIX}{os.getpid()}x")]
    assert not left, f"namespaces left behind: {left}"


@pytest.mark.parametrize("percent", [5, 15])
async def test_loss_steps_the_lossy_units_tier_down_and_back_and_its_video_keeps_moving(tmp_path: Path, percent: int):
    run = await netfaults.loss(tmp_path, percent, lossy_s=15.0)
    # the drop was real: its peer reported about that share of the unit's packets lost
    seen = sorted(run.out_loss)
    assert seen and percent / 300 <= seen[len(seen) // 2] <= percent / 100 * 3, run.detail
    assert run.step_s is not None and run.step_s <= 20, run.detail
    assert run.low_width is not None and run.low_width < run.start_width, run.detail
    assert run.max_freeze_ms < 2500, run.detail  # NACK and keyframe requests kept pictures coming
    assert run.recovered_s is not None, run.detail  # a clean link brings the tier back


async def test_a_rate_limit_below_the_best_tier_steps_the_tier_down(tmp_path: Path):
    run = await netfaults.rate_limit(tmp_path, netfaults.RATE_KBIT, lossy_s=15.0)
    assert run.step_s is not None and run.step_s <= 20, run.detail
    assert run.low_width is not None and run.low_width < run.start_width, run.detail
    # no bar on freezes here: near a bucket's rate, repair traffic keeps it overflowing (docs/network-faults.md)


async def test_a_partitioned_unit_comes_back_by_itself_while_the_others_carry_on(tmp_path: Path):
    run = await netfaults.partition(tmp_path, 30.0)
    assert run.others_max_gap_ms < 3000, run.detail  # the two that stayed connected kept their streams
    assert run.reconnecting_after_s is not None, run.detail  # the cut-off unit said so
    assert run.rejoin_s is not None and run.rejoin_s <= 15, run.detail
    assert run.cut_states[-1] == "in_call", run.detail


@pytest.mark.skipif(shutil.which("turnserver") is None, reason="coturn missing: scripts/setup installs it")
async def test_with_udp_between_units_blocked_the_call_goes_through_turn(tmp_path: Path):
    run = await netfaults.turn_only(tmp_path)
    assert run.connect_s is not None and run.connect_s <= 10, run.detail
    assert run.first_frame_s is not None, run.detail
    assert run.allocations > 0 and run.relayed_pairs > 0, run.detail
    assert run.direct_pairs == 0, run.detail  # nothing got past the block
