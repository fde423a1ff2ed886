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
from appliance.bench.procsample import Figures, Sampler, Series, slope

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
