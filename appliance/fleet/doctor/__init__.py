"""``wallmesh doctor``: check a unit end to end and say plainly what is wrong.

Each check looks at one part (camera, microphone, speaker, display, GPIO,
temperature, throttling, server, certificate pinning, provisioning) and
returns findings: ``ok``, ``warn`` (works, but not as a wall unit should),
``fail`` (the unit cannot do its job) or ``skip`` (nothing to check here).
A failing finding always carries a fix in words an installer can act on.

The hardware checks read sysfs, procfs and ``/dev`` through injectable roots,
so they run against test trees, and never open a device exclusively: doctor
can run beside a live ``wallmesh run``.

:mod:`.findings` holds the types every check shares, :mod:`.hardware` and :mod:`.network`
the checks, and :mod:`.run` puts them in order and renders what they found.
"""

from appliance.fleet.doctor.findings import STATUSES, Check, Context, Finding, load_config
from appliance.fleet.doctor.run import all_checks, exit_status, render_json, render_text, run_checks

__all__ = [
    "STATUSES", "Check", "Context", "Finding", "all_checks", "exit_status", "load_config", "render_json",
    "render_text", "run_checks",
]
