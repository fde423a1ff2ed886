"""Which version runs and why, as ``/status`` and doctor say it; and the restart after an install.

The record is the real one: :class:`Slots` chooses, confirms and fails trials
exactly as the launcher and the watcher do. A slot counts as installed when its
interpreter exists, so an empty ``bin/python`` marks one here (installing real
wheels is what ``test_update.py`` does).
"""

from __future__ import annotations

import json
from pathlib import Path

from appliance.fleet.update.restart import restart_unit
from appliance.fleet.update.running import STATES, running_version
from appliance.fleet.update.slots import Slots, SlotState

FACTORY, NEW = "0.1.0", "0.2.0"


def slot(slots: Slots, version: str) -> None:
    python = slots.slot(version) / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")


def trial_of(slots: Slots, version: str) -> None:
    slot(slots, version)
    with slots.locked() as state:
        state.trial, state.starts = version, 0
        slots.save(state)


def test_a_unit_that_never_updated_runs_the_images_version(tmp_path: Path) -> None:
    assert running_version(tmp_path, FACTORY) == {
        "version": FACTORY, "state": "image", "slot": False, "why": "the image's version; no update installed"}
    Slots(tmp_path, factory_version=FACTORY).choose()  # the launcher's start, nothing installed
    assert running_version(tmp_path, FACTORY)["state"] == "image"


def test_a_trial_then_its_confirmation(tmp_path: Path) -> None:
    slots = Slots(tmp_path, factory_version=FACTORY)
    trial_of(slots, NEW)
    assert slots.choose().trial
    now = running_version(tmp_path, NEW)
    assert now["state"] == "trial" and now["slot"] and now["why"].startswith(f"trying {NEW}")
    assert slots.confirm(NEW, "joined room boardroom 3.0 s after start")
    now = running_version(tmp_path, NEW)
    assert now["state"] == "confirmed" and now["why"] == f"{NEW} confirmed healthy: joined room boardroom 3.0 s after start"
    slots.choose()  # the next start stays on it
    now = running_version(tmp_path, NEW)
    assert now["state"] == "confirmed" and "confirmed healthy" in now["why"]


def test_a_trial_that_failed_rolls_back_and_says_why(tmp_path: Path) -> None:
    slots = Slots(tmp_path, factory_version=FACTORY)
    trial_of(slots, NEW)
    slots.choose()
    slots.fail(NEW, "it exited 2 s after start, before confirming its health")
    assert not slots.choose().trial  # the next start
    now = running_version(tmp_path, FACTORY)
    assert now["state"] == "rolled_back" and not now["slot"]
    assert now["why"] == f"rolled back from {NEW} to {FACTORY} (the image's): it exited 2 s after start, before confirming its health"


def test_a_missing_slot_falls_back(tmp_path: Path) -> None:
    slots = Slots(tmp_path, factory_version=FACTORY)
    slots.save(SlotState(current=NEW))
    slots.choose()
    now = running_version(tmp_path, FACTORY)
    assert now["state"] == "fallback" and now["why"].startswith(f"the slot of {NEW} is missing")


def test_a_daemon_started_by_hand_is_not_what_the_record_says(tmp_path: Path) -> None:
    slots = Slots(tmp_path, factory_version=FACTORY)
    trial_of(slots, NEW)
    slots.choose()  # the launcher started NEW ...
    now = running_version(tmp_path, FACTORY)  # ... but this process is the image's code
    assert now["state"] == "unmanaged" and now["version"] == FACTORY and NEW in now["why"]


def test_a_damaged_record_still_gives_an_answer(tmp_path: Path) -> None:
    record = tmp_path / "versions" / "slots.json"
    record.parent.mkdir()
    for text in ("{not json", json.dumps({"running": 5}), json.dumps([1, 2])):
        record.write_text(text)
        assert running_version(tmp_path, FACTORY)["state"] in STATES


def test_without_systemd_the_restart_is_the_command_to_run(tmp_path: Path) -> None:
    outcome = restart_unit("/etc/wallmesh/unit.toml", booted=tmp_path / "not-booted")
    assert not outcome.done
    assert outcome.message.endswith("start the trial with: wallmesh update launch --config /etc/wallmesh/unit.toml")


def test_a_service_manager_that_does_not_answer_is_said_so(tmp_path: Path) -> None:
    """``systemctl`` is installed here but systemd is not PID 1: it cannot answer, and the message says so."""
    booted = tmp_path / "systemd"
    booted.mkdir()
    outcome = restart_unit("/etc/wallmesh/unit.toml", booted=booted, systemctl="systemctl")
    assert not outcome.done and "wallmesh update launch --config /etc/wallmesh/unit.toml" in outcome.message
