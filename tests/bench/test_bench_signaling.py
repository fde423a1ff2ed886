"""``wallmesh bench signaling`` at smoke-test size: real servers, real sockets, honest figures.

The figures themselves are not judged here (that is what the benchmark is for); these tests
check that the benchmark measures something real: every expected frame is accounted for,
rates agree with counts and durations, memory comes from a live process, and a frame that
cannot arrive shows up as lost instead of being papered over.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys

import pytest

from appliance.bench.signaling import figures, runner, traffic
from appliance.bench.signaling.load import Member, Room, Tally
from appliance.bench.signaling.plan import Plan

pytestmark = pytest.mark.slow

NEEDS_NODE = pytest.mark.skipif(
    not (shutil.which("node") and shutil.which("npm")), reason="node and npm come from scripts/setup (the PeerJS side)"
)


# The stable result names of DESIGN.md's "Benchmark output" for this part.
DESIGN_NAMES = {
    "signal_clients", "signal_frames_per_s", "signal_storm_p99_ms", "signal_storm_drain_s", "signal_frames_lost",
    "signal_rss_mb", "signal_relay_p50_ms", "signal_relay_p99_ms",
    "peerjs_frames_per_s", "peerjs_storm_p99_ms", "peerjs_relay_p99_ms",
}


def leftover_processes() -> set[int]:
    """This test's own benchmark processes still alive: children of this process (servers,
    load processes) and anything using this process's run directory (embedded stores)."""
    me = os.getpid()
    marker = f"wallmesh-bench-signaling-{me}-".encode()
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == me or marker in cmdline:
            found.add(int(entry))
    return found


def by_name(results: list) -> dict:
    return {r.name: r for r in results}


def test_the_load_process_starts_without_loading_the_runner():
    """``python -m appliance.bench.signaling.load`` as the benchmark spawns it: the subpackage
    imports none of its parts, so the module runs once, as __main__ (no runpy warning), with
    neither the runner nor the figures loaded beside it."""
    code = (
        "import json, runpy, sys; sys.argv = ['load', '--help']\n"
        "try:\n    runpy.run_module('appliance.bench.signaling.load', run_name='__main__', alter_sys=True)\n"
        "except SystemExit:\n    pass\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('appliance.bench'))), file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--dialect" in done.stdout
    loaded = json.loads(done.stderr.strip().splitlines()[-1])
    assert "appliance.bench.signaling.runner" not in loaded and "appliance.bench.signaling.figures" not in loaded
    assert "appliance.bench.signaling.wsclient" in loaded


def test_traffic_has_the_shape_of_a_mesh_join() -> None:
    assert traffic.frames_per_room(4) == 6 * 22
    assert traffic.frames_per_member(4) * 4 == traffic.frames_per_room(4)
    offer, answer = traffic.sdp("offer", 1), traffic.sdp("answer", 1)
    assert 2800 <= len(offer) <= 3400 and 2800 <= len(answer) <= 3400
    assert offer != answer and "a=setup:actpass" in offer and "a=setup:active" in answer
    assert offer != traffic.sdp("offer", 2)


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert figures.percentile(values, 50) == 50
    assert figures.percentile(values, 99) == 99
    assert figures.percentile(values, 100) == 100
    assert figures.percentile([7.0], 99) == 7.0
    assert figures.percentile([], 50) is None


async def test_tally_tells_lost_duplicated_and_misrouted_frames_apart() -> None:
    a, b = Room(0), Room(1)
    alice, bob, mallory = Member(0, a), Member(1, a), Member(4, b)
    a.members += [alice, bob]
    a.pending = 2
    tally = Tally()
    import time

    now = time.monotonic_ns()
    tally.record(alice, bob, now, key=1)
    tally.record(alice, bob, now, key=1)  # the same frame twice
    tally.record(alice, mallory, now, key=2)  # from another room
    assert (tally.received, tally.duplicates, tally.misrouted) == (1, 1, 1)
    assert not a.done.is_set() and a.pending == 1
    tally.record(bob, alice, now, key=3)
    assert a.done.is_set() and tally.received == 2
    tally.record(bob, alice, now, key=4)  # after the exchange was complete
    assert tally.stray == 1 and tally.received == 2


@NEEDS_NODE
def test_smoke_run_against_both_servers_accounts_for_every_frame() -> None:
    clients = 40
    plan = Plan(clients=clients, workers=1, storm_timeout_s=60, steady_s=2.0, storms=2)
    results = by_name(asyncio.run(runner.measure(plan)))
    assert leftover_processes() == set(), "the benchmark left processes behind"
    assert DESIGN_NAMES <= results.keys(), DESIGN_NAMES - results.keys()
    rooms = clients // traffic.ROOM_SIZE
    expected = rooms * traffic.frames_per_room()

    for prefix in ("signal", "peerjs"):
        assert results[f"{prefix}_clients"].value == clients, results[f"{prefix}_clients"]
        assert results[f"{prefix}_frames_lost"].value == 0, results[f"{prefix}_frames_per_s"].detail
        rate = results[f"{prefix}_frames_per_s"]
        assert f"{expected}/{expected} frames" in rate.detail
        assert "MISROUTED" not in rate.detail and "duplicated" not in rate.detail
        drain = results[f"{prefix}_storm_drain_s"].value
        assert 0 < drain < 60
        # The rate is the delivered count over the measured drain time, not a constant.
        assert rate.value == pytest.approx(expected / drain, rel=0.02)
        p50, p99 = results[f"{prefix}_storm_p50_ms"].value, results[f"{prefix}_storm_p99_ms"].value
        assert 0 < p50 <= p99 <= drain * 1000 + 1
        s50, s99 = results[f"{prefix}_relay_p50_ms"].value, results[f"{prefix}_relay_p99_ms"].value
        assert 0 < s50 <= s99
        assert "steady state" in results[f"{prefix}_relay_p50_ms"].detail
        steady_frames = results[f"{prefix}_relay_p50_ms"].detail.split(" frames")[0].split()[-1]
        got, want = (int(x) for x in steady_frames.split("/"))
        assert got == want > 0
        # Resident memory of a live server process: more than an empty interpreter, less than absurd.
        assert 10 < results[f"{prefix}_rss_mb"].value < 4096

    ratio = results["signal_vs_peerjs_ratio"].value
    assert ratio == pytest.approx(results["signal_frames_per_s"].value / results["peerjs_frames_per_s"].value, rel=0.01)


def test_frames_to_a_vanished_client_are_reported_lost() -> None:
    plan = Plan(clients=8, workers=1, storm_timeout_s=3, steady_s=0.0, targets=("wallmesh",), drop=1, storms=1)
    results = by_name(asyncio.run(runner.measure(plan)))
    # Client 0 is gone before the storm: the 3 frames x 11 its room-mates send it never
    # arrive, and neither do the frames it would have sent; the other room is unaffected.
    lost = results["signal_frames_lost"].value
    assert lost > 0, results["signal_frames_per_s"].detail
    assert lost <= traffic.frames_per_room()
