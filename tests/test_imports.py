"""The package's import graph has no cycles, and every module imports on its own, off a Pi.

The graph counts every import a module can execute — top-level and inside functions —
except those under ``if TYPE_CHECKING:``, which never run. Relative imports are resolved,
and ``from pkg import name`` is an edge to the module ``pkg.name`` when there is one
(otherwise to ``pkg``). Importing a submodule also runs its parent packages' ``__init__``;
those implicit edges are not counted, or every package whose ``__init__`` re-exports a
child would count as a cycle.
"""

from __future__ import annotations

import ast
import itertools
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "appliance"

#: Libraries that exist only on a Pi, or with an optional extra: adapters import them when
#: a device is opened, never when the module is imported.
HARDWARE_LIBRARIES = ("picamera2", "libcamera", "alsaaudio")

Edge = tuple[str, int]  # (imported module, line)


def modules(root: Path, package: str) -> dict[str, Path]:
    """Every module of ``package`` under ``root``, by dotted name (packages by their own name)."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, outside ``if TYPE_CHECKING:`` bodies."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def import_graph(root: Path, package: str) -> dict[str, dict[str, int]]:
    """module -> {module it imports: first line}, inside ``package`` only."""
    mods = modules(root, package)
    graph: dict[str, dict[str, int]] = {m: {} for m in mods}
    for name, path in mods.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in mods else base)
            for target in targets:
                if target in mods and target != name:
                    graph[name].setdefault(target, node.lineno)
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One concrete cycle (a path back to its start) per strongly connected component."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def strong(v: str) -> None:  # Tarjan; the package is far too small for recursion limits
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return [_path_back(graph, comp[0], set(comp)) for comp in components]


def _path_back(graph: dict[str, dict[str, int]], start: str, within: set[str]) -> list[str]:
    """The shortest path start -> ... -> start inside one component (breadth first)."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v]):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if w in within and w not in came_from:
                    came_from[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"{start} is in a component but no path leads back to it")


def describe(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    steps = [f"{a} (line {graph[a][b]}) -> {b}" for a, b in itertools.pairwise(cycle)]
    return "\n    ".join(steps)


def test_the_package_has_no_import_cycles():
    graph = import_graph(ROOT, PACKAGE)
    assert len(graph) > 50, "the package was not found where the test looks for it"
    found = cycles(graph)
    assert not found, "import cycles:\n  " + "\n  ".join(describe(graph, c) for c in found)


def test_the_cycle_finder_sees_lazy_relative_and_from_imports_but_not_type_checking(tmp_path):
    """The detector on a package made to have known cycles, so the test above can fail."""
    files = {
        "pkg/__init__.py": "",
        "pkg/ports.py": "def pick():\n    from . import adapter  # a lazy, relative, module-as-name import\n",
        "pkg/adapter.py": "from pkg.ports import pick\n",
        "pkg/sub/__init__.py": "from .runner import run\n",  # a parent re-exporting a child: no cycle
        "pkg/sub/runner.py": "import pkg.sub.figures\nrun = 1\n",
        "pkg/sub/figures.py": (
            "from typing import TYPE_CHECKING\nimport typing\nif TYPE_CHECKING:\n    from pkg.sub.runner import run\n"
            "if typing.TYPE_CHECKING:\n    import pkg.sub.runner\nelse:\n    import pkg.leaf\n"
        ),
        "pkg/leaf.py": "class A:\n    def f(self):\n        import pkg.sub.figures\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.ports"] == {"pkg.adapter": 2}
    assert graph["pkg.sub.figures"] == {"pkg.leaf": 8}
    found = cycles(graph)
    assert sorted(found) == [["pkg.adapter", "pkg.ports", "pkg.adapter"], ["pkg.leaf", "pkg.sub.figures", "pkg.leaf"]]
    assert describe(graph, found[0]).startswith("pkg.")


_IMPORT_EACH = r"""
import importlib, json, sys, traceback
names, package, hardware = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3:]
failures, loaded_hardware = {}, {}
for name in names:
    # forget the package, not third-party libraries: each module imports as if first
    for loaded in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[loaded]
    before = {h for h in hardware if h in sys.modules}
    try:
        module = importlib.import_module(name)
        assert module.__name__ == name
    except BaseException:
        failures[name] = traceback.format_exc(limit=-4)
    pulled = sorted(h for h in hardware if h in sys.modules and h not in before)
    if pulled:
        loaded_hardware[name] = pulled
        for h in pulled:
            del sys.modules[h]
print(json.dumps({"failures": failures, "hardware": loaded_hardware, "file": sys.modules[package].__file__}))
"""


def import_each(root: Path, package: str, hardware: tuple[str, ...] = HARDWARE_LIBRARIES) -> dict:
    """Import every module of ``package`` under ``root`` in one fresh interpreter, each as if first."""
    names = sorted(modules(root, package))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH, json.dumps(names), package, *hardware],
        capture_output=True, text=True, timeout=300, cwd=root, env=env, check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(report["file"]).resolve().is_relative_to(root), f"imported {report['file']}, not {root}'s package"
    return report


def test_every_module_imports_by_itself_in_a_fresh_interpreter():
    report = import_each(ROOT, PACKAGE)
    assert not report["failures"], "modules that do not import:\n" + "\n".join(
        f"--- {name}\n{tb}" for name, tb in report["failures"].items()
    )
    assert not report["hardware"], f"modules that import a hardware library when imported: {report['hardware']}"


def test_the_import_check_catches_order_dependence_and_eager_hardware(tmp_path):
    """On a package made to fail: ``b`` imports only after ``a`` (a top-level circle), and
    ``camera`` imports its hardware library when imported."""
    files = {
        "pkg/__init__.py": "",
        "pkg/a.py": "X = 1\nfrom pkg.b import Y\n",
        "pkg/b.py": "from pkg.a import X\nY = 2\n",
        "pkg/camera.py": "import fakehw\n",
        "pkg/lazy.py": "def open():\n    import fakehw\n",
        "fakehw.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    report = import_each(tmp_path, "pkg", ("fakehw",))
    assert sorted(report["failures"]) == ["pkg.b"] and "ImportError" in report["failures"]["pkg.b"]
    assert report["hardware"] == {"pkg.camera": ["fakehw"]}
