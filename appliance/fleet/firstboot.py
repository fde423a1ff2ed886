"""First-boot provisioning: from a freshly flashed card to an enrolled unit.

``wallmesh firstboot`` (run by ``wallmesh-firstboot.service``) walks a fixed
list of steps. Each step's effect is a file replaced atomically, and each
finished step is recorded in ``<state>/firstboot.json`` (also replaced
atomically), so a power cut at any point leaves either the old or the new
state; the next boot skips what is recorded and redoes at most the one step
that was interrupted - every step is safe to redo.

The one window that cannot be made atomic is between the server accepting an
enrollment and the secret reaching the disk. If the server then answers
``device_exists`` on the next run, the card holds no secret for that id, so
it enrolls under the next id (``<id>-2``) and logs which stale entry the
administrator may revoke; the same happens when a board that was enrolled
from an earlier card is re-flashed.

Failures (a refused token, an unreachable server, a bad ``wallmesh.toml``)
are explained in plain words to the journal, to a notice file the wall display
shows, and to the HDMI console; with ``retry`` the run waits with growing
back-off and tries again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pwd
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.errors import ConfigError, WallmeshError
from appliance.files import remove_durable, write_atomic
from appliance.fleet import bootfile, identity

log = logging.getLogger(__name__)

STEPS = ("machine-id", "device-id", "enroll", "unit-config", "hostname", "scrub-token", "done")
JOURNAL = "firstboot.json"
MARKER = "provisioned"
NOTICE = "firstboot-notice.txt"
SERVICE_USER = "wallmesh"
MAX_ID_GENERATIONS = 8


class ProvisioningError(WallmeshError, RuntimeError):
    """Provisioning cannot go on; the message says why and what to do, in plain words."""


class _DeviceExists(Exception):
    """The server already has this device id."""


@dataclass(frozen=True)
class Paths:
    """Every place first boot reads or writes; tests point them into temp trees."""

    boot: Path = Path("/boot/firmware")
    etc: Path = Path("/etc")
    state_dir: Path = Path("/var/lib/wallmesh")
    machine_id: Path = Path("/etc/machine-id")
    sys_root: Path = Path("/sys")
    proc_root: Path = Path("/proc")
    console: Path | None = None
    fleet_defaults: Path | None = None

    @property
    def unit_config(self) -> Path:
        return self.etc / "wallmesh" / "unit.toml"


def pending(state_dir: Path) -> bool:
    """True until provisioning has finished once on this card."""
    return not (state_dir / MARKER).exists()


@dataclass
class Journal:
    """The record of finished steps and the facts they established."""

    done: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Journal:
        try:
            data = json.loads(path.read_text())
            return cls(done=[s for s in data.get("done", []) if s in STEPS], facts=dict(data.get("facts", {})))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError, AttributeError, TypeError):
            log.warning("firstboot: %s is unreadable; starting provisioning over", path)
            return cls()

    def save(self, path: Path) -> None:
        write_atomic(path, json.dumps({"done": self.done, "facts": self.facts}, indent=1) + "\n", mode=0o600)


StepHook = Callable[[str, str], None]


class Provisioner:
    """Runs the provisioning steps against one set of :class:`Paths`.

    ``set_hostname`` applies the new host name to the running system (None:
    only write ``/etc/hostname``, as tests do). ``on_step(step, phase)`` is
    called with phase ``"applied"`` after a step's effect is on disk and
    ``"recorded"`` after the journal says so - the points where a power cut
    is interesting.
    """

    def __init__(
        self,
        paths: Paths,
        *,
        set_hostname: Callable[[str], None] | None = None,
        on_step: StepHook | None = None,
        http_timeout_s: float = 15.0,
    ) -> None:
        self.paths = paths
        self.set_hostname = set_hostname
        self.on_step = on_step or (lambda step, phase: None)
        self.http_timeout_s = http_timeout_s
        self.journal_path = paths.state_dir / JOURNAL

    # -- the loop -----------------------------------------------------------------

    async def run(self, *, retry: bool = False, first_delay_s: float = 5.0, max_delay_s: float = 300.0) -> None:
        """Provision; with ``retry``, keep trying with back-off until it succeeds."""
        delay = first_delay_s
        while True:
            try:
                await self.run_once()
            except ProvisioningError as exc:
                self.explain(str(exc))
                if not retry:
                    raise
            else:
                return
            log.warning("firstboot: trying again in %.0f s", delay)
            await asyncio.sleep(delay)
            delay = min(max_delay_s, delay * 2)

    async def run_once(self) -> None:
        """One pass over the steps; raises :class:`ProvisioningError` with a plain explanation."""
        state = self.paths.state_dir
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        journal = Journal.load(self.journal_path)
        if not pending(state):
            if journal.done != list(STEPS):  # cut off between the marker and its journal entry
                journal.done = list(STEPS)
                journal.save(self.journal_path)
            log.info("firstboot: already provisioned (%s exists); nothing to do", state / MARKER)
            return
        try:
            boot = bootfile.read(self.paths.boot, self.paths.fleet_defaults)
        except ConfigError as exc:
            raise ProvisioningError(
                f"the boot partition's {bootfile.FILENAME} is wrong: {exc}. Fix the file on the card and restart the unit."
            ) from exc
        for step in STEPS:
            if step in journal.done:
                continue
            log.info("firstboot: step %s", step)
            try:
                await getattr(self, "_step_" + step.replace("-", "_"))(boot, journal)
                self.on_step(step, "applied")
                journal.done.append(step)
                journal.save(self.journal_path)
            except OSError as exc:
                where = exc.filename or "a file"
                raise ProvisioningError(
                    f"step {step} could not write {where} ({exc.strerror or exc}). Is the SD card full, read-only or failing?"
                ) from exc
            self.on_step(step, "recorded")
        remove_durable(state / NOTICE)
        log.info("firstboot: provisioned as device %s", journal.facts.get("device_id"))

    # -- the steps (each safe to redo) ---------------------------------------------

    async def _step_machine_id(self, boot: bootfile.BootFile, journal: Journal) -> None:
        _, generated = identity.ensure_machine_id(self.paths.machine_id)
        if generated:
            log.info("firstboot: the image had no machine id; generated one")

    async def _step_device_id(self, boot: bootfile.BootFile, journal: Journal) -> None:
        machine_id = identity.read_machine_id(self.paths.machine_id)
        if machine_id is None:
            raise ProvisioningError(f"{self.paths.machine_id} holds no machine id even after generating one; is the root file system writable?")
        serial = identity.read_serial(self.paths.sys_root, self.paths.proc_root)
        ident = identity.derive_device_id(serial, machine_id)
        journal.facts["device_id"] = ident.device_id
        journal.facts["device_id_source"] = ident.source
        log.info("firstboot: device id %s (from the %s)", ident.device_id, ident.source)

    async def _step_enroll(self, boot: bootfile.BootFile, journal: Journal) -> None:
        from appliance.unit import credentials

        have = _load_identity(self.paths.state_dir)
        if have is not None and have.device_id == journal.facts["device_id"]:
            return
        if not boot.enrollment_token:
            raise ProvisioningError(
                f"{self.paths.boot / bootfile.FILENAME} has no enrollment_token. Run `wallmesh device token` on the "
                "signaling server and put the line enrollment_token = \"...\" in that file."
            )
        rooms = bootfile.token_hints(boot.enrollment_token).rooms
        if rooms and "*" not in rooms and boot.room not in rooms:
            raise ProvisioningError(
                f"the enrollment token only grants the rooms {', '.join(rooms)}, but {bootfile.FILENAME} asks for room "
                f"{boot.room!r}. Fix the room, or make a token for it with `wallmesh device token --rooms {boot.room}`."
            )
        url, fingerprint = await self._locate(boot)
        journal.facts["server_fingerprint"] = fingerprint
        for _ in range(MAX_ID_GENERATIONS):
            device_id = journal.facts["device_id"]
            name = boot.name or identity.hostname_for(device_id, boot.room)
            journal.facts["enroll_sent"] = device_id
            journal.save(self.journal_path)
            try:
                ident = await self._enroll(url, fingerprint, boot.enrollment_token, device_id, name)
            except _DeviceExists:
                self._next_generation(journal, url)
                continue
            self.on_step("enroll", "accepted")
            text = json.dumps({"device_id": ident.device_id, "device_secret": ident.device_secret})
            write_atomic(self.paths.state_dir / credentials.SECRET_FILE, text, mode=0o600, owner=_service_owner())
            return
        raise ProvisioningError(
            f"the server at {url} already has devices {journal.facts['device_id_base']} to {journal.facts['device_id']}; "
            "revoke the stale ones with `wallmesh device revoke ID` and remove them from the store."
        )

    def _next_generation(self, journal: Journal, url: str) -> None:
        """The server knows this id but the card holds no secret for it: enroll under the next id.

        That happens when the board was enrolled from an earlier card (the id
        comes from its serial) or when a power cut struck after the server
        accepted an enrollment but before the secret was saved. The old entry
        stays on the server for the administrator to revoke.
        """
        old = journal.facts["device_id"]
        base = journal.facts.setdefault("device_id_base", old)
        generation = int(journal.facts.get("device_id_generation", 1)) + 1
        journal.facts["device_id_generation"] = generation
        journal.facts["device_id"] = f"{base}-{generation}"
        journal.save(self.journal_path)
        log.warning(
            "firstboot: the server at %s already has a device %s but this card holds no secret for it "
            "(enrolled from an earlier card, or an attempt was cut off); enrolling as %s instead. "
            "Revoke %s on the server if nothing uses it.", url, old, journal.facts["device_id"], old,
        )

    async def _step_unit_config(self, boot: bootfile.BootFile, journal: Journal) -> None:
        text = render_unit_config(boot, journal.facts, self.paths.state_dir)
        write_atomic(self.paths.unit_config, text, mode=0o644)

    async def _step_hostname(self, boot: bootfile.BootFile, journal: Journal) -> None:
        hostname = identity.hostname_for(journal.facts["device_id"], boot.room)
        identity.write_hostname(self.paths.etc, hostname)
        journal.facts["hostname"] = hostname
        if self.set_hostname is not None:
            try:
                self.set_hostname(hostname)
            except OSError as exc:
                log.warning("firstboot: could not apply host name %s now (%s); it takes effect at the next boot", hostname, exc)

    async def _step_scrub_token(self, boot: bootfile.BootFile, journal: Journal) -> None:
        if bootfile.scrub_token(self.paths.boot):
            log.info("firstboot: removed the enrollment token from the boot partition")

    async def _step_done(self, boot: bootfile.BootFile, journal: Journal) -> None:
        write_atomic(self.paths.state_dir / MARKER, f"{journal.facts['device_id']}\n", mode=0o644)

    # -- helpers -------------------------------------------------------------------

    async def _locate(self, boot: bootfile.BootFile) -> tuple[str, str]:
        """The server URL and the fingerprint to pin: the card's file, then the token's hints, then mDNS."""
        hints = bootfile.token_hints(boot.enrollment_token)
        fingerprint = boot.fingerprint or hints.fingerprint
        if boot.server != "discover":
            return boot.server.rstrip("/"), fingerprint
        if hints.url:
            return hints.url, fingerprint
        from appliance.unit.discovery import DiscoveryError, discover

        try:
            found = await discover(boot.discover_interfaces, timeout=10.0)
        except DiscoveryError as exc:
            raise ProvisioningError(
                "no wallmesh signaling server answered on the LAN (mDNS _wallmesh._tcp). Check that the server "
                f"runs and this unit is on its network, or put server = \"https://...\" in {bootfile.FILENAME}."
            ) from exc
        return found.url, fingerprint or found.fingerprint

    async def _enroll(self, url: str, fingerprint: str, token: str, device_id: str, name: str) -> Any:
        import aiohttp

        from appliance.errors import AuthError
        from appliance.netaddr import parse_fingerprint
        from appliance.unit import credentials

        ssl: Any = None
        if url.startswith("https://"):
            pin = parse_fingerprint(fingerprint) if fingerprint else None
            ssl = aiohttp.Fingerprint(pin) if pin else True
        timeout = aiohttp.ClientTimeout(total=self.http_timeout_s)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                return await credentials.enroll(session, url, ssl, token, device_id, name)
        except AuthError as exc:
            if exc.code == "device_exists":
                raise _DeviceExists(device_id) from exc
            if exc.code in ("store_unavailable", "rate_limited"):
                raise ProvisioningError(
                    f"the server at {url} cannot enroll devices right now ({exc.code}); the token is fine "
                    "and this unit will try again by itself."
                ) from exc
            raise ProvisioningError(
                f"the server at {url} refused the enrollment token ({exc.code}): it is wrong, expired or revoked. "
                f"Make a new one with `wallmesh device token` and put it in {bootfile.FILENAME} on the boot partition."
            ) from exc
        except aiohttp.ServerFingerprintMismatch as exc:
            raise ProvisioningError(
                f"the server at {url} presented a certificate whose fingerprint is not the pinned one: "
                f"this may not be your server. Check fingerprint in {bootfile.FILENAME} against `wallmesh device token`."
            ) from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise ProvisioningError(
                f"cannot reach the signaling server at {url} ({exc.__class__.__name__}). Check the network cable or "
                f"Wi-Fi, that the server is running, and the server address in {bootfile.FILENAME}."
            ) from exc

    def explain(self, message: str) -> None:
        """Tell the people in the room and the journal what is wrong."""
        log.error("firstboot: %s", message)
        notice = "This wall unit is not set up yet.\n\n" + message + "\n\nIt will try again by itself.\n"
        try:
            write_atomic(self.paths.state_dir / NOTICE, notice, mode=0o644)
        except OSError as exc:
            log.warning("firstboot: cannot write %s: %s", self.paths.state_dir / NOTICE, exc)
        if self.paths.console is not None:
            try:
                with open(self.paths.console, "w") as tty:
                    tty.write("\033[2J\033[H" + notice)
            except OSError:
                pass


def render_unit_config(boot: bootfile.BootFile, facts: dict[str, Any], state_dir: Path) -> str:
    """``/etc/wallmesh/unit.toml`` for this unit, checked against the unit's schema before it is written."""
    from appliance import config as cfg
    from appliance.unit.config import UnitConfig

    url = boot.server if boot.server != "discover" else "discover"
    fingerprint = boot.fingerprint or facts.get("server_fingerprint", "")
    name = boot.name or facts.get("hostname") or identity.hostname_for(facts["device_id"], boot.room)
    lines = [
        "# Written by wallmesh firstboot from the boot partition's wallmesh.toml.",
        "# Edit freely; first boot does not run again once the unit is provisioned.",
        f"room = {_q(boot.room)}",
        f"state_dir = {_q(str(state_dir))}",
        "",
        "[server]",
        f"url = {_q(url)}",
        f"fingerprint = {_q(fingerprint)}",
        f"name = {_q(name)}",
        f"device_id = {_q(facts['device_id'])}",
    ]
    if boot.discover_interfaces:
        lines.append("discover_interfaces = [" + ", ".join(_q(i) for i in boot.discover_interfaces) + "]")
    # A wall unit uses its real camera and the ALSA defaults the image sets in /etc/asound.conf.
    lines += ["", "[video]", f"type = {_q(boot.camera)}", "", "[audio]", 'source = "alsa"', 'sink = "alsa"']
    text = "\n".join(lines) + "\n"
    cfg.loads(UnitConfig, text, "unit.toml (generated)")
    return text


def _q(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _load_identity(state_dir: Path) -> Any:
    from appliance.unit import credentials

    try:
        return credentials.load_identity(state_dir)
    except WallmeshError:
        log.warning("firstboot: the stored device secret is unreadable; enrolling again")
        return None


def _service_owner() -> tuple[int, int] | None:
    """The unit daemon's uid/gid when running as root and the user exists, so it can read its secret."""
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        return None
    return pw.pw_uid, pw.pw_gid
