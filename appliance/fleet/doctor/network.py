"""Doctor checks for configuration, provisioning, the running version and the signaling server.

The server checks follow what the unit daemon does at start: find the server
(the configured URL, or mDNS), pin its certificate (the configured fingerprint,
the one learned at first contact, or the one in the mDNS advert), ask
``/api/health``, and trade this unit's device secret for a token. Each step
that fails says which one, so "cannot call" turns into "the cable", "the
server", "the certificate" or "the enrollment".
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import ssl as ssl_mod
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from appliance.fleet.doctor.findings import Context, Finding, read_text
from appliance.netaddr import format_fingerprint as _colons
from appliance.netaddr import is_loopback
from appliance.netaddr import normalize_fingerprint as _norm_fp

REPROVISION = ("to enroll again: delete /var/lib/wallmesh/provisioned and device.json, put a new token from "
               "`wallmesh device token` in wallmesh.toml on the boot partition, and reboot")


def check_config(ctx: Context) -> Iterator[Finding]:
    if not ctx.config_problem:
        yield Finding("config", "ok", f"{ctx.config_path} is valid (room {ctx.config.room!r})")
    elif "file not found" in ctx.config_problem:
        yield Finding("config", "fail", f"{ctx.config_path} does not exist, so this unit is not set up",
                      "put wallmesh.toml (server, room, enrollment_token) on the boot partition and reboot; first boot writes the config")
    else:
        yield Finding("config", "fail", ctx.config_problem, "correct that key in the file (`wallmesh run --help` lists them)")


def check_provisioning(ctx: Context) -> Iterator[Finding]:
    from appliance.fleet.firstboot import JOURNAL, MARKER, NOTICE
    from appliance.unit.credentials import SECRET_FILE

    state = Path(ctx.config.state_dir)
    secret = state / SECRET_FILE
    if not (state / MARKER).exists():
        notice = read_text(state / NOTICE)
        done = _journal_steps(state / JOURNAL)
        detail = notice.split("\n\n")[1] if notice.count("\n\n") >= 2 else (f"steps done so far: {', '.join(done)}" if done else "it has not run")
        yield Finding("provisioning", "fail", f"first boot has not finished: {detail}",
                      "see `journalctl -u wallmesh-firstboot`; fix what it says, it retries by itself")
        return
    yield Finding("provisioning", "ok", f"provisioned as {read_text(state / MARKER) or 'unknown device'}")
    try:
        mode = stat.S_IMODE(secret.stat().st_mode)
    except FileNotFoundError:
        yield Finding("provisioning", "fail", f"no device secret ({secret})", REPROVISION)
        return
    except PermissionError:
        yield Finding("provisioning", "ok", f"device secret present ({secret}; not readable by this user, as it should be)")
        return
    if mode & 0o077:
        yield Finding("provisioning", "fail", f"{secret} is readable by other users (mode {mode:o})", f"chmod 600 {secret}")
    else:
        yield Finding("provisioning", "ok", f"device secret present, mode {mode:o}")


def check_version(ctx: Context) -> Iterator[Finding]:
    """The wallmesh version that runs and why (the update launcher's record)."""
    from appliance.fleet.update.running import running_version

    software = running_version(Path(ctx.config.state_dir))
    summary = f"wallmesh {software['version']} ({software['state'].replace('_', ' ')}): {software['why']}"
    if software["state"] == "rolled_back":
        yield Finding("version", "warn", summary, "see `wallmesh update status` and the unit's journal for why the update failed")
    elif software["state"] == "fallback":
        yield Finding("version", "warn", summary, "install the update again with `wallmesh update`")
    else:
        yield Finding("version", "ok", summary)


def check_server(ctx: Context) -> Iterator[Finding]:
    if not ctx.network:
        yield Finding("server", "skip", "network checks switched off (--no-network)")
        return
    if ctx.config_problem:
        # Without this unit's config there is no server to check and no interface list to
        # browse on: mDNS on every interface of a machine that is not set up is no check.
        yield Finding("server", "skip", "no usable unit config, so no server to check and no mDNS browse; fix the config first")
        return
    yield from asyncio.run(_server_findings(ctx))


async def _server_findings(ctx: Context) -> list[Finding]:
    from appliance.unit.signaling import PIN_FILE

    out: list[Finding] = []
    server = ctx.config.server
    state = Path(ctx.config.state_dir)
    pin = _norm_fp(server.fingerprint) or _norm_fp(read_text(state / PIN_FILE))
    url = server.url.rstrip("/")
    if server.url == "discover":
        from appliance.unit.discovery import DiscoveryError, discover

        where = ", ".join(server.discover_interfaces) or "every interface (server.discover_interfaces is empty)"
        try:
            found = await discover(server.discover_interfaces, timeout=min(ctx.timeout_s, server.discover_timeout_s))
        except DiscoveryError:
            out.append(Finding("discovery", "fail", f"no signaling server answered on the LAN (mDNS _wallmesh._tcp on {where})",
                               "check the network cable/Wi-Fi and that `wallmesh signal` runs on the same network; or set server.url"))
            return out
        url, pin = found.url, pin or _norm_fp(found.fingerprint)
        out.append(Finding("discovery", "ok", f"found the server at {url} by mDNS on {where}"))
    host = urlsplit(url).hostname or ""
    if url.startswith("https://"):
        out.append(await _pinning(url, pin, ctx.timeout_s))
        if out[-1].status == "fail":
            return out
    elif not is_loopback(host):
        out.append(Finding("pinning", "warn", f"{url} is plain HTTP: signaling is not encrypted", "use the server's https:// URL"))
    out.extend(await _health_and_auth(ctx, url, pin, state))
    return out


async def _pinning(url: str, pin: str, timeout: float) -> Finding:
    parts = urlsplit(url)
    ctx = ssl_mod.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl_mod.CERT_NONE  # we compare the fingerprint ourselves
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, parts.port or 443, ssl=ctx), timeout)
    except (TimeoutError, OSError, ssl_mod.SSLError) as exc:
        return Finding("server", "fail", f"cannot reach {url} ({exc.__class__.__name__})",
                       "check the network cable/Wi-Fi, that the server is running, and server.url")
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
    seen = hashlib.sha256(der).hexdigest()
    if not pin:
        return Finding("pinning", "warn", f"no fingerprint pinned; the server presents {_colons(seen)}",
                       "set server.fingerprint to the value `wallmesh device token` prints on the server")
    if seen != pin:
        return Finding("pinning", "fail", f"the server's certificate ({_colons(seen)}) is not the pinned one ({_colons(pin)})",
                       "if the server's certificate was replaced on purpose, put the new fingerprint in server.fingerprint; "
                       "otherwise something is impersonating the server")
    return Finding("pinning", "ok", "the server's certificate matches the pinned fingerprint")


async def _health_and_auth(ctx: Context, url: str, pin: str, state: Path) -> list[Finding]:
    import aiohttp

    from appliance.unit.credentials import SECRET_FILE

    ssl: Any = aiohttp.Fingerprint(bytes.fromhex(pin)) if (url.startswith("https://") and pin) else (False if url.startswith("https://") else None)
    out: list[Finding] = []
    timeout = aiohttp.ClientTimeout(total=ctx.timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            async with session.get(f"{url}/api/health", ssl=ssl) as resp:
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return [Finding("server", "fail", f"cannot reach {url} ({exc.__class__.__name__})",
                            "check the network cable/Wi-Fi, that `wallmesh signal` is running, and server.url")]
        if status == 200:
            out.append(Finding("server", "ok", f"{url} answers and its store is healthy"))
        elif status == 503:
            out.append(Finding("server", "fail", f"{url} runs but cannot reach its store (MongoDB)",
                               "on the server: check mongodb_uri, or that the state dir is writable"))
        else:
            out.append(Finding("server", "fail", f"{url}/api/health answered HTTP {status}: is this a wallmesh server?", "check server.url"))
            return out
        try:
            ident = json.loads((state / SECRET_FILE).read_text())
        except (OSError, ValueError):
            out.append(Finding("enrollment", "skip", "no readable device secret here; not checking enrollment (run doctor as root or wallmesh)"))
            return out
        body = {"device_id": ident.get("device_id"), "device_secret": ident.get("device_secret")}
        try:
            async with session.post(f"{url}/api/auth/device", json=body, ssl=ssl) as resp:
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            out.append(Finding("enrollment", "fail", f"the server dropped the sign-in ({exc.__class__.__name__})",
                               "try again; check the server's log"))
            return out
    if status == 200:
        out.append(Finding("enrollment", "ok", f"the server accepts device {body['device_id']}"))
    elif status == 401:
        out.append(Finding("enrollment", "fail", f"the server refuses device {body['device_id']}: it was revoked, or the server's data was reset",
                           REPROVISION))
    else:
        out.append(Finding("enrollment", "fail", f"device sign-in answered HTTP {status}", "check the server's log"))
    return out


def _journal_steps(path: Path) -> list[str]:
    try:
        return list(json.loads(path.read_text()).get("done", []))
    except (OSError, ValueError, AttributeError):
        return []
