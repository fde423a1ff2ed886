"""The signaling server's config schema (``/etc/wallmesh/signal.toml``).

Every key has a default, so ``SignalConfig(host="127.0.0.1", port=0)`` is a working
loopback server with an embedded store; ``config/signal.toml`` documents each key.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.config import section, setting


@dataclass(frozen=True)
class RateLimits:
    frames_per_s: float = setting(200.0, help="sustained frames per second one connection may send", min=1)
    burst: int = setting(2000, help="frames a connection may send in a burst above the sustained rate", min=1)
    strikes: int = setting(50, help="rate-limited or malformed frames before the connection is closed (4429/4400)", min=1)
    login_failures: int = setting(
        5, min=1,
        help="failed logins from one address (it is then refused), or to one account (it is then refused to addresses that failed too)",
    )
    login_window_s: float = setting(300.0, help="window over which failed logins are counted, seconds", min=1)


@dataclass(frozen=True)
class Http:
    header_timeout_s: float = setting(
        10.0, min=1, max=300,
        help="a connection that has not sent a whole request head this long after opening (or after its last reply) is closed: "
             "idle keep-alive, a slow TLS handshake and slowloris alike, seconds",
    )
    body_timeout_s: float = setting(10.0, help="a request body (login, enrollment) must arrive within this many seconds, else 408", min=1, max=300)
    max_connections_per_address: int = setting(
        256, min=0, help="open sockets (HTTP and WebSocket) one client address may hold; the next is closed at once; 0: no cap",
    )
    unlimited_addresses: tuple[str, ...] = setting(
        ["127.0.0.1", "::1"], help="client addresses the per-address cap does not apply to (this host's own tools, a reverse proxy)",
    )
    allowed_origins: tuple[str, ...] = setting(
        [], pattern=r"https?://[A-Za-z0-9.\[\]:-]{1,255}",
        help="web origins besides this server's own (scheme://host[:port], e.g. a reverse proxy's 'https://meet.example.org') "
             "whose pages may open /ws and POST to /api; any other Origin is refused with 403",
    )


@dataclass(frozen=True)
class Heartbeat:
    idle_s: float = setting(5.5, help="send a WebSocket ping to a connection silent this long (units ping every 5 s themselves), seconds", min=0.5)
    timeout_s: float = setting(
        8.5, help="evict a connection silent this long (any frame proves it alive); peer-left follows at once, seconds", min=1, max=60
    )
    hello_timeout_s: float = setting(5.0, help="close with 4401 when no hello arrives within this many seconds", min=0.5)


@dataclass(frozen=True)
class Ice:
    stun_urls: tuple[str, ...] = setting([], help="STUN urls handed to clients, e.g. 'stun:10.0.0.2:3478'; none: LAN host candidates only")
    turn_urls: tuple[str, ...] = setting([], help="TURN urls, e.g. 'turn:10.0.0.2:3478?transport=udp'")
    turn_secret: str = setting("", help="coturn static-auth-secret for TURN REST credentials (use-auth-secret)")
    turn_ttl_s: int = setting(3600, help="lifetime of issued TURN credentials, seconds", min=60, max=86400)


@dataclass(frozen=True)
class Tls:
    cert_file: str = setting("", help="PEM server certificate (chain); empty: generated in the state directory")
    key_file: str = setting("", help="PEM private key of cert_file")


@dataclass(frozen=True)
class Mdns:
    enabled: bool = setting(True, help="advertise _wallmesh._tcp on the LAN")
    interfaces: tuple[str, ...] = setting([], help="IP addresses to advertise on; empty: every address of the host (or 127.0.0.1 on a loopback bind)")
    instance: str = setting("wallmesh", help="service instance name", pattern=r"[A-Za-z0-9 ._-]{1,63}")


@dataclass(frozen=True)
class Tokens:
    issuer: str = setting("wallmesh", help="JWT 'iss' claim")
    audience: str = setting("wallmesh-signal", help="JWT 'aud' claim")
    user_ttl_s: int = setting(12 * 3600, help="lifetime of user tokens, seconds", min=60)
    device_ttl_s: int = setting(24 * 3600, help="lifetime of device tokens, seconds", min=60)
    enrollment_ttl_s: int = setting(7 * 24 * 3600, help="default lifetime of fleet enrollment tokens, seconds", min=60)


@dataclass(frozen=True)
class Hashing:
    memory_kib: int = setting(19456, help="argon2id memory cost, KiB (OWASP minimum 19456)", min=19456)
    time_cost: int = setting(2, help="argon2id iterations (OWASP minimum 2)", min=2)
    parallelism: int = setting(1, help="argon2id lanes", min=1, max=8)
    workers: int = setting(2, help="threads hashing passwords and secrets (never the event loop)", min=1, max=16)
    queue: int = setting(64, help="hash requests allowed to wait before logins answer 429", min=1)


@dataclass(frozen=True)
class Sfu:
    type: str = setting("none", choices=("none", "janus"), help="conference server for rooms beyond the mesh cap: none, or janus")
    url: str = setting("", pattern=r"(https?://[^\s]{1,250})?", help="Janus HTTP API, e.g. 'http://10.0.0.2:8088/janus'")
    more_urls: tuple[str, ...] = setting(
        [], pattern=r"https?://[^\s]{1,250}",
        help="further Janus instances (the same secrets); each room that escalates goes to the least loaded live one",
    )
    secret_file: str = setting("janus-api-secret", help="file holding Janus's api_secret; a relative path is in the state directory")
    admin_key_file: str = setting("janus-admin-key", help="file holding the VideoRoom admin_key; a relative path is in the state directory")
    escalate_at: int = setting(0, min=0, max=256, help="room size at which a room moves to the conference server; 0: max_room_size + 1")
    max_room_size: int = setting(32, min=2, max=256, help="participants per room through the conference server (the VideoRoom's publisher limit)")
    return_below: int = setting(
        0, min=0, max=255, help="a room this size or smaller for return_after_s goes back to a mesh; 0: max_room_size - 2 (at least 1)",
    )
    return_after_s: float = setting(
        60.0, min=0, max=3600, help="how long a room must stay at return_below or smaller before it goes back to a mesh, s",
    )
    timeout_s: float = setting(5.0, min=0.5, max=60, help="how long a request to Janus may take, seconds")
    probe_s: float = setting(2.0, min=0.2, max=60, help="how often the server checks that Janus is up (and reconnects), seconds")


@dataclass(frozen=True)
class SignalConfig:
    host: str = setting("0.0.0.0", help="address to listen on; a loopback address may serve plain HTTP")
    port: int = setting(8443, help="TCP port; 0 picks a free one", min=0, max=65535)
    url: str = setting("", help="URL units and browsers use to reach this server (put in enrollment tokens); empty: derived from host and port")
    state_dir: str = setting("/var/lib/wallmesh/signal", help="keys, certificates and the embedded store")
    mongodb_uri: str = setting("", help="MongoDB URI; empty: start the embedded store in state_dir")
    database: str = setting("wallmesh", help="database name in the store", pattern=r"[A-Za-z0-9_-]{1,63}")
    tls_on_loopback: bool = setting(False, help="serve HTTPS even on a loopback bind")
    max_room_size: int = setting(6, help="participants per room; the next one gets room_full", min=2, max=32)
    revocation_poll_s: float = setting(1.0, help="how often to re-read device revocations and user removals from the store, seconds", min=0.2, max=5)
    static_dir: str = setting("", help="directory served at / ; empty: the bundled browser client if present")
    rate: RateLimits = section(RateLimits)
    http: Http = section(Http)
    heartbeat: Heartbeat = section(Heartbeat)
    ice: Ice = section(Ice)
    tls: Tls = section(Tls)
    mdns: Mdns = section(Mdns)
    tokens: Tokens = section(Tokens)
    hashing: Hashing = section(Hashing)
    sfu: Sfu = section(Sfu)
