"""The signaling package imports in one direction: no module needs another that needs it back.

Counted over every import statement, including those inside functions and under
``TYPE_CHECKING``, since a cycle hidden in a function still ties the two modules together.
"""

from __future__ import annotations

import ast
from pathlib import Path

import appliance.signaling

PACKAGE = Path(appliance.signaling.__file__).parent


def imports_of(path: Path) -> set[str]:
    """The appliance.signaling modules that ``path`` imports, anywhere in its body."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.startswith("appliance.signaling.") and (PACKAGE / (name.split(".")[2] + ".py")).exists():
                found.add(name.split(".")[2])
    return found


def test_no_import_cycles_in_signaling() -> None:
    graph = {p.stem: imports_of(p) - {p.stem} for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    return path + [start]
                if nxt not in path:
                    stack.append((nxt, path + [nxt]))
        return None

    cycles = [c for m in graph if (c := cycle_from(m))]
    assert not cycles, " ; ".join(" -> ".join(c) for c in cycles)
    # what app and /ws share sits below both
    assert "state" in graph["app"] and "state" in graph["ws"] and "ws" in graph["app"]
