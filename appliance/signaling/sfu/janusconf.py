"""Janus's configuration as wallmesh wants it, written by wallmesh rather than taken from Debian.

Debian's ``/etc/janus`` loads every plugin and transport it ships, listens on every
interface and carries sample secrets. A site's conference server needs far less: the
VideoRoom plugin, the plain HTTP transport bound to the one address the signaling server
reaches it on, an API secret on every request, an admin key for creating rooms (so no
client could create or destroy one even if it reached Janus), and ICE on the one
interface media should use (Janus, like aioice, never gathers on loopback).

:func:`write_config` renders such a folder; :func:`ensure_secret` keeps the secrets in the
signaling server's state directory (mode 0600), where ``[sfu] secret_file`` finds them.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

#: Where Debian's package puts Janus's loadable modules (the multiarch triplet varies).
LIB_DIRS = ("/usr/lib/x86_64-linux-gnu/janus", "/usr/lib/aarch64-linux-gnu/janus", "/usr/lib/arm-linux-gnueabihf/janus", "/usr/lib/janus")
PLUGINS_KEPT = "libjanus_videoroom.so"
TRANSPORTS_KEPT = "libjanus_http.so"


def janus_lib_dir() -> Path | None:
    """The folder holding Janus's ``plugins/`` and ``transports/``, None when Janus is not installed."""
    for folder in LIB_DIRS:
        if (Path(folder) / "plugins" / PLUGINS_KEPT).exists():
            return Path(folder)
    return None


def ensure_secret(path: Path | str) -> str:
    """The secret stored at ``path``, created (32 random bytes, URL-safe, mode 0600) when missing."""
    path = Path(path)
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        text = ""
    if text:
        return text
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")
    return text


@dataclass(frozen=True)
class JanusSettings:
    """What differs between sites (and between test runs) in a Janus configuration."""

    api_secret: str
    admin_key: str
    ice_interface: str  # the interface (or address prefix) Janus gathers ICE candidates on
    http_ip: str  # the address the HTTP API listens on
    media_ip: str = ""  # the address Janus puts in its SDP; empty: http_ip
    http_port: int = 8088
    rtp_min: int = 20000
    rtp_max: int = 40000
    debug_level: int = 3
    server_name: str = "wallmesh-sfu"


def _q(value: str) -> str:
    """A libconfig string literal (JSON's escaping is a subset libconfig reads)."""
    return json.dumps(value)


def render(settings: JanusSettings, folder: Path, lib_dir: Path) -> dict[str, str]:
    """File name -> contents of a Janus configuration folder for ``settings``."""
    s = settings
    plugins = sorted(p.name for p in (lib_dir / "plugins").glob("*.so") if p.name != PLUGINS_KEPT)
    transports = sorted(p.name for p in (lib_dir / "transports").glob("*.so") if p.name != TRANSPORTS_KEPT)
    loggers = sorted(p.name for p in (lib_dir / "loggers").glob("*.so"))
    events = sorted(p.name for p in (lib_dir / "events").glob("*.so"))
    core = f"""general: {{
	configs_folder = {_q(str(folder))}
	plugins_folder = {_q(str(lib_dir / "plugins"))}
	transports_folder = {_q(str(lib_dir / "transports"))}
	events_folder = {_q(str(lib_dir / "events"))}
	loggers_folder = {_q(str(lib_dir / "loggers"))}
	log_to_stdout = true
	debug_level = {int(s.debug_level)}
	debug_colors = false
	server_name = {_q(s.server_name)}
	interface = {_q(s.media_ip or s.http_ip)}
	api_secret = {_q(s.api_secret)}
	session_timeout = 60
	hide_dependencies = true
	exit_on_dl_error = true
	protected_folders = ["/bin", "/boot", "/dev", "/etc", "/lib", "/proc", "/sbin", "/sys", "/usr", "/var"]
}}
media: {{
	ipv6 = false
	rtp_port_range = "{int(s.rtp_min)}-{int(s.rtp_max)}"
}}
nat: {{
	nice_debug = false
	full_trickle = false
	ice_tcp = false
	ignore_mdns = true
	ice_enforce_list = {_q(s.ice_interface)}
}}
plugins: {{
	disable = {_q(",".join(plugins))}
}}
transports: {{
	disable = {_q(",".join(transports))}
}}
loggers: {{
	disable = {_q(",".join(loggers))}
}}
events: {{
	broadcast = false
	disable = {_q(",".join(events))}
}}
"""
    http = f"""general: {{
	json = "plain"
	base_path = "/janus"
	http = true
	port = {int(s.http_port)}
	ip = {_q(s.http_ip)}
	https = false
}}
admin: {{
	admin_http = false
	admin_https = false
}}
cors: {{
}}
"""
    videoroom = f"""general: {{
	admin_key = {_q(s.admin_key)}
	lock_rtp_forward = true
	lock_play_file = true
	events = false
}}
"""
    return {"janus.jcfg": core, "janus.transport.http.jcfg": http, "janus.plugin.videoroom.jcfg": videoroom}


def write_config(settings: JanusSettings, folder: Path | str, lib_dir: Path | None = None) -> Path:
    """Write the configuration folder (mode 0700, files 0600: they hold secrets); returns ``janus.jcfg``."""
    folder = Path(folder)
    lib = lib_dir or janus_lib_dir()
    if lib is None:
        raise FileNotFoundError("Janus is not installed (apt-get install janus)")
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name, text in render(settings, folder, lib).items():
        fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
    return folder / "janus.jcfg"


def main(argv: list[str] | None = None) -> int:
    """``python -m appliance.signaling.sfu.janusconf``: write a site's Janus configuration.

    Run once on the site server (as root, after ``wallmesh signal`` made its secrets), e.g.::

        python -m appliance.signaling.sfu.janusconf --state-dir /var/lib/wallmesh-signal \\
            --interface eth0 --ip 10.0.0.2 --out /etc/wallmesh/janus
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m appliance.signaling.sfu.janusconf", description=main.__doc__)
    parser.add_argument("--state-dir", required=True, type=Path, help="the signaling server's state directory (its Janus secrets)")
    parser.add_argument("--interface", required=True, help="the LAN interface Janus gathers ICE candidates on")
    parser.add_argument("--ip", required=True, help="the address of that interface; the HTTP API listens there only")
    parser.add_argument("--port", type=int, default=8088, help="the HTTP API's port")
    parser.add_argument("--rtp-ports", default="20000-40000", help="UDP port range for media")
    parser.add_argument("--out", required=True, type=Path, help="the configuration folder to write")
    args = parser.parse_args(argv)
    low, _, high = args.rtp_ports.partition("-")
    settings = JanusSettings(
        api_secret=ensure_secret(args.state_dir / "janus-api-secret"), admin_key=ensure_secret(args.state_dir / "janus-admin-key"),
        ice_interface=args.interface, http_ip=args.ip, http_port=args.port, rtp_min=int(low), rtp_max=int(high or low),
    )
    print(write_config(settings, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
