"""Resource samples of a set of processes and their descendants, and the growth they show.

A leak is a figure that keeps rising while the work stays the same. The soak samples every
process of a room -- each unit, the signaling server and every process under it (its
embedded store) -- at the same point of its join/leave cycle, and fits a least-squares line
through each process's series: the slope is the growth per minute, and the noise of a busy
process (allocator arenas, buffers of a call in flight) averages out instead of deciding
the figure the way a first-against-last difference would.

Each sample of a process is read from ``/proc/PID``: resident memory (``VmRSS``), open file
descriptors (entries of ``fd/``), kernel threads (``Threads``), and, where the process
reports them, its asyncio tasks (a callback that reads the unit's status document or the
server's metrics).

Resident memory is also split by where it lives (``/proc/PID/smaps``), so a slope says what
grows: ``heap`` (the ``[heap]`` segment: malloc's main arena, which the main thread
allocates from), ``arenas`` (malloc's other arenas: 64 MiB-aligned anonymous heaps, one
per thread until there are 8 per core, then shared), ``anon`` (every other anonymous
mapping: Python's object arenas, allocations large enough for malloc to map them on their
own, thread stacks, codec buffers) and ``files`` (code and mapped files); ``arena_count``
counts malloc's other arenas.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass
class Figures:
    """One process at one moment."""

    rss_kb: int
    fds: int
    threads: int
    tasks: int | None = None
    memory: dict[str, int] | None = None  # resident KiB by kind (:func:`memory_map`), arena_count


@dataclass
class Series:
    """Every sample of one process: (minutes since the first sample, figures)."""

    name: str
    pid: int
    samples: list[tuple[float, Figures]] = field(default_factory=list)

    def after(self, minute: float) -> list[tuple[float, Figures]]:
        return [(t, f) for t, f in self.samples if t >= minute]

    def rss_slope(self, warmup_min: float) -> float | None:
        """KiB per minute of resident memory after the warm-up (least squares), None with < 3 samples."""
        points = [(t, float(f.rss_kb)) for t, f in self.after(warmup_min)]
        return slope(points) if len(points) >= 3 else None

    def fd_growth(self, warmup_min: float) -> int | None:
        """Descriptors gained after the warm-up: the fewest held in the last three samples over
        the fewest held in the first three (a socket still closing at one sample is not a leak)."""
        fds = [f.fds for _, f in self.after(warmup_min)]
        if len(fds) < 2:
            return None
        edge = min(3, len(fds) // 2) or 1
        return min(fds[-edge:]) - min(fds[:edge])

    def memory_slope(self, kind: str, warmup_min: float) -> float | None:
        """KiB per minute of one kind of resident memory (:func:`memory_map`) after the warm-up."""
        points = [(t, float(f.memory[kind])) for t, f in self.after(warmup_min) if f.memory and kind in f.memory]
        return slope(points) if len(points) >= 3 else None

    def span(self, attr: str, warmup_min: float = 0.0) -> tuple[int, int] | None:
        values = [getattr(f, attr) for _, f in self.after(warmup_min) if getattr(f, attr) is not None]
        return (min(values), max(values)) if values else None


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of ``y`` over ``x``."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def read(pid: int) -> Figures | None:
    """``pid``'s figures now, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            status = dict(line.split(":", 1) for line in fh if ":" in line)
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError):
        return None
    rss = status.get("VmRSS", "0 kB").split()[0]
    try:
        with open(f"/proc/{pid}/smaps") as fh:
            memory: dict[str, int] | None = memory_map(fh.read())
    except OSError:
        memory = None
    return Figures(rss_kb=int(rss), fds=fds, threads=int(status.get("Threads", "0").strip() or 0), memory=memory)


HEAP_SPAN = 64 << 20  # a 64-bit glibc's arena heap: HEAP_MAX_SIZE, and aligned to it
MEMORY_KINDS = ("heap", "arenas", "anon", "files")
_MAPPING = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ (\d+)\s*(.*)$")


def memory_map(smaps: str) -> dict[str, int]:
    """Resident KiB of a ``/proc/PID/smaps`` text by kind (see the module docstring), and
    ``arena_count``: how many of malloc's other arenas' heaps are mapped."""
    maps: list[tuple[int, int, bool, str, int]] = []  # start, end, anonymous, name, rss
    for line in smaps.splitlines():
        m = _MAPPING.match(line)
        if m:
            maps.append((int(m[1], 16), int(m[2], 16), m[3] == "0", m[4].strip(), 0))
        elif line.startswith("Rss:") and maps:
            start, end, anon, name, _ = maps[-1]
            maps[-1] = (start, end, anon, name, int(line.split()[1]))
    out = dict.fromkeys(MEMORY_KINDS, 0) | {"arena_count": 0}
    i = 0
    while i < len(maps):
        start, _, anon, name, rss = maps[i]
        if anon and not name and start % HEAP_SPAN == 0:
            # an arena heap: its used part and the rest of its reservation, back to back
            j, total = i, 0
            while j < len(maps) and maps[j][2] and not maps[j][3] and maps[j][0] < start + HEAP_SPAN and (j == i or maps[j][0] == maps[j - 1][1]):
                total += maps[j][4]
                j += 1
            if maps[j - 1][1] == start + HEAP_SPAN:
                out["arenas"] += total
                out["arena_count"] += 1
                i = j
                continue
        kind = "heap" if name == "[heap]" else "anon" if anon and (not name or name.startswith("[")) else "files"
        out[kind] += rss
        i += 1
    return out


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from each thread's ``children`` list)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out.extend(int(c) for c in fh.read().split())
        except OSError:
            continue
    return out


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return "?"


class Sampler:
    """Samples named root processes and every descendant of theirs, each under a name of its own.

    A descendant is named after its root and its command (``server/python3``), or after
    ``labels[root]`` when given (``store``); ``tasks`` maps a root's name to a callback
    giving its asyncio task count (None when unknown).
    A process that appears later is added at the sample that first sees it.
    """

    def __init__(self, roots: Mapping[str, int], tasks: Mapping[str, Callable[[], int | None]] | None = None,
                 labels: Mapping[str, str] | None = None) -> None:
        self.roots = dict(roots)
        self.labels = dict(labels or {})
        self.tasks = dict(tasks or {})
        self.series: dict[int, Series] = {}
        self.t0: float | None = None

    def add(self, name: str, pid: int, tasks: Callable[[], int | None] | None = None) -> None:
        self.roots[name] = pid
        if tasks is not None:
            self.tasks[name] = tasks

    def processes(self) -> dict[int, str]:
        """PID -> name of every root and descendant alive now."""
        found: dict[int, str] = {}
        for name, pid in self.roots.items():
            todo = [(pid, name)]
            while todo:
                current, label = todo.pop()
                if current in found or not os.path.exists(f"/proc/{current}"):
                    continue
                found[current] = label
                kids = children(current)
                label_of = self.labels.get(name)
                todo.extend((child, label_of if label_of and len(kids) == 1 else f"{name}/{comm(child)}") for child in kids)
        return found

    def sample(self, minute: float | None = None) -> int:
        """Take one sample of every process, stamped ``minute`` (by default, minutes since the
        first sample); returns how many were read."""
        now = time.monotonic()
        if self.t0 is None:
            self.t0 = now
        if minute is None:
            minute = (now - self.t0) / 60
        read_count = 0
        for pid, name in self.processes().items():
            figures = read(pid)
            if figures is None:
                continue
            if name in self.tasks:
                figures.tasks = self.tasks[name]()
            series = self.series.setdefault(pid, Series(name, pid))
            series.samples.append((minute, figures))
            read_count += 1
        return read_count

    def names(self) -> set[str]:
        return {s.name for s in self.series.values()}
