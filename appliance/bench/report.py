"""Benchmark results and how they are printed (a table, or JSON with stable names)."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from typing import Any

from appliance import __version__


@dataclass
class Result:
    """One figure. ``name`` is stable across versions so figures can be compared over time."""

    name: str
    value: float | int | None
    unit: str
    detail: str = ""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat") as stat:
        after_name = stat.read().rsplit(")", 1)[1].split()
    return (int(after_name[11]) + int(after_name[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it (a unit and its media workers), from ``/proc``."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        try:
            with open(f"/proc/{current}/task/{current}/children") as children:
                todo.extend(int(child) for child in children.read().split())
        except OSError:  # it ended meanwhile
            continue
    return tree


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by ``pid`` and the processes below it that are still running."""
    total = 0.0
    for member in process_tree(pid):
        try:
            total += cpu_seconds(member)
        except OSError:
            continue
    return total


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """User + system CPU seconds each thread of a process has used so far, by thread id."""
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[int, float] = {}
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return used
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as stat:
                after_name = stat.read().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended between listing and reading
            continue
        used[int(task)] = (int(after_name[11]) + int(after_name[12])) / tick
    return used


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "wallmesh": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({"machine": machine(), "results": [asdict(r) for r in self.results]}, indent=2)

    def to_table(self) -> str:
        rows = [(r.name, _fmt(r.value), r.unit, r.detail) for r in self.results]
        widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(("name", "value", "unit"))]
        lines = [f"{'name':<{widths[0]}}  {'value':>{widths[1]}}  {'unit':<{widths[2]}}  detail"]
        for name, value, unit, detail in rows:
            lines.append(f"{name:<{widths[0]}}  {value:>{widths[1]}}  {unit:<{widths[2]}}  {detail}")
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)
