"""What every doctor check shares: the :class:`Finding` it reports, the :class:`Context` it looks at.

The checks (:mod:`.hardware`, :mod:`.network`) import this module, and :mod:`.run`
assembles them; nothing here knows any check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATUSES = ("ok", "warn", "fail", "skip")


@dataclass(frozen=True)
class Finding:
    check: str
    status: str
    summary: str
    fix: str = ""


@dataclass(frozen=True)
class Context:
    """What the checks look at; every path can point into a test tree."""

    config_path: Path = Path("/etc/wallmesh/unit.toml")
    sys_root: Path = Path("/sys")
    dev_root: Path = Path("/dev")
    proc_root: Path = Path("/proc")
    boot: Path = Path("/boot/firmware")
    vcgencmd: str | None = "vcgencmd"
    network: bool = True
    timeout_s: float = 5.0
    # filled in by load_config
    config: Any = None
    config_problem: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def load_config(ctx: Context) -> Context:
    """Read the unit config; a missing or bad one is a finding, and defaults are used meanwhile."""
    from dataclasses import replace

    from appliance.errors import ConfigError
    from appliance.unit.config import UnitConfig, load

    try:
        return replace(ctx, config=load(ctx.config_path))
    except ConfigError as exc:
        return replace(ctx, config=UnitConfig(), config_problem=str(exc))


Check = Callable[[Context], Iterable[Finding]]


def read_text(path: Path) -> str:
    """A sysfs/procfs/state file's text, stripped; "" when it cannot be read."""
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return ""
