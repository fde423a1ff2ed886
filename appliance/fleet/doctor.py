"""``wallmesh doctor``: check a unit end to end and say plainly what is wrong.

Each check looks at one part (camera, microphone, speaker, display, GPIO,
temperature, throttling, server, certificate pinning, provisioning) and
returns findings: ``ok``, ``warn`` (works, but not as a wall unit should),
``fail`` (the unit cannot do its job) or ``skip`` (nothing to check here).
A failing finding always carries a fix in words an installer can act on.

The hardware checks read sysfs, procfs and ``/dev`` through injectable roots,
so they run against test trees, and never open a device exclusively: doctor
can run beside a live ``wallmesh run``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

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


def all_checks() -> list[Check]:
    from appliance.fleet import doctor_hw, doctor_net

    return [
        doctor_net.check_config,
        doctor_net.check_provisioning,
        doctor_hw.check_camera,
        doctor_hw.check_microphone,
        doctor_hw.check_speaker,
        doctor_hw.check_display,
        doctor_hw.check_sdl,
        doctor_hw.check_gpio,
        doctor_hw.check_temperature,
        doctor_hw.check_throttling,
        doctor_net.check_server,
    ]


def run_checks(ctx: Context, checks: Iterable[Check] | None = None) -> list[Finding]:
    """Run every check; a check that breaks is itself a finding, never a crash."""
    ctx = load_config(ctx) if ctx.config is None else ctx
    findings: list[Finding] = []
    for check in checks or all_checks():
        name = check.__name__.removeprefix("check_")
        try:
            findings.extend(check(ctx))
        except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
            log.debug("doctor: check %s raised", name, exc_info=True)
            findings.append(Finding(name, "fail", f"the check itself failed: {exc.__class__.__name__}: {exc}",
                                    "report this with the output of `wallmesh -vv doctor`"))
    return findings


def exit_status(findings: Iterable[Finding]) -> int:
    return 1 if any(f.status == "fail" for f in findings) else 0


MARKS = {"ok": " ok ", "warn": "warn", "fail": "FAIL", "skip": "skip"}


def render_text(findings: Iterable[Finding]) -> str:
    lines = []
    for f in findings:
        lines.append(f"[{MARKS[f.status]}] {f.check}: {f.summary}")
        if f.fix and f.status in ("fail", "warn"):
            lines.append(f"       fix: {f.fix}")
    return "\n".join(lines)


def render_json(findings: Iterable[Finding]) -> str:
    items = [asdict(f) for f in findings]
    return json.dumps({"ok": not any(i["status"] == "fail" for i in items), "findings": items}, indent=1)
