"""The signaling app's shared state: what the HTTP handlers and the ``/ws`` handler both read.

It sits below :mod:`~appliance.signaling.app` (which builds it and wires the routes) and
:mod:`~appliance.signaling.ws` (which serves connections with it), so neither has to import
the other to find it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from appliance.signaling.auth import Claims, Hasher, LoginThrottle, TokenService
from appliance.signaling.config import SignalConfig
from appliance.signaling.metrics import Metrics
from appliance.signaling.rooms import Hub
from appliance.signaling.store import Store


@dataclass
class Services:
    """Everything a request handler needs, built once per app."""

    config: SignalConfig
    store: Store
    tokens: TokenService
    hasher: Hasher
    metrics: Metrics
    hub: Hub
    throttle: LoginThrottle
    url: str = ""
    fingerprint: str | None = None
    revoked: set[str] = field(default_factory=set)
    removed_users: dict[str, float] = field(default_factory=dict)
    connections: set[Any] = field(default_factory=set)  # the live ws.Connection objects

    def refuses(self, claims: Claims) -> bool:
        """True for a revoked device, or a user removed after the token was issued."""
        if claims.kind == "device":
            return claims.sub in self.revoked
        removed = self.removed_users.get(claims.sub)
        return removed is not None and claims.iat <= removed

    def user_removed(self, name: str, at: float) -> None:
        self.removed_users[name] = max(at, self.removed_users.get(name, 0.0))


SERVICES = web.AppKey("services", Services)
STATIC = web.AppKey("static", Path)
