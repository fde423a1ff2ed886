"""``SignalServer``: the whole signaling server as one object with ``start()``/``stop()``.

The composition root of the server: it chooses the store (a configured MongoDB, or the
embedded ``nx-27017`` in the state directory), loads or creates the signing keys and the
site certificate, binds the HTTP(S) listener, and advertises it over mDNS. ``wallmesh
signal``, the demo and tests of every part all use it, e.g.::

    async with SignalServer(SignalConfig(host="127.0.0.1", port=0), state_dir=tmp) as server:
        await server.admin.add_user("alice", "correct horse", rooms=("lobby",))
        ... connect to server.ws_url ...
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
from pathlib import Path
from typing import Any, Self

from aiohttp import web

from appliance import __version__, protocol
from appliance.errors import StoreUnavailable
from appliance.netaddr import is_loopback
from appliance.signaling import aiohttp_hooks, releases
from appliance.signaling.admin import Admin
from appliance.signaling.app import create_app
from appliance.signaling.auth import Hasher, KeyRing, TokenService
from appliance.signaling.config import SignalConfig
from appliance.signaling.embedded import EmbeddedStore
from appliance.signaling.listener import Listener, bind
from appliance.signaling.state import SERVICES, Services
from appliance.signaling.store import Store

log = logging.getLogger(__name__)


def tune_gc() -> None:
    """For a long-running server process: move start-up objects out of the collector's sight
    and collect the young generation less often, so connect storms do not pause the loop.

    The old generation is then collected rarely, so whatever a connection holds must be
    freed by reference counting when it ends: no reference cycles through a connection,
    its participant or its outbox (``tests/signaling/test_outbox.py`` checks with the
    collector off)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def url_host(config: SignalConfig) -> str:
    """The host part of the URL clients should use: the bind address, or for a wildcard
    bind the first advertised interface, else the first LAN address of this machine."""
    host = config.host
    if host in ("", "0.0.0.0", "::"):
        if config.mdns.interfaces:
            return config.mdns.interfaces[0]
        from zeroconf import get_all_addresses

        lan = [a for a in get_all_addresses() if not a.startswith("127.")]
        return lan[0] if lan else "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def server_info_file(state_dir: Path) -> Path:
    """Where the server records its last URL and fingerprint (read by ``wallmesh device token``)."""
    return state_dir / "server.json"


class SignalServer:
    """The signaling server; see the module docstring."""

    def __init__(self, config: SignalConfig, *, state_dir: Path | str | None = None) -> None:
        self.config = config
        self.state_dir = Path(state_dir if state_dir is not None else config.state_dir)
        self.url = ""
        self.ws_url = ""
        self.port = 0
        self.fingerprint: str | None = None
        self.admin: Admin = None  # type: ignore[assignment]  # set by start()
        self.store: Store | None = None
        self.embedded: EmbeddedStore | None = None
        self.app: web.Application | None = None
        self.keys: KeyRing | None = None
        self.tokens: TokenService | None = None
        self._runner: web.AppRunner | None = None
        self._listener: Listener | None = None
        self._hasher: Hasher | None = None
        self._advert: Any = None
        self.state = "new"

    @property
    def services(self) -> Services:
        assert self.app is not None, "start() first"
        return self.app[SERVICES]

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _set_state(self, state: str) -> None:
        log.info("signal server: %s -> %s", self.state, state)
        self.state = state

    async def start(self) -> None:
        if self.state != "new":
            raise RuntimeError(f"cannot start a server that is {self.state}")
        self._set_state("starting")
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        self._set_state("running")

    async def _start(self) -> None:
        aiohttp_hooks.check()  # an untested aiohttp refuses to start (LibraryMismatch)
        cfg = self.config
        # bound first, so that a port in use is said at once; accepting starts when all is ready
        http = cfg.http
        self._listener = Listener(
            await asyncio.to_thread(bind, cfg.host, cfg.port, 4096), handshake_timeout_s=http.header_timeout_s,
            max_per_address=http.max_connections_per_address, unlimited=frozenset(http.unlimited_addresses),
        )
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        uri = cfg.mongodb_uri
        if not uri:
            self.embedded = EmbeddedStore(self.state_dir, supervise=True)
            await self.embedded.start()
            uri = self.embedded.uri
        self.store = Store(uri, cfg.database)
        try:
            await self.store.setup()
        except StoreUnavailable as exc:
            log.warning("store not reachable at start (%s); will keep trying", exc)

        t = cfg.tokens
        self.keys = KeyRing(self.state_dir, max_token_ttl_s=max(t.user_ttl_s, t.device_ttl_s, t.enrollment_ttl_s))
        await asyncio.to_thread(self.keys.load)
        self.tokens = TokenService(self.keys, issuer=t.issuer, audience=t.audience)
        h = cfg.hashing
        self._hasher = Hasher(memory_kib=h.memory_kib, time_cost=h.time_cost, parallelism=h.parallelism, workers=h.workers, queue=h.queue)

        ssl_ctx = None
        if cfg.tls.cert_file or not is_loopback(cfg.host) or cfg.tls_on_loopback:
            from appliance.signaling import tls

            if cfg.tls.cert_file:
                cert, key = Path(cfg.tls.cert_file), Path(cfg.tls.key_file or cfg.tls.cert_file)
            else:
                cert, key = await asyncio.to_thread(tls.ensure_site_cert, self.state_dir, cfg.host)
            ssl_ctx = tls.server_context(cert, key)
            self.fingerprint = tls.fingerprint_pem(cert.read_bytes())

        static = Path(cfg.static_dir) if cfg.static_dir else None
        self.app = create_app(cfg, store=self.store, tokens=self.tokens, hasher=self._hasher, fingerprint=self.fingerprint, static_dir=static,
                              sfu=await asyncio.to_thread(self._sfu_broker))
        releases.add_routes(self.app, self.state_dir)  # wheels offered to the units (wallmesh release publish)
        # aiohttp's keep-alive timer runs from a connection's opening and from each reply until
        # the next whole request head, whatever bytes trickle in meanwhile: the header timeout
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0, handle_signals=False,
                                     keepalive_timeout=cfg.http.header_timeout_s)
        await self._runner.setup()
        m = self.services.metrics
        self._listener.on_refused, self._listener.on_open = m.refused.labels("per_address").inc, m.sockets.inc
        if self.embedded is not None:
            self.embedded.on_restart = m.store_restarts.inc
        self.port = self._listener.port  # the bound port, also when port 0 was asked for
        scheme = "https" if ssl_ctx else "http"
        self.url = cfg.url.rstrip("/") if cfg.url else f"{scheme}://{self._url_host()}:{self.port}"
        self.ws_url = ("wss" if self.url.startswith("https") else "ws") + self.url[self.url.index(":"):] + "/ws"
        self.services.url = self.url
        self.admin = Admin(
            self.store, self.tokens, self._hasher, url=self.url, fingerprint=self.fingerprint,
            enrollment_ttl_s=t.enrollment_ttl_s, on_revoke=self.services.revoked.add,
            on_remove_user=self.services.user_removed,
        )
        info = {"url": self.url, "fingerprint": self.fingerprint, "pid": os.getpid()}
        server_info_file(self.state_dir).write_text(json.dumps(info) + "\n")
        if cfg.mdns.enabled and (cfg.mdns.interfaces or not is_loopback(cfg.host)):
            from appliance.signaling.mdns import Advert

            props = {"version": __version__, "proto": str(protocol.VERSION), "port": str(self.port),
                     "scheme": scheme, "fp": self.fingerprint or ""}
            self._advert = Advert(instance=cfg.mdns.instance, port=self.port, addresses=list(cfg.mdns.interfaces), properties=props)
            await self._advert.start()
        assert self._runner.server is not None
        self._listener.start(self._runner.server, ssl_ctx)

    def _sfu_broker(self) -> Any:
        """The conference-server broker ``[sfu]`` asks for, or None; its secrets come from the state dir."""
        sfu = self.config.sfu
        if sfu.type == "none":
            return None
        from appliance.signaling.sfu.broker import SfuBroker, check_config
        from appliance.signaling.sfu.janusconf import ensure_secret

        check_config(self.config, None)
        secret = Path(sfu.secret_file) if Path(sfu.secret_file).is_absolute() else self.state_dir / sfu.secret_file
        key = Path(sfu.admin_key_file) if Path(sfu.admin_key_file).is_absolute() else self.state_dir / sfu.admin_key_file
        return SfuBroker(sfu, mesh_cap=self.config.max_room_size, api_secret=ensure_secret(secret), admin_key=ensure_secret(key),
                         members_of=lambda room: {})

    def _url_host(self) -> str:
        return url_host(self.config)

    async def stop(self) -> None:
        """Stop everything that was started; safe to call twice or after a failed start."""
        if self.state in ("stopping", "stopped"):
            return
        self._set_state("stopping")
        advert, self._advert = self._advert, None
        if advert is not None:
            await advert.stop()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()  # no new connections; the runner closes the open ones
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        if self.store is not None:
            await self.store.close()
        if self._hasher is not None:
            self._hasher.close()
        if self.embedded is not None:
            await self.embedded.stop()
        self._set_state("stopped")
