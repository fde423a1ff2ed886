"""Which host addresses aioice gathers ICE candidates on, chosen per block of code.

aioice gathers host candidates from every interface except loopback, through its module
function ``aioice.ice.get_host_addresses`` — which it looks up by name each time a
connection gathers, and which offers no parameter to change. A wall unit must offer
the address(es) of its LAN interface, and tests and the demo need 127.0.0.1.

So this module puts one lookup of its own in that function's place (the only place in
wallmesh allowed to; ``tests/test_internals.py`` enforces it). The lookup returns the
addresses chosen by the innermost :func:`host_addresses` block — scoped with a
``ContextVar``, so one process can hold peers with different policies — else those of
:func:`process_host_addresses` (a bench or test putting the whole process on loopback
for a while), else whatever aioice's own function returns. It is installed idempotently,
and put back on top if something replaced it after it went in (a test's monkeypatch);
the replacement then counts as "aioice's own" outside any block.

:func:`check` refuses an aioice other than the one tested; if aioice no longer gathers
through ``get_host_addresses``, the hook is reported off once and aioice's own gathering
is used.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

import aioice
import aioice.ice

from appliance.compat import hook_off, installed_version, require_tested

#: The aioice release this hook was verified against (and the pin in pyproject.toml).
TESTED = "0.13.0"
LOOKUP = "get_host_addresses"
OFF = "ICE gathers on every non-loopback interface, whatever the unit's [ice] config says"

_addresses: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar("wallmesh_ice_addresses", default=None)
_default: tuple[str, ...] | None = None  # process-wide, see process_host_addresses()
_original: Callable[..., list[str]] | None = None  # what aioice.ice.get_host_addresses was before the hook


def lookup_hook_ok() -> bool:
    """True when aioice has ``get_host_addresses`` and its gathering calls it by that name."""
    gather = getattr(getattr(aioice.ice, "Connection", None), "gather_candidates", None)
    return callable(getattr(aioice.ice, LOOKUP, None)) and gather is not None and LOOKUP in gather.__code__.co_names


def check() -> list[str]:
    """Refuse an untested aioice; return (and log once) the hooks its internals do not allow."""
    require_tested("aioice", installed_version("aioice", getattr(aioice, "__version__", None)), tested=TESTED)
    if lookup_hook_ok():
        return []
    hook_off("aioice", "host address choice", OFF, "aioice.ice.Connection does not gather through get_host_addresses")
    return ["host address choice"]


def install() -> bool:
    """Route aioice's host-address lookup through this module; False (reported once) if it cannot.

    Idempotent, and self-healing: if something replaced ``aioice.ice.get_host_addresses``
    after the hook went in, the hook goes back on top of the replacement.
    """
    global _original  # noqa: PLW0603 - aioice's lookup is one per process, and so is what it replaced
    if not lookup_hook_ok():
        hook_off("aioice", "host address choice", OFF)
        return False
    current = aioice.ice.get_host_addresses
    if current is lookup:
        return True
    _original = current
    lookup.__wrapped__ = current  # type: ignore[attr-defined]
    aioice.ice.get_host_addresses = lookup
    return True


def lookup(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    """The hook: the chosen addresses of the wanted families, else aioice's own answer."""
    chosen = _addresses.get()
    if chosen is None:
        chosen = _default
    if chosen is None:
        assert _original is not None
        return _original(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
    out = []
    for addr in chosen:
        v6 = ":" in addr
        if (v6 and use_ipv6) or (not v6 and use_ipv4):
            out.append(addr)
    return out


@contextlib.contextmanager
def host_addresses(addresses: tuple[str, ...] | None) -> Iterator[None]:
    """Within this block (and tasks it starts), aioice gathers on ``addresses`` (None: its own)."""
    install()
    token = _addresses.set(addresses or None)
    try:
        yield
    finally:
        _addresses.reset(token)


@contextlib.contextmanager
def process_host_addresses(addresses: tuple[str, ...] | None) -> Iterator[None]:
    """For the whole process while the block runs, code outside any :func:`host_addresses`
    block gathers on ``addresses``; restored on exit, so nothing leaks to later code."""
    global _default  # noqa: PLW0603 - process-wide on purpose (see the docstring), restored on exit
    install()
    previous, _default = _default, (addresses or None)
    try:
        yield
    finally:
        _default = previous
