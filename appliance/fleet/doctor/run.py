"""Running the doctor: every check in order, a broken check as a finding, and the two renderings."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import asdict

from appliance.fleet.doctor.findings import Check, Context, Finding, load_config
from appliance.fleet.doctor.hardware import (
    check_audio_processing,
    check_board,
    check_camera,
    check_display,
    check_gpio,
    check_microphone,
    check_sdl,
    check_speaker,
    check_temperature,
    check_throttling,
)
from appliance.fleet.doctor.network import check_config, check_provisioning, check_server, check_version

log = logging.getLogger(__name__)


def all_checks() -> list[Check]:
    """Every check, in the order the report lists them: config first, the server last."""
    return [
        check_config,
        check_board,
        check_provisioning,
        check_version,
        check_camera,
        check_microphone,
        check_speaker,
        check_audio_processing,
        check_display,
        check_sdl,
        check_gpio,
        check_temperature,
        check_throttling,
        check_server,
    ]


def run_checks(ctx: Context, checks: Iterable[Check] | None = None) -> list[Finding]:
    """Run every check; a check that breaks is itself a finding, never a crash."""
    ctx = load_config(ctx) if ctx.config is None else ctx
    findings: list[Finding] = []
    for check in checks or all_checks():
        name = check.__name__.removeprefix("check_")
        try:
            findings.extend(check(ctx))
        except Exception as exc:  # one broken check must not hide the others
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
