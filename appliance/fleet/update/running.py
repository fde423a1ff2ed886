"""Which wallmesh version this unit runs, and why: the answer ``/status`` and ``wallmesh doctor`` give.

The launcher writes down at each start what it chose (``slots.json``'s
``running``); the health watcher later marks a trial confirmed. This module
reads that record and checks it against the code that actually runs
(``appliance.__version__``): a daemon started by hand, not through
``wallmesh update launch``, is not what the record describes, and says so.

``state`` is one word for fleet tools:

* ``image`` — the image's own install, no update was ever confirmed;
* ``trial`` — an update on its one trial start, not yet confirmed healthy;
* ``confirmed`` — an update that proved healthy and is now the current version;
* ``rolled_back`` — a trial that did not confirm; the unit went back to the version named;
* ``fallback`` — the current version's slot went missing; the unit fell back;
* ``unmanaged`` — this process was not started by the launcher (``wallmesh run`` by hand).
"""

from __future__ import annotations

from pathlib import Path

from appliance import __version__
from appliance.fleet.update.slots import Slots
from appliance.wall.status import SoftwareStatus

STATES = ("image", "trial", "confirmed", "rolled_back", "fallback", "unmanaged")


def running_version(state_dir: Path, own_version: str = __version__) -> SoftwareStatus:
    """The version this process runs and why (reads ``<state_dir>/versions/slots.json``; blocking)."""
    slots = Slots(state_dir)
    record = slots.load()
    running = record.running if isinstance(record.running, dict) else {}
    version = str(running.get("version", "")) if running else ""
    why = str(running.get("why", "")) if running else ""
    slot = bool(running.get("slot")) if running else False
    if not running:
        if record.current is None:
            return {"version": own_version, "state": "image", "slot": False, "why": "the image's version; no update installed"}
        return {"version": own_version, "state": "unmanaged", "slot": False,
                "why": "started directly, not through `wallmesh update launch`, which picks the version to run"}
    if version != own_version:
        return {"version": own_version, "state": "unmanaged", "slot": False,
                "why": f"started directly, not through `wallmesh update launch` (which last started {version})"}
    if running.get("trial"):
        state = "trial"
    elif why.startswith("rolled back"):
        state = "rolled_back"
    elif why.startswith("the slot of"):
        state = "fallback"
    elif slot and version == record.current:
        state = "confirmed"
        if "confirmed healthy" not in why:
            why = f"the current version: {record.last}" if "confirmed healthy" in record.last else "the current version"
    else:
        state = "image"
        why = why if why and why != "the current version" else "the image's version; no update confirmed"
    return {"version": own_version, "state": state, "slot": slot, "why": why}
