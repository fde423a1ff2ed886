"""Administration from the command line, with or without a running server.

``wallmesh user``/``device`` need the store. With a MongoDB URI they use it. Without one
they look for a server running on the same state directory: a live owner of the embedded
store publishes ``store.uri`` and holds a lock, so the CLI talks to that store over the
wire instead of opening the same SQLite files from a second process. When nobody runs it,
the CLI starts the embedded store itself for the length of the command.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from appliance.config import load
from appliance.errors import WallmeshError
from appliance.netaddr import is_loopback
from appliance.signaling.admin import Admin
from appliance.signaling.auth import Hasher, KeyRing, TokenService
from appliance.signaling.config import SignalConfig
from appliance.signaling.embedded import EmbeddedStore, running_uri
from appliance.signaling.server import server_info_file, url_host
from appliance.signaling.store import Store

DEFAULT_CONFIG = Path("/etc/wallmesh/signal.toml")


class MissingState(WallmeshError, FileNotFoundError):
    """An admin command found no state directory and was not told to make one."""


def load_config(path: str | None, overrides: Mapping[str, Any]) -> SignalConfig:
    """The server config from ``path`` (or /etc/wallmesh/signal.toml when present) plus CLI flags."""
    chosen: Path | None = Path(path) if path else (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    return load(SignalConfig, chosen, {k: v for k, v in overrides.items() if v is not None})


def _last_known(state_dir: Path, config: SignalConfig) -> tuple[str, str | None]:
    """The URL and fingerprint a unit should use, as the server last recorded them."""
    url, fp = config.url, None
    info = server_info_file(state_dir)
    if info.exists():
        try:
            data = json.loads(info.read_text())
            url = url or data.get("url") or ""
            fp = data.get("fingerprint")
        except ValueError:
            pass
    tls = bool(config.tls.cert_file) or not is_loopback(config.host) or config.tls_on_loopback
    if fp is None and tls:
        # The server has not run yet: make (or read) the certificate it will serve, so the
        # token already carries the fingerprint units must pin.
        from appliance.signaling.tls import ensure_site_cert, fingerprint_pem

        cert = Path(config.tls.cert_file) if config.tls.cert_file else ensure_site_cert(state_dir, config.host)[0]
        fp = fingerprint_pem(cert.read_bytes())
    if not url:
        url = f"{'https' if tls else 'http'}://{url_host(config)}:{config.port}"
    return url, fp


@contextlib.asynccontextmanager
async def open_admin(config: SignalConfig, state_dir: Path | None = None) -> AsyncIterator[Admin]:
    """An :class:`Admin` on the right store for the duration of a command."""
    state = Path(state_dir or config.state_dir)
    embedded = None
    uri = config.mongodb_uri or running_uri(state)
    if not uri:
        await asyncio.to_thread(state.mkdir, parents=True, exist_ok=True, mode=0o700)
        embedded = EmbeddedStore(state, publish=False)
        await embedded.start()
        uri = embedded.uri
    store = Store(uri, config.database)
    t, h = config.tokens, config.hashing
    keys = KeyRing(state, max_token_ttl_s=max(t.user_ttl_s, t.device_ttl_s, t.enrollment_ttl_s))
    hasher = Hasher(memory_kib=h.memory_kib, time_cost=h.time_cost, parallelism=h.parallelism, workers=1, queue=4)
    try:
        keys.load()
        await store.setup()
        url, fp = _last_known(state, config)
        yield Admin(store, TokenService(keys, issuer=t.issuer, audience=t.audience), hasher,
                    url=url, fingerprint=fp, enrollment_ttl_s=t.enrollment_ttl_s)
    finally:
        hasher.close()
        await store.close()
        if embedded is not None:
            await embedded.stop()


def state_dir_of(config: SignalConfig, flag: str | None) -> Path:
    return Path(flag or os.environ.get("WALLMESH_STATE_DIR") or config.state_dir)


def admin_state_dir(config: SignalConfig, flag: str | None, config_flag: str | None, *, create: bool) -> Path:
    """The state directory an admin command works on.

    A command that only reads or removes never makes a store where there was none; one that
    adds (``user add``, ``device token``) may, but only where it was told to look (``--state-dir``,
    ``WALLMESH_STATE_DIR`` or a config file): the built-in default is never created silently.
    """
    state = state_dir_of(config, flag)
    if config.mongodb_uri or state.is_dir():
        return state
    told = bool(flag or os.environ.get("WALLMESH_STATE_DIR") or config_flag or DEFAULT_CONFIG.exists())
    if not told:
        raise MissingState(f"no server config ({DEFAULT_CONFIG} does not exist) and no state directory {state}; "
                           "name the server's with --state-dir DIR or --config FILE")
    if not create:
        raise MissingState(f"state directory {state} does not exist, so there is nothing to read; "
                           "check --state-dir (the directory `wallmesh signal` uses)")
    return state
