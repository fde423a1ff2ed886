"""``wallmesh update``: install the site's latest release as a trial; ``update launch`` starts the unit.

* ``wallmesh update`` fetches the release the site server offers, verifies it
  against the pinned site certificate, installs it into a new slot under the
  state partition and makes it the trial; then it restarts ``wallmesh-unit.service``
  so the trial runs (as root, where systemd runs the unit; elsewhere it prints the
  command that starts it). Run as root it installs as the state directory's owner.
* ``wallmesh update launch`` is the unit service's start: it runs the chosen
  version's ``wallmesh run`` and rolls back a trial that did not confirm its health.
* ``wallmesh update status`` says which version runs and why.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_CONFIG = "/etc/wallmesh/unit.toml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"unit config file (default {DEFAULT_CONFIG})")
    parser.add_argument("--no-restart", action="store_true",
                        help="only install the trial; it runs at the unit's next start")
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    launch = sub.add_parser("launch", help="start the chosen version's `wallmesh run` (wallmesh-unit.service runs this)")
    launch.add_argument("--config", default=argparse.SUPPRESS, help="unit config file, passed on to `wallmesh run`")
    launch.add_argument("--health-deadline", type=float, default=None, metavar="SECONDS",
                        help="a trial must be healthy within this long (default 120)")
    launch.add_argument("run_args", nargs=argparse.REMAINDER, help="more arguments for `wallmesh run`")
    status = sub.add_parser("status", help="say which version runs and why")
    status.add_argument("--config", default=argparse.SUPPRESS, help="unit config file")


def run(args: argparse.Namespace) -> int:
    from appliance.fleet.update.slots import Slots

    state_dir = _state_dir(args.config)
    slots = Slots(state_dir)
    if args.action == "launch":
        from appliance.fleet.update.launch import DEFAULT_DEADLINE_S, launch

        deadline = DEFAULT_DEADLINE_S if args.health_deadline is None else args.health_deadline
        launch(slots, ["--config", args.config, *args.run_args], config_path=Path(args.config), deadline_s=deadline)
    if args.action == "status":
        state = slots.load()
        running = state.running
        print(f"runs: wallmesh {running.get('version', slots.factory_version)}: {running.get('why', 'the image version')}")
        print(f"current: {slots.label(state.current)}; previous: {slots.label(state.previous) if state.previous else 'none'}; "
              f"trial: {state.trial or 'none'}")
        if state.last:
            print(f"last: {state.last}")
        return 0
    return _update(args, slots)


def _update(args: argparse.Namespace, slots: object) -> int:
    from appliance.fleet.update.fetch import fetch_latest
    from appliance.fleet.update.restart import as_owner
    from appliance.fleet.update.slots import Slots
    from appliance.unit import config

    assert isinstance(slots, Slots)
    conf = config.load(args.config)
    state_dir = Path(conf.state_dir).expanduser()
    code = as_owner(state_dir, ["update", "--config", args.config, "--no-restart"])
    if code is not None:  # root: the service user installed it; root restarts the service
        if code == 0 and not args.no_restart and slots.load().trial is not None:
            _restart(args.config)
        return code
    _check_owner(state_dir)
    fetched = fetch_latest(conf, args.config)
    state = slots.load()
    if fetched.manifest.version in (state.current or slots.factory_version, state.trial):
        fetched.wheel.unlink(missing_ok=True)
        print(f"wallmesh {fetched.manifest.version} is already installed; nothing to do")
        return 0
    try:
        slots.install(fetched.wheel, fetched.manifest.version)
    finally:
        fetched.wheel.unlink(missing_ok=True)
    print(f"installed wallmesh {fetched.manifest.version} as a trial: it runs at the unit's next start and must "
          "prove healthy, else the unit goes back by itself", file=sys.stdout, flush=True)
    if not args.no_restart:
        _restart(args.config)
    return 0


def _restart(config_path: str) -> None:
    from appliance.fleet.update.restart import restart_unit

    print(restart_unit(config_path).message, file=sys.stdout, flush=True)


def _check_owner(state_dir: Path) -> None:
    """Slots written by another user (root) would be unusable to the unit's service user."""
    import os
    import pwd

    from appliance.fleet.update.slots import UpdateError

    try:
        owner = state_dir.stat().st_uid
    except FileNotFoundError:
        raise UpdateError(f"{state_dir}: the unit's state directory does not exist; is this unit provisioned?") from None
    if owner != os.geteuid():
        try:
            name = pwd.getpwuid(owner).pw_name
        except KeyError:
            name = str(owner)
        raise UpdateError(f"{state_dir} belongs to {name}: run this as that user (sudo -u {name} wallmesh update ...)")


def _state_dir(config_path: str) -> Path:
    """The unit's state directory, read loosely so that `launch` starts even when a newer version added keys."""
    import tomllib

    try:
        value = tomllib.loads(Path(config_path).read_text()).get("state_dir", "/var/lib/wallmesh")
    except FileNotFoundError:
        value = "/var/lib/wallmesh"
    except (OSError, ValueError) as exc:
        from appliance.errors import ConfigError

        raise ConfigError(config_path, None, f"cannot read it ({exc})") from exc
    if not isinstance(value, str):
        from appliance.errors import ConfigError

        raise ConfigError(config_path, "state_dir", "must be a string (a directory)")
    return Path(value).expanduser()
