"""Only the hooks modules reach into other packages' internals.

wallmesh replaces private parts of aiortc, aioice and aiohttp for speed. Those reaches
break when a library changes, so they live in one module per library (listed in
:data:`HOOKS`), behind calls named for what they do, with one failure policy
(:mod:`appliance.compat`). This test walks every other module under ``appliance/`` with
:mod:`ast` and fails on:

* an underscore attribute of anything but ``self``/``cls``/``super()`` — unless the
  module itself defines that name on its own classes (Python's "private to this module"
  convention: ``other._pending`` between two instances of one class is fine);
* ``getattr``/``setattr``/``hasattr``/``delattr`` with an underscore name, same rule;
* a name-mangled string such as ``"_RTCRtpReceiver__decoder_queue"``;
* importing an underscore module or name from a package other than ``appliance``;
* assigning (or deleting, or ``setattr``-ing) an attribute of an imported module or name
  from outside ``appliance`` — monkeypatching another package.

Known limitation: the own-name exemption is by name, so a module that defines ``self._x``
could still read ``something_else._x`` unseen; the hooks modules are where such code goes.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "appliance"

#: The only modules allowed to touch another package's internals.
HOOKS = (
    "appliance/mesh/aiortc_hooks/",  # a package: receiver swaps, decode queues, jitter buffers, sender hooks
    "appliance/mesh/aioice_hooks.py",
    "appliance/signaling/aiohttp_hooks.py",
)

#: Underscore attributes that are public API despite the underscore.
PUBLIC_UNDERSCORE_ATTRS = {
    "_replace", "_asdict", "_fields", "_make", "_field_defaults",  # namedtuple's API
    "_exit",  # os._exit: documented way to end a forked child
    "_getframe",  # sys._getframe: documented (CPython) frame access
}

#: (module path, imported dotted name) pairs allowed despite an underscore.
ALLOWED_IMPORTS = {
    # pygame-ce's GPU renderer lives in pygame._sdl2.video; it is pygame-ce's own documented
    # module for Renderer/Texture (there is no other import path for it).
    ("appliance/display/screen.py", "pygame._sdl2"),
    ("appliance/display/screen.py", "pygame._sdl2.video"),
    ("appliance/display/compositor.py", "pygame._sdl2.video"),
}

MANGLED = re.compile(r"^_[A-Za-z][A-Za-z0-9]*__[A-Za-z_]\w*$")
ATTR_CALLS = {"getattr", "setattr", "hasattr", "delattr"}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _foreign(module: str | None, level: int = 0) -> bool:
    """True for an absolute import from a package other than ``appliance``."""
    return level == 0 and module is not None and module.split(".")[0] != "appliance"


def _own_names(tree: ast.AST) -> set[str]:
    """Underscore names this module defines on its own classes and instances."""
    own: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    own.add(item.name)
                elif isinstance(item, (ast.Assign, ast.AnnAssign)):
                    targets = item.targets if isinstance(item, ast.Assign) else [item.target]
                    own.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                own.add(node.attr)
    return {n for n in own if _private(n)}


def _foreign_imports(tree: ast.AST) -> set[str]:
    """Local names bound to modules or objects imported from outside ``appliance``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _foreign(alias.name):
                    names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and _foreign(node.module, node.level) and node.module != "__future__":
            names.update(alias.asname or alias.name for alias in node.names)
    return names


def _root(node: ast.expr) -> ast.expr:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node


def _is_self(node: ast.expr) -> bool:
    if isinstance(node, ast.Name) and node.id in ("self", "cls"):
        return True
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"


def violations(source: str, path: str) -> list[str]:
    """Every reach into another package's internals in one module's source."""
    tree = ast.parse(source, path)
    own = _own_names(tree)
    constants = {  # module-level NAME = "string": getattr(obj, NAME) reads that attribute
        t.id: node.value.value
        for node in tree.body  # type: ignore[attr-defined]
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        for t in node.targets
        if isinstance(t, ast.Name)
    }
    imported = _foreign_imports(tree)
    found: list[str] = []

    def report(node: ast.AST, what: str) -> None:
        found.append(f"{path}:{getattr(node, 'lineno', 0)}: {what}")

    def private_access(node: ast.AST, obj: ast.expr, name: str) -> None:
        if _private(name) and not _is_self(obj) and name not in own and name not in PUBLIC_UNDERSCORE_ATTRS:
            report(node, f"underscore attribute {ast.unparse(obj)}.{name}")

    def monkeypatch(node: ast.AST, target: ast.expr) -> None:
        root = _root(target)
        if isinstance(target, ast.Attribute) and isinstance(root, ast.Name) and root.id in imported:
            report(node, f"assigns to another package's {ast.unparse(target)}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            private_access(node, node.value, node.attr)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ATTR_CALLS:
            args = node.args
            if len(args) >= 2 and isinstance(args[1], ast.Constant) and isinstance(args[1].value, str):
                private_access(node, args[0], args[1].value)
            elif len(args) >= 2 and isinstance(args[1], ast.Name) and args[1].id in constants:
                private_access(node, args[0], constants[args[1].id])
            if node.func.id in ("setattr", "delattr") and args and isinstance(args[0], ast.Name) and args[0].id in imported:
                report(node, f"{node.func.id} on another package's {args[0].id}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MANGLED.match(node.value):
            report(node, f"name-mangled string {node.value!r}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                dotted = alias.name
                if _foreign(dotted) and any(_private(p) for p in dotted.split(".")) and (path, dotted) not in ALLOWED_IMPORTS:
                    report(node, f"imports {dotted}")
        elif isinstance(node, ast.ImportFrom) and _foreign(node.module, node.level) and node.module != "__future__":
            module = node.module or ""
            if any(_private(p) for p in module.split(".")) and (path, module) not in ALLOWED_IMPORTS:
                report(node, f"imports from {module}")
            for alias in node.names:
                if _private(alias.name):
                    report(node, f"imports {module}.{alias.name}")
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for target in targets:
                for part in ast.walk(target) if isinstance(target, (ast.Tuple, ast.List)) else [target]:
                    if isinstance(part, ast.expr):
                        monkeypatch(node, part)
    return found


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def is_hooks(rel: str) -> bool:
    return any(rel.startswith(h) if h.endswith("/") else rel == h for h in HOOKS)


def test_no_module_but_the_hooks_reaches_into_another_package():
    found = []
    for path in modules():
        rel = relative(path)
        if not is_hooks(rel):
            found += violations(path.read_text(), rel)
    assert not found, "move these behind a call in a hooks module (see tests/test_internals.py):\n" + "\n".join(found)


def test_the_hooks_modules_exist_and_are_where_the_reaching_is():
    """The scan really sees internals: each library's hooks module trips it (so it is exempt for a reason)."""
    for hook in HOOKS:
        paths = sorted((ROOT / hook).rglob("*.py")) if hook.endswith("/") else [ROOT / hook]
        assert paths and all(p.exists() for p in paths), hook
        assert sum(len(violations(p.read_text(), relative(p))) for p in paths) > 0, hook


def test_the_allowlist_names_only_imports_that_exist():
    """A stale allowlist entry would silently allow the next reach under that name."""
    for path, dotted in ALLOWED_IMPORTS:
        assert dotted in (ROOT / path).read_text(), (path, dotted)


@pytest.mark.parametrize(
    "snippet",
    [
        "def f(ws):\n    return ws._writer\n",
        "def f(site):\n    return site._server.sockets\n",
        "def f(r):\n    return getattr(r, '_RTCRtpReceiver__decoder_queue', None)\n",
        "def f(r):\n    setattr(r, '_thing', 1)\n",
        "HOOK = '_send_keyframe'\ndef f(sender):\n    return getattr(type(sender), HOOK)\n",
        "QUEUE = '_RTCRtpReceiver__jitter_buffer'\n",
        "from aiortc._internal import x\n",
        "from aiortc.rtp import _private_helper\n",
        "import aiohttp._websocket.writer\n",
        "import aioice.ice\naioice.ice.get_host_addresses = lambda *a: []\n",
        "import aiortc.codecs.h264 as h264\nh264.MAX_BITRATE = 1\n",
        "from aiortc import RTCRtpSender\nRTCRtpSender.getStats = None\n",
        "import aiortc.rtcrtpsender as s\nsetattr(s, 'get_encoder', None)\n",
        "def f(args):\n    return args._module.run(args)\n",
    ],
)
def test_each_kind_of_reach_is_caught(snippet):
    assert violations(snippet, "appliance/example.py"), snippet


@pytest.mark.parametrize(
    "snippet",
    [
        "class A:\n    def __init__(self):\n        self._x = 1\n    def same(self, other):\n        return other._x\n",
        "class A:\n    def f(self):\n        return super()._g() or self._h or type(self).__name__\n",
        "def f(p):\n    return p._replace(x=1)._asdict()\n",
        "import os\nos._exit(0)\n",
        "from __future__ import annotations\nfrom appliance import __version__\n",
        "from appliance.mesh import receive\nx = receive.Latest()\n",
        "import logging\nlog = logging.getLogger(__name__)\nlog.propagate = False\n",
    ],
)
def test_own_privates_public_underscore_api_and_our_own_modules_are_fine(snippet):
    assert violations(snippet, "appliance/example.py") == []
