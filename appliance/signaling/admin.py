"""Administration of users, devices and enrollment tokens: what ``wallmesh user``/``device`` do.

The same object serves the CLI (against the running server's store, or an embedded one it
starts itself) and :attr:`SignalServer.admin` in tests and the demo.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from appliance import protocol
from appliance.errors import WallmeshError
from appliance.signaling.auth import Hasher, TokenService
from appliance.signaling.store import Store

log = logging.getLogger(__name__)

USER_RE = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"


class AdminError(WallmeshError, ValueError):
    """An administrative request that cannot be done as asked (bad name, unknown id)."""


def _rooms(rooms: Iterable[str]) -> tuple[str, ...]:
    out = tuple(rooms)
    if not out:
        raise AdminError("give at least one room, or '*' for every room")
    for room in out:
        if room != "*" and not protocol.valid_room(room):
            raise AdminError(f"room {room!r} must be '*' or match {protocol.ROOM_PATTERN}")
    return out


class Admin:
    """Async administrative operations against the store."""

    def __init__(
        self, store: Store, tokens: TokenService, hasher: Hasher, *, url: str, fingerprint: str | None,
        enrollment_ttl_s: int, on_revoke: Callable[[str], None] | None = None,
        on_remove_user: Callable[[str, float], None] | None = None,
    ) -> None:
        self.store = store
        self.tokens = tokens
        self.hasher = hasher
        self.url = url
        self.fingerprint = fingerprint
        self.enrollment_ttl_s = enrollment_ttl_s
        self._on_revoke = on_revoke
        self._on_remove_user = on_remove_user

    async def add_user(self, name: str, password: str, rooms: Iterable[str] = ("*",)) -> None:
        import re

        if not re.match(USER_RE, name):
            raise AdminError(f"user name must match {USER_RE}")
        if len(password) < 8:
            raise AdminError("password must have at least 8 characters")
        await self.store.add_user(name, await self.hasher.hash(password), _rooms(rooms))
        log.info("user %s added", name)

    async def remove_user(self, name: str) -> None:
        """Delete the account; its tokens are refused and its live connections closed."""
        if not await self.store.remove_user(name):
            raise AdminError(f"no user {name!r}")
        log.warning("user %s removed", name)
        if self._on_remove_user is not None:
            self._on_remove_user(name, time.time())

    async def list_users(self) -> list[dict[str, Any]]:
        return [{"name": u["_id"], "rooms": u.get("rooms", []), "created": u.get("created")} for u in await self.store.list_users()]

    async def enrollment_token(self, ttl_s: int | None = None, rooms: Iterable[str] = ("*",)) -> str:
        """A fleet enrollment token carrying this server's URL and TLS fingerprint."""
        ttl = int(ttl_s or self.enrollment_ttl_s)
        if ttl < 60:
            raise AdminError("enrollment token lifetime must be at least 60 s")
        rooms = _rooms(rooms)
        token = self.tokens.issue("enroll", "fleet", "fleet enrollment", rooms, ttl, url=self.url, fp=self.fingerprint)
        claims = self.tokens.verify(token, "enroll")
        await self.store.add_enrollment(claims.jti, rooms, time.time() + ttl)
        return token

    async def list_enrollments(self) -> list[dict[str, Any]]:
        return [
            {"id": e["_id"], "rooms": e.get("rooms", []), "expires": e.get("expires"), "revoked": bool(e.get("revoked"))}
            for e in await self.store.list_enrollments()
        ]

    async def revoke_enrollment(self, token_id: str) -> None:
        if not await self.store.revoke_enrollment(token_id):
            raise AdminError(f"no enrollment token {token_id!r}")

    async def list_devices(self) -> list[dict[str, Any]]:
        return [
            {"device_id": d["_id"], "name": d.get("name"), "rooms": d.get("rooms", []),
             "created": d.get("created"), "revoked": bool(d.get("revoked"))}
            for d in await self.store.list_devices()
        ]

    async def revoke_device(self, device_id: str) -> None:
        if not await self.store.revoke_device(device_id):
            raise AdminError(f"no device {device_id!r}")
        log.warning("device %s revoked", device_id)
        if self._on_revoke is not None:
            self._on_revoke(device_id)
