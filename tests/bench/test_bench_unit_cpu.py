"""The one-unit CPU bench: a real unit with five load peers, figures that can be wrong.

The bench's figures (``unit_cpu_*``, ``unit_busiest_thread_cpu_*``, ``unit_min_fps_*core_640``)
come from :func:`appliance.bench.unit_cpu.room`; here it runs small and short, and the test
checks what the figures rest on: ten streams really flow (five into the unit, five out of
it), the CPU figures are the unit's own (its busiest thread within its process total), and
confinement puts every thread of the unit on the cores asked for.
"""

from __future__ import annotations

import os

import pytest

from appliance.bench import unit_cpu
from appliance.bench.report import thread_cpu_seconds

pytestmark = pytest.mark.slow

SMALL = (320, 240, 250_000)


async def test_five_load_peers_stream_both_ways_with_one_real_unit(tmp_path):
    f = await unit_cpu.room(tmp_path, SMALL, 2.0)
    assert len(f["rx"]) == unit_cpu.PEERS, f"the unit heard from {sorted(f['rx'])}"
    assert len(f["tx"]) == unit_cpu.PEERS, f"the load peers heard the unit: {sorted(f['tx'])}"
    assert min(f["rx"].values()) > 10, f"streams into the unit: {f['rx']}"
    assert min(f["tx"].values()) > 10, f"streams out of the unit: {f['tx']}"
    assert f["min_fps"] == min([*f["rx"].values(), *f["tx"].values()])
    assert 0 < f["busiest"] <= f["cpu"] + 0.05, f
    assert f["peer_cpu"] > 0


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="confining to one core needs a second one for the peers")
async def test_confinement_puts_every_unit_thread_on_the_cores_asked_for(tmp_path):
    f = await unit_cpu.room(tmp_path, SMALL, 1.0, confine={0})
    assert f["affinity"] == {0}
    assert min(f["rx"].values()) > 0 and min(f["tx"].values()) > 0


def test_thread_cpu_finds_the_thread_that_spent_the_time():
    import threading
    import time

    spun, done = threading.Event(), threading.Event()
    tids: list[int] = []

    def spin() -> None:
        tids.append(threading.get_native_id())
        end = time.thread_time() + 0.3
        while time.thread_time() < end:
            pass
        spun.set()
        done.wait(10)  # stay alive so /proc still lists the thread

    worker = threading.Thread(target=spin)
    before = thread_cpu_seconds(os.getpid())
    worker.start()
    assert spun.wait(10)
    after = thread_cpu_seconds(os.getpid())
    done.set()
    worker.join()
    spent = {tid: used - before.get(tid, 0.0) for tid, used in after.items()}
    assert max(spent, key=spent.__getitem__) == tids[0]
    assert spent[tids[0]] >= 0.25
