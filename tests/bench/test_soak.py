"""The soak's machinery: its sampler sees every process of the room, and a leak shows.

A short soak of a real room (two ``wallmesh run`` processes and a ``wallmesh signal``
with its embedded store, in a CPU-quota cgroup when this machine allows one) with a
leak of our making sampled alongside: a process that keeps allocating memory and
opening descriptors. Its slope and growth must come out positive -- so the soak's
figures can fail -- and every process of the room must be in every sample. The
figures themselves are ``wallmesh bench faults``'s.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.bench import soak
from appliance.bench.cpuquota import CpuQuota
from appliance.bench.procsample import Figures, Sampler, Series, memory_map, read, slope

LEAK = """
import os, sys, time
hoard, files = [], []
print("ready", flush=True)
while True:
    hoard.append(bytearray(os.urandom(1024 * 1024)))  # 1 MiB a second, touched so it is resident
    if len(hoard) % 3 == 0:
        files.append(open(os.devnull))
    time.sleep(1.0)
"""


def test_slope_and_fd_growth_from_a_series() -> None:
    assert slope([(0, 10.0), (1, 12.0), (2, 14.0)]) == pytest.approx(2.0)
    assert slope([(0, 5.0), (1, 5.0)]) == 0.0
    series = Series("p", 1, [(t, Figures(rss_kb=1000 + 100 * t, fds=10 + (t >= 3), threads=1)) for t in range(6)])
    assert series.rss_slope(warmup_min=1) == pytest.approx(100.0)
    assert series.fd_growth(warmup_min=1) == 1
    assert series.rss_slope(warmup_min=4) is None  # too few samples left after the warm-up
    flat = Series("q", 2, [(t, Figures(rss_kb=1000, fds=10 + (t % 2), threads=1)) for t in range(6)])
    assert flat.fd_growth(warmup_min=0) == 0  # a descriptor open at some samples is not growth


def _mapping(start: int, end: int, rss: int, inode: int = 0, name: str = "") -> str:
    return f"{start:x}-{end:x} rw-p 00000000 00:00 {inode}    {name}\nSize: {(end - start) >> 10} kB\nRss: {rss} kB\n"


def test_memory_map_splits_resident_memory_by_kind() -> None:
    mib = 1 << 20
    base = 0x7F00_0000_0000  # 64 MiB-aligned
    smaps = "".join([
        _mapping(0x5555_0000_0000, 0x5555_0010_0000, 200, inode=1234, name="/usr/bin/python3"),
        _mapping(0x5555_0100_0000, 0x5555_0300_0000, 5000, name="[heap]"),
        _mapping(base, base + 3 * mib, 2048),  # an arena's used part ...
        _mapping(base + 3 * mib, base + 64 * mib, 0),  # ... and the rest of its reservation
        _mapping(base + 64 * mib, base + 80 * mib, 700),  # aligned, but not an arena's 64 MiB
        _mapping(base + 200 * mib, base + 201 * mib, 300),  # an object arena of Python's
        _mapping(0x7FFF_0000_0000, 0x7FFF_0002_1000, 40, name="[stack]"),
    ])
    assert memory_map(smaps) == {"heap": 5000, "arenas": 2048, "anon": 700 + 300 + 40, "files": 200, "arena_count": 1}


def test_a_threads_malloc_arena_is_seen_and_capped_by_malloc_arena_max() -> None:
    script = ("import threading, time\n"
              "def work():\n    keep = bytearray(200000); time.sleep(60)\n"
              "threading.Thread(target=work, daemon=True).start(); time.sleep(0.5); print('ready', flush=True); time.sleep(60)")
    counts = {}
    for arena_max in ("", "1"):
        env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | ({"MALLOC_ARENA_MAX": arena_max} if arena_max else {})
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            figures = read(proc.pid)
            assert figures is not None and figures.memory is not None
            counts[arena_max] = figures.memory["arena_count"]
            assert sum(figures.memory[k] for k in ("heap", "arenas", "anon", "files")) == pytest.approx(figures.rss_kb, rel=0.05)
        finally:
            proc.kill()
            proc.wait()
    assert counts[""] >= 1 and counts["1"] == 0, counts


def test_sampler_follows_children_and_names_them(tmp_path: Path) -> None:
    script = ("import subprocess, sys, time; "
              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        sampler = Sampler({"parent": parent.pid}, labels={"parent": "child"})
        for _ in range(50):
            if len(sampler.processes()) == 2:
                break
            asyncio.run(asyncio.sleep(0.1))
        assert sampler.sample() == 2
        assert sampler.names() == {"parent", "child"}
    finally:
        for pid in sampler.processes():
            os.kill(pid, 9)
        parent.wait()


@pytest.mark.skipif(os.geteuid() != 0, reason="making a cgroup needs root (CI runs as root)")
def test_cpu_quota_group_holds_what_it_starts_and_goes_away() -> None:
    with CpuQuota(0.5, name=f"wallmesh-test-{os.getpid()}") as quota:
        assert quota.path is not None, quota.reason
        proc = subprocess.Popen([*quota.prefix(), sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            for _ in range(50):
                if proc.pid in quota.pids():
                    break
                asyncio.run(asyncio.sleep(0.1))
            assert proc.pid in quota.pids()
            path = quota.path
        finally:
            proc.kill()
            proc.wait()
    assert not path.exists()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_short_soak_samples_every_process_and_shows_a_leak(tmp_path: Path) -> None:
    leak = subprocess.Popen([sys.executable, "-c", LEAK], stdout=subprocess.PIPE, text=True)
    try:
        assert leak.stdout is not None and leak.stdout.readline().strip() == "ready"
        run = asyncio.run(soak.soak(tmp_path, minutes=0.6, warmup_min=0.0, event_every_s=6.0, units=2,
                                    also={"leak": leak.pid}))
    finally:
        leak.kill()
        leak.wait()
    by_name = {s.name: s for s in run.series}
    assert set(by_name) == {"server", "store", "unit-1", "unit-2", "leak"}, set(by_name)
    samples = {name: len(s.samples) for name, s in by_name.items()}
    assert len(set(samples.values())) == 1 and samples["leak"] >= 3, samples  # every process in every sample
    assert run.events >= 4  # leaves and joins went through the units' status endpoints
    assert all(f.tasks is not None for name in ("server", "unit-1", "unit-2") for _, f in by_name[name].samples)

    assert all(f.memory and f.memory["files"] > 0 for s in by_name.values() for _, f in s.samples)
    # the leak's bytearrays are malloc'd on its main thread, or mapped on their own when large
    leak_memory = (by_name["leak"].memory_slope("heap", 0.0) or 0) + (by_name["leak"].memory_slope("anon", 0.0) or 0)
    assert leak_memory > 20000, leak_memory
    leak_slope = by_name["leak"].rss_slope(0.0)
    # ~60 MiB/min allocated: well above what a unit grows by in its first minute (~15 MiB/min)
    assert leak_slope is not None and leak_slope > 20000, leak_slope
    assert (by_name["leak"].fd_growth(0.0) or 0) > 0
    worst, where = run.worst_rss()
    assert where is by_name["leak"] and worst == leak_slope
    results = {r.name: r for r in soak.results(run)}
    assert results["soak_rss_slope_kb_per_min"].value == round(leak_slope, 1)
    assert "worst leak" in results["soak_rss_slope_kb_per_min"].detail
    assert (results["soak_fd_growth"].value or 0) > 0
