"""The unit's parts depend on each other one way, checked over every import in the source.

``unit/`` assembles the unit and may import anything; ``display/`` and ``controls/``
talk to the unit through :mod:`appliance.wall` and import neither ``unit/`` nor each
other; ``wall/`` is plain data and logic below them all. The signaling server and
the mesh stand on their own. Every import counts: module level, inside functions,
under ``TYPE_CHECKING``, and ``__import__``/``importlib.import_module`` by name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import appliance

PACKAGE = Path(appliance.__file__).parent

#: package -> packages of ``appliance`` it must never import
FORBIDDEN = {
    "wall": {"unit", "display", "controls", "mesh", "signaling", "capture", "fleet", "commands", "demo", "bench"},
    "display": {"unit", "controls", "mesh", "signaling", "fleet", "commands", "demo", "bench"},
    "controls": {"unit", "display", "mesh", "signaling", "fleet", "commands", "demo", "bench"},
    "mesh": {"unit", "display", "controls", "wall", "signaling", "fleet", "commands", "demo", "bench"},
    "signaling": {"unit", "display", "controls", "wall", "mesh", "fleet", "capture", "commands", "demo", "bench"},
}


def imported_modules(path: Path, root: Path) -> list[tuple[int, str]]:
    """Every module ``path`` (under ``root``, the directory holding ``appliance/``) imports,
    with its line: statements anywhere in the file, and imports by name."""
    tree = ast.parse(path.read_text(), str(path))
    package = path.relative_to(root).with_suffix("").parts[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = ".".join(package[: len(package) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in ("__import__", "import_module") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def violations(package: str, forbidden: set[str], root: Path = PACKAGE.parent) -> list[str]:
    """``file:line imports module`` for each import of a forbidden ``appliance`` package."""
    bad = []
    for path in sorted((root / "appliance" / package).rglob("*.py")):
        for line, module in imported_modules(path, root):
            parts = module.split(".")
            if len(parts) > 1 and parts[0] == "appliance" and parts[1] in forbidden:
                bad.append(f"{path.relative_to(root)}:{line} imports {module}")
    return bad


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_dependencies_point_one_way(package):
    assert (PACKAGE / package).is_dir()
    assert violations(package, FORBIDDEN[package]) == []


def test_the_check_sees_imports_in_functions_by_name_and_relative(tmp_path):
    display = tmp_path / "appliance" / "display"
    display.mkdir(parents=True)
    (display / "sneaky.py").write_text(
        "import logging\n"
        "from appliance.wall.model import WallModel\n"
        "def f():\n"
        "    from appliance.unit.app import UnitDaemon\n"
        "    import appliance.controls.gpio\n"
        "    return __import__('appliance.unit.status')\n"
        "from .. import unit\n"
    )
    bad = violations("display", {"unit", "controls"}, root=tmp_path)
    assert sorted(b.split(" imports ")[0].rsplit(":", 1)[1] for b in bad) == ["4", "4", "5", "6", "7"], bad
    assert {b.split(" imports ")[1] for b in bad} == {
        "appliance.unit.app",
        "appliance.unit.app.UnitDaemon",
        "appliance.controls.gpio",
        "appliance.unit.status",
        "appliance.unit",
    }
