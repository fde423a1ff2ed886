"""``wallmesh doctor``: check this unit and say plainly what is wrong and how to fix it.

Exit status 1 when any check fails. The sysfs, /dev and /proc roots are
options so the checks can be pointed at a copy of another unit's trees.

``wallmesh doctor audio --record DIR`` plays a probe through the unit's speaker,
records its microphone meanwhile and says how long the room's echo takes, how loud
it is and how much of it the unit's processing removes; ``DIR`` gets ``far.wav``,
``mic.wav`` and ``out.wav`` (see :mod:`appliance.fleet.doctor.audio`).

``wallmesh doctor sfu`` runs on the site server: it checks the conference server named by
``signal.toml``'s ``[sfu]`` (see :mod:`appliance.fleet.doctor.sfu`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_CONFIG = Path("/etc/wallmesh/unit.toml")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="the unit config to check")
    parser.add_argument("--sys-root", type=Path, default=Path("/sys"), help="sysfs root")
    parser.add_argument("--dev-root", type=Path, default=Path("/dev"), help="device node root")
    parser.add_argument("--proc-root", type=Path, default=Path("/proc"), help="procfs root")
    parser.add_argument("--no-network", action="store_true", help="skip discovery and the server checks")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds each network check may take")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="doctor_command", metavar="CHECK")
    audio = sub.add_parser(
        "audio",
        help="play a probe on the speaker, record the microphone: the room's echo delay, level and cancellation",
        description="Play a probe through the configured speaker while recording the microphone; report the "
        "room's echo delay, echo level and how much of the echo the unit's processing removes.",
    )
    audio.add_argument("--record", type=Path, required=True, metavar="DIR", help="where far.wav, mic.wav and out.wav go")
    audio.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="the unit config (its [audio] devices)")
    audio.add_argument("--seconds", type=float, default=6.0, help="length of the probe (default 6, at least 3)")
    audio.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    sfu = sub.add_parser(
        "sfu", help="on the site server: check the conference server (Janus) rooms beyond the mesh cap go through",
        description="Check that the Janus named by signal.toml's [sfu] answers, runs the VideoRoom, and takes the "
        "server's API secret and admin key from its state directory.",
    )
    sfu.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="the server config (default /etc/wallmesh/signal.toml)")
    sfu.add_argument("--state-dir", type=Path, default=None, help="the server's state directory (default: the config's)")
    sfu.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from appliance.fleet.doctor import Context, exit_status, render_json, render_text, run_checks

    if getattr(args, "doctor_command", None) == "audio":
        return run_audio(args)
    if getattr(args, "doctor_command", None) == "sfu":
        return run_sfu(args)
    ctx = Context(config_path=args.config, sys_root=args.sys_root, dev_root=args.dev_root, proc_root=args.proc_root,
                  network=not args.no_network, timeout_s=args.timeout)
    findings = run_checks(ctx)
    print(render_json(findings) if args.json else render_text(findings))
    return exit_status(findings)


def run_audio(args: argparse.Namespace) -> int:
    from appliance.fleet.doctor import Context, Finding, exit_status, load_config, render_json, render_text
    from appliance.fleet.doctor.audio import check_echo

    ctx = load_config(Context(config_path=args.config))
    findings = []
    if ctx.config_problem:
        findings.append(Finding("config", "fail", ctx.config_problem, f"fix {args.config}, then run this again"))
    else:
        findings += check_echo(ctx.config, args.record, max(3.0, args.seconds))
    print(render_json(findings) if args.json else render_text(findings))
    if not args.json and (args.record / "mic.wav").exists():
        print(f"recorded: {args.record / 'far.wav'}, {args.record / 'mic.wav'}, {args.record / 'out.wav'}")
    return exit_status(findings)


def run_sfu(args: argparse.Namespace) -> int:
    import asyncio

    from appliance.fleet.doctor import Finding, exit_status, render_json, render_text
    from appliance.fleet.doctor.sfu import check_sfu
    from appliance.signaling.offline import load_config, state_dir_of

    path = getattr(args, "config", None)
    path = None if path in (None, DEFAULT_CONFIG) else path  # the unit's default is not the server's
    try:
        config = load_config(str(path) if path else None, {})
    except ValueError as exc:  # ConfigError names the file and the key
        findings = [Finding("sfu", "fail", str(exc), "fix the server config, then run this again")]
    else:
        findings = asyncio.run(check_sfu(config, state_dir_of(config, str(args.state_dir) if args.state_dir else None)))
    print(render_json(findings) if args.json else render_text(findings))
    return exit_status(findings)
