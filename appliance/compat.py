"""The failure policy of the hooks modules that reach into aiortc, aioice and aiohttp.

wallmesh's media core and signaling relay are fast because they replace a few private
parts of those libraries (see :mod:`appliance.mesh.aiortc_hooks`,
:mod:`appliance.mesh.aioice_hooks`, :mod:`appliance.signaling.aiohttp_hooks` — the only
modules allowed to, ``tests/test_internals.py`` enforces it). Two rules, the same everywhere:

* **A version that was not tested refuses to start.** :func:`require_tested` compares the
  installed version with wallmesh's own requirement on it (read from the installed
  distribution's metadata) and raises :class:`~appliance.errors.LibraryMismatch`, whose
  one-line message names the package, the version found and the version tested.
* **A hook that is missing at run time is never silent and never a crash.** The hook
  logs once (:func:`hook_off`) that its optimisation is off and the library's own path
  is taken instead.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import threading

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet

from appliance.errors import LibraryMismatch

log = logging.getLogger(__name__)

#: The distribution whose metadata holds the pins.
DISTRIBUTION = "wallmesh"

_off_lock = threading.Lock()
_off: set[tuple[str, str]] = set()  # (package, hook) already reported off in this process


@functools.cache
def requirement(package: str) -> SpecifierSet | None:
    """wallmesh's installed requirement on ``package`` (``==1.16.0``, ``>=3.10,<4``), if any."""
    try:
        requires = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return None
    for line in requires:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.name.lower() == package.lower() and req.marker is None:
            return req.specifier
    return None


def installed_version(package: str, module_version: str | None = None) -> str:
    """The version that runs: the imported module's ``__version__``, else the distribution's."""
    if module_version:
        return module_version
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "(unknown)"


def require_tested(package: str, found: str, *, tested: str) -> None:
    """Raise :class:`LibraryMismatch` unless ``found`` satisfies wallmesh's pin on ``package``.

    ``tested`` is the version the hooks were verified against; it also stands in for the
    pin when the installed metadata has none (a source tree, or an install older than the pin).
    """
    spec = requirement(package) or SpecifierSet(f"=={tested}")
    if not spec.contains(found, prereleases=True):
        raise LibraryMismatch(package, found, str(spec) or f"=={tested}", tested)


def hook_off(package: str, hook: str, consequence: str, why: str = "its internals differ") -> None:
    """Log, once per process and hook, that ``hook`` is off and what that costs."""
    with _off_lock:
        if (package, hook) in _off:
            return
        _off.add((package, hook))
    log.warning("%s: %s is off (%s); %s", package, hook, why, consequence)


def hooks_off() -> set[tuple[str, str]]:
    """The (package, hook) pairs reported off so far (for status and tests)."""
    with _off_lock:
        return set(_off)
