"""Version slots: one virtualenv per installed wallmesh version under ``<state>/versions``.

The image's own install (``/opt/wallmesh``, on the read-only root) is the
version a unit falls back to when nothing else is usable. An update becomes
``versions/<version>/``: a virtualenv made without pip whose ``wallmesh-base.pth``
puts the image's site-packages after its own, so only wallmesh itself is
installed there (``pip install --no-deps --no-index``) and the media stack stays
the image's. A slot is built under a staging name and renamed into place only
after its ``wallmesh --version`` answered, so a slot that exists is whole.

``versions/slots.json`` (replaced atomically, read and written under a lock)
names the ``current`` version (None: the image's), the ``previous`` one, and a
``trial`` with the starts it has had: the launcher gives a trial one start;
when it has not confirmed its health by the next start, the unit goes back to
``current`` by itself and says why.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from appliance import __version__
from appliance.errors import WallmeshError
from appliance.files import fsync_dir, write_atomic

log = logging.getLogger(__name__)

VERSIONS = "versions"
STATE = "slots.json"
BASE_PTH = "wallmesh-base.pth"
STAGING = ".staging-"
DOWNLOAD = ".download"
StepHook = Callable[[str], None]


class UpdateError(WallmeshError, RuntimeError):
    """An update cannot go on; the message says why and what to do."""


@dataclass
class SlotState:
    """The record in ``slots.json``; see the module docstring."""

    current: str | None = None
    previous: str | None = None
    trial: str | None = None
    starts: int = 0
    trial_failure: str = ""
    last: str = ""
    running: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Choice:
    """What the launcher starts: a slot's version (None: the image's) and why."""

    version: str | None
    trial: bool
    why: str


class Slots:
    """The slots of one unit's state directory.

    ``factory_version`` is the version of the image's install (the code running
    this, when it runs from the image); ``trial_starts`` is how many starts a
    trial gets before the unit rolls back.
    """

    def __init__(self, state_dir: Path, *, factory_version: str = __version__, trial_starts: int = 1,
                 on_step: StepHook | None = None) -> None:
        self.root = Path(state_dir) / VERSIONS
        self.factory_version = factory_version
        self.trial_starts = trial_starts
        self.on_step = on_step or (lambda step: None)

    # -- the record ----------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[SlotState]:
        """The record, under an exclusive lock; changes are saved by :meth:`save`."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield self.load()

    def load(self) -> SlotState:
        path = self.root / STATE
        try:
            data = json.loads(path.read_text())
            known = SlotState.__dataclass_fields__
            return SlotState(**{k: v for k, v in data.items() if k in known})
        except FileNotFoundError:
            return SlotState()
        except (OSError, ValueError, TypeError, AttributeError):
            log.warning("update: %s is unreadable; starting the image's version", path)
            return SlotState()

    def save(self, state: SlotState) -> None:
        write_atomic(self.root / STATE, json.dumps(asdict(state), indent=1) + "\n", mode=0o644)

    def slot(self, version: str) -> Path:
        return self.root / version

    def usable(self, version: str | None) -> bool:
        """The image's install always is; a slot is once it was renamed into place."""
        return version is None or (self.slot(version) / "bin" / "python").exists()

    def program(self, version: str | None) -> list[str]:
        """The command that runs ``wallmesh`` of that version.

        A slot's interpreter, not its ``bin/wallmesh`` script: the slot was built under
        its staging name, which that script's ``#!`` line still names; ``-P``: never the
        working directory's ``appliance`` either.
        """
        if version is None:
            return [sys.executable, "-P", "-m", "appliance.cli"]
        return [str(self.slot(version) / "bin" / "python"), "-P", "-m", "appliance.cli"]

    def label(self, version: str | None) -> str:
        return f"{version}" if version is not None else f"{self.factory_version} (the image's)"

    # -- installing ------------------------------------------------------------------

    def install(self, wheel: Path, version: str) -> None:
        """Install ``wheel`` (already verified) as slot ``version`` and make it the trial."""
        with self.locked() as state:
            if version == (state.current or self.factory_version):
                raise UpdateError(f"wallmesh {version} is the version this unit runs already")
            self._prune(state, keep={version})
        staging = self.root / f"{STAGING}{version}"
        shutil.rmtree(staging, ignore_errors=True)
        _run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(staging)], "make the slot's virtualenv")
        site = Path(_run([str(staging / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         "ask the slot's interpreter for its site-packages", clean=True).strip())
        write_atomic(site / BASE_PTH, "".join(p + "\n" for p in base_site_packages()))
        self.on_step("unpacked")
        _run([sys.executable, "-m", "pip", "--python", str(staging / "bin" / "python"), "install", "--no-deps", "--no-index",
              "--disable-pip-version-check", "--quiet", str(wheel)], f"install {wheel.name}")
        self.on_step("installed")
        said = _run([str(staging / "bin" / "python"), "-P", "-m", "appliance.cli", "--version"],
                    "run the new version's `wallmesh --version`", clean=True).strip()
        if said != f"wallmesh {version}":
            raise UpdateError(f"the installed wheel says {said!r}, not wallmesh {version}; nothing was changed")
        self.on_step("checked")
        target = self.slot(version)
        shutil.rmtree(target, ignore_errors=True)
        os.rename(staging, target)
        fsync_dir(self.root)
        self.on_step("placed")
        with self.locked() as state:
            state.trial, state.starts, state.trial_failure = version, 0, ""
            state.last = f"installed {version}; it is tried at the next start"
            self.save(state)
        self.on_step("marked")
        log.info("update: installed %s in %s as the trial", version, target)

    def _prune(self, state: SlotState, keep: set[str]) -> None:
        """Remove slots and staging trees nothing refers to (space on the state partition)."""
        wanted = {v for v in (state.current, state.previous, state.trial) if v} | keep
        for entry in self.root.iterdir() if self.root.is_dir() else ():
            if entry.is_dir() and entry.name not in wanted and entry.name != DOWNLOAD:
                shutil.rmtree(entry, ignore_errors=True)

    # -- starting ----------------------------------------------------------------------

    def choose(self) -> Choice:
        """Pick the version to start now, counting a trial's starts; records the choice and why."""
        with self.locked() as state:
            choice = self._choose(state)
            state.running = {"version": choice.version or self.factory_version, "slot": choice.version is not None,
                             "trial": choice.trial, "why": choice.why, "since": round(time.time(), 3)}
            self.save(state)
        if choice.trial:
            self.on_step("counted")
        return choice

    def _choose(self, state: SlotState) -> Choice:
        if state.trial is not None:
            trial = state.trial
            if not self.usable(trial):
                state.last = f"the trial {trial} is not installed completely; it was dropped"
            elif state.starts < self.trial_starts:
                state.starts += 1
                return Choice(trial, True, f"trying {trial} (start {state.starts} of {self.trial_starts}); "
                                           f"{self.label(state.current)} stays the fallback until it confirms its health")
            else:
                why = state.trial_failure or "it did not confirm its health before the next start"
                state.last = f"rolled back from {trial} to {self.label(state.current)}: {why}"
                log.warning("update: %s", state.last)
            state.trial, state.starts, state.trial_failure = None, 0, ""
        if self.usable(state.current):
            why = state.last if state.last.startswith("rolled back") else "the current version"
            return Choice(state.current, False, why)
        missing = state.current
        if state.previous is not None and self.usable(state.previous):
            state.current, state.previous = state.previous, None
        else:
            state.current, state.previous = None, None
        state.last = f"the slot of {missing} is missing; fell back to {self.label(state.current)}"
        return Choice(state.current, False, state.last)

    def confirm(self, version: str, why: str) -> bool:
        """The trial ``version`` proved healthy: it becomes current, the old current previous."""
        with self.locked() as state:
            if state.trial != version:
                return False
            state.previous, state.current = state.current, version
            state.trial, state.starts, state.trial_failure = None, 0, ""
            state.last = f"{version} confirmed healthy: {why}"
            state.running = {**state.running, "trial": False, "why": state.last}
            self.save(state)
            self.on_step("confirmed")
            self._prune(state, keep=set())
        log.info("update: %s", state.last)
        return True

    def fail(self, version: str, why: str) -> None:
        """Note why the trial ``version`` did not confirm; the next start rolls back."""
        with self.locked() as state:
            if state.trial == version and state.starts > 0:
                state.trial_failure = why
                self.save(state)
        log.warning("update: the trial %s failed: %s", version, why)


def base_site_packages() -> list[str]:
    """The image's site-packages: this interpreter's, or (run from a slot) the ones its slot chains to."""
    paths = sysconfig.get_paths()
    own = list(dict.fromkeys([paths["purelib"], paths["platlib"]]))
    for directory in own:
        chained = Path(directory) / BASE_PTH
        if chained.is_file():
            return [line for line in chained.read_text().splitlines() if line.strip()]
    return own


def _run(argv: list[str], what: str, *, clean: bool = False) -> str:
    """Run one step of an install; a failure is an UpdateError naming the step."""
    env = dict(os.environ)
    if clean:  # the slot must run on its own, not on whatever PYTHONPATH points at
        env.pop("PYTHONPATH", None)
        env.pop("PYTHONHOME", None)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UpdateError(f"could not {what} ({exc}); nothing was changed") from exc
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UpdateError(f"could not {what}: {tail}; nothing was changed")
    return done.stdout
