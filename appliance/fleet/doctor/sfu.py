"""``wallmesh doctor sfu``: on the site server, check the conference server the way the broker uses it.

In order, each step only when the one before worked: ``[sfu]`` is configured; Janus answers
at its URL; it runs the VideoRoom plugin; it accepts the API secret from the state directory
(and refuses a request without it: an open API would let anyone on the LAN into rooms); the
VideoRoom accepts the admin key (a room is created and destroyed again).
"""

from __future__ import annotations

import secrets
from pathlib import Path

from appliance.fleet.doctor.findings import Finding
from appliance.signaling.config import SignalConfig
from appliance.signaling.sfu.janus import VIDEOROOM, JanusError, JanusSession, SfuUnavailable


def _secret(path: str, state_dir: Path) -> str | None:
    p = Path(path) if Path(path).is_absolute() else state_dir / path
    try:
        return p.read_text().strip() or None
    except OSError:
        return None


async def check_sfu(config: SignalConfig, state_dir: Path, timeout_s: float = 5.0) -> list[Finding]:
    sfu = config.sfu
    if sfu.type == "none":
        return [Finding("sfu", "skip", f"no conference server configured: rooms hold at most {config.max_room_size}",
                        "to grow rooms past it, set [sfu] type = \"janus\" and url in signal.toml (docs/sfu.md)")]
    secret = _secret(sfu.secret_file, state_dir)
    key = _secret(sfu.admin_key_file, state_dir)
    if secret is None or key is None:
        return [Finding("sfu", "fail", f"the Janus secrets ({sfu.secret_file}, {sfu.admin_key_file}) are not in {state_dir}",
                        "start `wallmesh signal` once (it creates them), then put them in Janus's config (docs/sfu.md)")]
    janus = JanusSession(sfu.url, secret, timeout_s=timeout_s)
    try:
        return await _probe(janus, sfu.url, key)
    finally:
        await janus.close()


async def _probe(janus: JanusSession, url: str, key: str) -> list[Finding]:
    try:
        info = await janus.info()
    except SfuUnavailable as exc:
        return [Finding("sfu", "fail", f"Janus does not answer at {url}: {exc}",
                        "start it (systemctl start janus) and check [sfu] url and its HTTP transport's ip and port")]
    found = [Finding("sfu", "ok", f"Janus {info.get('version_string', '?')} answers at {url}")]
    if VIDEOROOM not in (info.get("plugins") or {}):
        return [*found, Finding("sfu", "fail", "Janus runs without the VideoRoom plugin", "enable libjanus_videoroom.so")]
    if not info.get("api_secret"):
        found.append(Finding("sfu", "fail", "Janus takes requests without an API secret: anyone who reaches it can use it",
                             "set general.api_secret in janus.jcfg to the content of the server's janus-api-secret"))
    try:
        await janus.start()
    except JanusError as exc:
        return [*found, Finding("sfu", "fail", f"Janus refuses the server's API secret ({exc.reason})",
                                "set general.api_secret in janus.jcfg to the content of the server's janus-api-secret")]
    except SfuUnavailable as exc:
        return [*found, Finding("sfu", "fail", f"Janus did not open a session: {exc}", "see Janus's log (journalctl -u janus)")]
    handle = await janus.attach()
    room = secrets.randbelow(2**52) + 1
    try:
        await janus.request(handle, {"request": "create", "room": room, "admin_key": key, "permanent": False, "is_private": True})
        await janus.request(handle, {"request": "destroy", "room": room, "permanent": False})
    except JanusError as exc:
        return [*found, Finding("sfu", "fail", f"the VideoRoom refuses the server's admin key ({exc.reason})",
                                "set general.admin_key in janus.plugin.videoroom.jcfg to the content of janus-admin-key")]
    finally:
        await janus.detach(handle)
    found.append(Finding("sfu", "ok", "Janus accepts the server's API secret and VideoRoom admin key"))
    return found
