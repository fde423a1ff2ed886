"""Prometheus metrics of one signaling server, in a registry of its own.

A registry per app (not prometheus_client's global one) lets several servers live in one
process — tests, the demo — without their counters colliding.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class Metrics:
    """The counters and gauges the server updates; :meth:`render` is the /metrics body."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.connections = Gauge("wallmesh_signal_connections", "open WebSocket connections", registry=r)
        self.rooms = Gauge("wallmesh_signal_rooms", "rooms with at least one member", registry=r)
        self.members = Gauge("wallmesh_signal_members", "participants in rooms", registry=r)
        self.frames_in = Counter("wallmesh_signal_frames_received", "frames received from clients", registry=r)
        self.frames_relayed = Counter("wallmesh_signal_frames_relayed", "signal frames relayed peer to peer", registry=r)
        self.errors = Counter("wallmesh_signal_errors", "error frames sent, by code", ["code"], registry=r)
        self.closes = Counter("wallmesh_signal_closes", "connections closed by the server, by reason", ["reason"], registry=r)
        self.logins = Counter("wallmesh_signal_logins", "successful logins, by kind", ["kind"], registry=r)
        self.login_failures = Counter("wallmesh_signal_login_failures", "refused logins, by reason", ["reason"], registry=r)
        self.sockets = Gauge("wallmesh_signal_sockets", "open client sockets (HTTP and WebSocket)", registry=r)
        self.refused = Counter(
            "wallmesh_signal_connections_refused", "sockets closed at accept, by reason", ["reason"], registry=r
        )
        self.store_up = Gauge("wallmesh_signal_store_up", "1 when the store is reachable", registry=r)
        self.store_restarts = Counter("wallmesh_signal_store_restarts", "times the embedded store was started again after it died", registry=r)
        self.asyncio_tasks = Gauge("wallmesh_signal_asyncio_tasks", "asyncio tasks in the server's process (leak checks)", registry=r)
        self.sfu_rooms = Gauge("wallmesh_signal_sfu_rooms", "rooms going through the conference server (SFU)", registry=r)
        self.sfu_up = Gauge("wallmesh_signal_sfu_up", "conference server instances the server has a live session with", registry=r)
        self.calllog_dropped = Counter("wallmesh_signal_calllog_dropped", "call-log records dropped while the store was away", registry=r)
        # Hot-path counters are plain ints folded in at scrape time: a prometheus Counter.inc()
        # takes a lock, which costs more than the relay itself.
        self.relayed = 0
        self.received = 0
        self._relayed_seen = 0
        self._received_seen = 0

    def render(self) -> bytes:
        self.frames_relayed.inc(self.relayed - self._relayed_seen)
        self._relayed_seen = self.relayed
        self.frames_in.inc(self.received - self._received_seen)
        self._received_seen = self.received
        return generate_latest(self.registry)
