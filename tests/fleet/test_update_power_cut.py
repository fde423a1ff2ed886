"""A power cut at each step of an update: the next start runs one of the two versions.

Each case installs a real wheel in a child process that SIGKILLs itself at one
boundary (slot virtualenv made, wheel installed, new version answered, slot
renamed into place, trial recorded, trial start counted, trial confirmed). The
next start's choice must then run - its ``wallmesh --version`` answers - and be
the version that step implies; an update cut short can simply be run again.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from appliance.fleet.update.slots import Slots

from .update_parts import FACTORY, build_wheel, version_of

NEW = "0.1.1"
#: step -> the version the next start must run
CUTS = {
    "unpacked": FACTORY, "installed": FACTORY, "checked": FACTORY, "placed": FACTORY,
    "marked": NEW,  # the trial is recorded: it gets its start
    "counted": FACTORY,  # the trial's start was cut before it proved healthy: back to the old version
    "confirmed": NEW,
}

CHILD = textwrap.dedent(
    """
    import os, signal
    from pathlib import Path
    from appliance.fleet.update.slots import Slots

    def cut(step):
        if step == {step!r}:
            os.kill(os.getpid(), signal.SIGKILL)

    slots = Slots(Path({state!r}), on_step=cut)
    slots.install(Path({wheel!r}), {version!r})
    choice = slots.choose()
    slots.confirm(choice.version, "test")
    """
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheels"), NEW)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("step", list(CUTS))
def test_power_cut_then_the_next_start_runs_one_of_the_two_versions(tmp_path: Path, wheel: Path, step: str) -> None:
    state = tmp_path / "state"
    code = CHILD.format(step=step, state=str(state), wheel=str(wheel), version=NEW)
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert child.returncode == -9, child.stderr[-2000:]

    slots = Slots(state)
    choice = slots.choose()
    assert version_of(slots.program(choice.version)) == f"wallmesh {CUTS[step]}"
    assert (choice.version or FACTORY) == CUTS[step]

    if CUTS[step] == FACTORY and step != "counted":
        # the update did not take: running it again finishes it, and the next start tries it
        slots.install(wheel, NEW)
        retry = slots.choose()
        assert retry.trial and retry.version == NEW
        assert version_of(slots.program(retry.version)) == f"wallmesh {NEW}"
    staging = [p.name for p in (state / "versions").iterdir() if p.name.startswith(".staging")]
    assert staging == [] or step in ("unpacked", "installed", "checked")


def test_a_state_partition_that_cannot_keep_the_record_still_starts_the_image_version(tmp_path: Path) -> None:
    from appliance.fleet.update.launch import pick

    state = tmp_path / "state"
    state.mkdir()
    (state / "versions").write_text("not a directory\n")  # e.g. a damaged or full state partition
    choice = pick(Slots(state))
    assert choice.version is None and not choice.trial and "cannot be written" in choice.why
    assert version_of(Slots(state).program(choice.version)) == f"wallmesh {FACTORY}"


def test_a_trial_whose_watcher_cannot_start_still_starts_and_is_noted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os

    from appliance.fleet.update import launch as launcher

    slots = Slots(tmp_path / "state")
    (slots.slot(NEW) / "bin").mkdir(parents=True)
    (slots.slot(NEW) / "bin/python").write_text("")  # a placed slot (the launcher only looks for its interpreter)
    with slots.locked() as state:
        state.trial = NEW
        slots.save(state)

    class Exec(Exception):
        pass

    def no_fork() -> int:
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    def execve(path: str, argv: list[str], env: dict[str, str]) -> None:
        raise Exec(argv)

    monkeypatch.setattr(os, "fork", no_fork)
    monkeypatch.setattr(os, "execve", execve)
    with pytest.raises(Exec) as started:
        launcher.launch(slots, ["--config", "unit.toml"], config_path=tmp_path / "unit.toml", deadline_s=5)
    assert started.value.args[0][0] == str(slots.slot(NEW) / "bin/python")
    assert "watcher could not start" in slots.load().trial_failure
    assert slots.choose().version is None  # the next start rolls back


def test_a_current_slot_that_went_missing_falls_back_and_says_so(tmp_path: Path) -> None:
    slots = Slots(tmp_path / "state")
    with slots.locked() as state:
        state.current, state.previous = NEW, None  # its directory was never there, or was removed by hand
        slots.save(state)
    choice = slots.choose()
    assert choice.version is None and not choice.trial and f"the slot of {NEW} is missing" in choice.why
    assert slots.load().current is None and slots.load().running["version"] == FACTORY
