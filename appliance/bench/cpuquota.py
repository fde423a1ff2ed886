"""A CPU quota for a group of benchmark processes: a cgroup of their own.

The soak runs a whole room under a quota so that it behaves as on a unit that has no
spare cores, and so that a long run cannot take the whole machine from everything else
on it. Where the kernel's unified hierarchy (cgroup v2) has the ``cpu`` controller, the
group gets ``cpu.max``; where ``cpu`` is still bound to a v1 hierarchy (``cpu`` beside a
``unified`` tree that has no controllers, as on this development machine), it gets
``cpu.cfs_quota_us`` over ``cpu.cfs_period_us`` -- the same CFS bandwidth limit under
its older name. Making a cgroup needs root; without it (or without either interface)
:class:`CpuQuota` says why and runs the processes unlimited.

Processes join the group as they start (:meth:`CpuQuota.prefix`: a shell that writes its
own PID to ``cgroup.procs`` and then execs the command), so every child they fork later --
the signaling server's embedded store -- is in it from its first instruction.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Self

CGROUP = Path("/sys/fs/cgroup")
PERIOD_US = 100_000


def _is_cgroup2(path: Path) -> bool:
    """Whether ``path`` is a cgroup2 mount (its root holds ``cgroup.controllers``)."""
    return (path / "cgroup.controllers").is_file()


class CpuQuota:
    """A cgroup limited to ``cores`` CPUs; ``path`` is None (and ``reason`` says why) when none could be made."""

    def __init__(self, cores: float, name: str | None = None, *, root: Path = CGROUP) -> None:
        self.cores = cores
        self.name = name or f"wallmesh-soak-{os.getpid()}"
        self.root = root
        self.path: Path | None = None
        self.kind = ""  # "cpu.max" (v2) or "cfs_quota_us" (v1)
        self.reason = ""

    def open(self) -> Self:
        quota = int(self.cores * PERIOD_US)
        for base in (self.root, self.root / "unified"):
            if _is_cgroup2(base) and "cpu" in (base / "cgroup.controllers").read_text().split():
                try:
                    if "cpu" not in (base / "cgroup.subtree_control").read_text().split():
                        (base / "cgroup.subtree_control").write_text("+cpu")
                    path = base / self.name
                    path.mkdir(exist_ok=True)
                    (path / "cpu.max").write_text(f"{quota} {PERIOD_US}")
                except OSError as exc:
                    self.reason = f"cgroup v2 at {base}: {exc.strerror or exc}"
                    continue
                self.path, self.kind = path, "cpu.max"
                return self
        for name in ("cpu", "cpu,cpuacct"):
            base = self.root / name
            if not (base / "cpu.cfs_quota_us").is_file():
                continue
            try:
                path = base / self.name
                path.mkdir(exist_ok=True)
                (path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (path / "cpu.cfs_quota_us").write_text(str(quota))
            except OSError as exc:
                self.reason = f"cgroup v1 at {base}: {exc.strerror or exc}"
                continue
            self.path, self.kind = path, "cfs_quota_us"
            return self
        self.reason = self.reason or "no cgroup with a CPU controller is mounted"
        return self

    def prefix(self) -> list[str]:
        """A command prefix that starts the command inside the group (nothing when there is none)."""
        if self.path is None:
            return []
        return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.path / "cgroup.procs")]

    def pids(self) -> list[int]:
        if self.path is None:
            return []
        try:
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def throttling(self) -> dict[str, float]:
        """How often the quota held the group back: periods, throttled periods, seconds throttled."""
        if self.path is None:
            return {}
        try:
            stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines() if " " in line)
        except (OSError, ValueError):
            return {}
        # v2 counts throttled time in microseconds, v1 in nanoseconds
        throttled_s = int(stat.get("throttled_usec", 0)) / 1e6 + int(stat.get("throttled_time", 0)) / 1e9
        return {"periods": int(stat.get("nr_periods", 0)), "throttled": int(stat.get("nr_throttled", 0)), "throttled_s": throttled_s}

    def describe(self) -> str:
        if self.path is None:
            return f"no CPU quota ({self.reason})"
        return f"CPU quota {self.cores:g} cores ({self.kind})"

    def close(self) -> None:
        """Remove the group (idempotent); a process still in it goes back to the parent group first."""
        path, self.path = self.path, None
        if path is None:
            return
        with contextlib.suppress(OSError):
            for pid in (path / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (path.parent / "cgroup.procs").write_text(pid)
        with contextlib.suppress(OSError):
            path.rmdir()

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()
