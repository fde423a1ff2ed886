"""Tokens, signing keys, password hashing and login throttling for the signaling server.

Tokens are JWTs signed with **Ed25519** (``EdDSA``). An asymmetric key means there is no
shared secret to confuse with an HMAC key, and verification pins the one algorithm, so
``alg: none`` and HMAC-with-the-public-key forgeries fail by construction. Each key has a
``kid``; rotation makes a new key current and keeps the old one for verification until
every token it could have signed has expired.

Passwords and device secrets are stored only as argon2id hashes, computed in a small
thread pool (the event loop never hashes), with a bounded queue so a login flood is
answered with 429 instead of stalling every connection.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import math
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from appliance.errors import AuthError
from appliance.files import write_atomic

log = logging.getLogger(__name__)

ALGORITHM = "EdDSA"
KINDS = ("user", "device", "enroll")


@dataclass(frozen=True, slots=True)
class Claims:
    """The verified content of a token."""

    sub: str
    kind: str
    name: str
    rooms: tuple[str, ...]
    exp: float
    jti: str
    extra: Mapping[str, Any]
    iat: float = 0.0

    def grants(self, room: str) -> bool:
        return "*" in self.rooms or room in self.rooms


class KeyRing:
    """Ed25519 signing keys in ``<state_dir>/keys`` (files mode 0600)."""

    def __init__(self, state_dir: Path, *, max_token_ttl_s: float) -> None:
        self.dir = state_dir / "keys"
        self.max_ttl = max_token_ttl_s
        self.current: str = ""
        self._private: dict[str, Any] = {}
        self._public: dict[str, Any] = {}
        self._loaded_at = 0.0

    def _index(self) -> dict[str, Any]:
        path = self.dir / "index.json"
        if path.exists():
            return json.loads(path.read_text())
        return {"current": "", "retired": {}}

    def load(self) -> None:
        """Read the keys, generating the first one when there is none."""
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        index = self._index()
        if not index["current"]:
            self.rotate()
            return
        now = time.time()
        private, public = {}, {}
        for kid in [index["current"], *index["retired"]]:
            retired = index["retired"].get(kid)
            if retired is not None and retired + self.max_ttl < now:
                continue  # every token it signed has expired
            path = self.dir / f"{kid}.pem"
            if not path.exists():
                continue
            key = load_pem_private_key(path.read_bytes(), password=None)
            private[kid], public[kid] = key, key.public_key()
        self._private, self._public, self.current = private, public, index["current"]
        self._loaded_at = time.monotonic()

    def rotate(self) -> str:
        """Make a fresh key current; the previous one still verifies until its tokens expire."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = Ed25519PrivateKey.generate()
        kid = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(4)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        write_atomic(self.dir / f"{kid}.pem", pem, mode=0o600)
        index = self._index()
        if index["current"]:
            index["retired"][index["current"]] = time.time()
        index["current"] = kid
        write_atomic(self.dir / "index.json", json.dumps(index, indent=1), mode=0o600)
        log.info("signing key %s is now current", kid)
        self.load()
        return kid

    def signing_key(self) -> tuple[str, Any]:
        return self.current, self._private[self.current]

    def public_key(self, kid: str) -> Any:
        key = self._public.get(kid)
        if key is None and time.monotonic() - self._loaded_at > 1.0:
            self.load()  # a key made by another process (CLI rotation) since we last looked
            key = self._public.get(kid)
        return key


class TokenService:
    """Issues and verifies wallmesh JWTs.

    Verified tokens are remembered (at most ``cache_size``, each until its ``exp``) so a
    token presented again -- a unit reconnecting, a connect storm after a power cut -- costs
    a dict lookup instead of an Ed25519 verification. A hit still requires the exact same
    token string, an unexpired ``exp`` and a signing key the ring still holds; revocation
    and user removal are checked by the caller on every use, cached or not.
    """

    def __init__(self, keys: KeyRing, *, issuer: str, audience: str, cache_size: int = 4096) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.cache_size = cache_size
        self._cache: collections.OrderedDict[str, tuple[str, Claims]] = collections.OrderedDict()

    def issue(self, kind: str, sub: str, name: str, rooms: tuple[str, ...] | list[str], ttl_s: int, **extra: Any) -> str:
        import jwt

        if kind not in KINDS:
            raise ValueError(f"unknown token kind {kind!r}")
        now = int(time.time())
        payload = {
            "iss": self.issuer, "aud": self.audience, "sub": sub, "kind": kind, "name": name,
            "rooms": list(rooms), "iat": now, "exp": now + int(ttl_s), "jti": uuid.uuid4().hex, **extra,
        }
        kid, key = self.keys.signing_key()
        return jwt.encode(payload, key, algorithm=ALGORITHM, headers={"kid": kid})

    def verify(self, token: str, kind: str) -> Claims:
        """Check signature, algorithm, iss, aud, exp, sub and kind; raise AuthError otherwise."""
        if not isinstance(token, str) or len(token) > 8192:
            raise AuthError("unauthorized", "malformed token")
        claims = self._cached(token)
        if claims is None:
            kid, claims = self._decode(token)
            if self.cache_size > 0:
                self._cache[token] = (kid, claims)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        if claims.kind != kind:
            raise AuthError("unauthorized", f"a {kind} token is required")
        return claims

    def _cached(self, token: str) -> Claims | None:
        entry = self._cache.get(token)
        if entry is None:
            return None
        kid, claims = entry
        if time.time() >= claims.exp or self.keys.public_key(kid) is None:
            del self._cache[token]  # expired, or its key retired since: decode again and refuse
            return None
        self._cache.move_to_end(token)
        return claims

    def _decode(self, token: str) -> tuple[str, Claims]:
        """Full verification of a token of any kind; the signing ``kid`` and the claims."""
        import jwt

        try:
            header = jwt.get_unverified_header(token)
            kid = header.get("kid")
            key = self.keys.public_key(kid) if isinstance(kid, str) else None
            if key is None or not isinstance(kid, str) or header.get("alg") != ALGORITHM:
                raise AuthError("unauthorized", "token not signed by this site")
            payload = jwt.decode(
                token, key, algorithms=[ALGORITHM], audience=self.audience, issuer=self.issuer,
                options={"require": ["iss", "aud", "exp", "iat", "sub", "jti"], "verify_signature": True},
            )
        except jwt.PyJWTError as exc:
            raise AuthError("unauthorized", f"token refused: {type(exc).__name__}") from None
        if payload.get("iss") != self.issuer or payload.get("aud") != self.audience:
            raise AuthError("unauthorized", "token refused: issuer or audience")
        kind = payload.get("kind")
        if kind not in KINDS:
            raise AuthError("unauthorized", "token refused: kind claim")
        rooms = payload.get("rooms", [])
        sub, name = payload.get("sub"), payload.get("name", payload.get("sub"))
        if not isinstance(rooms, list) or not all(isinstance(r, str) for r in rooms):
            raise AuthError("unauthorized", "token refused: rooms claim")
        if not isinstance(sub, str) or not sub or not isinstance(name, str):
            raise AuthError("unauthorized", "token refused: sub or name claim")
        known = {"iss", "aud", "sub", "kind", "name", "rooms", "iat", "exp", "jti"}
        return kid, Claims(
            sub=sub, kind=kind, name=name, rooms=tuple(rooms), exp=float(payload["exp"]), jti=str(payload["jti"]),
            extra=MappingProxyType({k: v for k, v in payload.items() if k not in known}),
            iat=float(payload["iat"]),
        )


class Hasher:
    """argon2id hashing in a bounded thread pool."""

    def __init__(self, *, memory_kib: int, time_cost: int, parallelism: int, workers: int, queue: int) -> None:
        from argon2 import PasswordHasher, Type

        self._ph = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, hash_len=32, salt_len=16, type=Type.ID
        )
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")
        self._limit = workers + queue
        self._pending = 0
        self._dummy: str | None = None

    async def _run(self, fn: Any, *args: Any) -> Any:
        if self._pending >= self._limit:
            raise AuthError("rate_limited", "too many logins in progress; retry shortly")
        self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        finally:
            self._pending -= 1

    async def hash(self, secret: str) -> str:
        return await self._run(self._ph.hash, secret)

    async def verify(self, stored: str | None, secret: str) -> bool:
        """True when ``secret`` matches; with ``stored=None`` (an unknown user or device)
        spends the same time -- one argon2id computation with the same parameters -- and
        says False, so the answer's timing does not tell which names exist."""
        if stored is None:
            if self._dummy is None:
                # the first unknown name pays for making the dummy hash, which costs what
                # one verification does; verifying against it as well would cost double
                self._dummy = await self.hash(secrets.token_hex(16))
            else:
                await self._run(self._check, self._dummy, secret)
            return False
        return await self._run(self._check, stored, secret)

    def _check(self, stored: str, secret: str) -> bool:
        from argon2.exceptions import InvalidHashError, VerificationError

        try:
            return self._ph.verify(stored, secret)
        except (VerificationError, InvalidHashError):
            return False

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class Throttled(AuthError):
    """A login refused before any hashing; ``retry_after`` is when it may be tried again, seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__("rate_limited", message)
        self.retry_after = max(1, math.ceil(retry_after))


#: Logins one address may start in a burst, then per second: each costs an argon2 hash
#: (about 50 ms of a worker), so one address can never take more than a sliver of them.
LOGIN_BURST = 30
LOGIN_RATE_PER_S = 1.0
#: Logins from one address hashing (or waiting for a hash worker) at once, and how many
#: more may wait their turn (a room of units on one host starting together) before 429.
LOGIN_CONCURRENCY = 2
LOGIN_QUEUE = 8


class _Failures:
    """Times of recent failures for one key, oldest first (at most ``limit`` kept)."""

    __slots__ = ("times",)

    def __init__(self, limit: int) -> None:
        self.times: collections.deque[float] = collections.deque(maxlen=limit)


class _Slots:
    """The logins of one address being hashed (at most ``concurrency``) or waiting to be."""

    __slots__ = ("sem", "users")

    def __init__(self, concurrency: int) -> None:
        self.sem = asyncio.Semaphore(concurrency)
        self.users = 0


class _Bucket:
    __slots__ = ("level", "stamp")

    def __init__(self, level: float, stamp: float) -> None:
        self.level, self.stamp = level, stamp


class LoginThrottle:
    """Decides, before any hashing, whether a login may be tried; counts failures.

    The rule, for a login to account *A* from address *X* (failures counted over
    ``window_s``; ``failures`` is the limit):

    * *X* may start ``LOGIN_BURST`` logins at once, then ``LOGIN_RATE_PER_S`` a second,
      whatever their outcome; at most ``LOGIN_CONCURRENCY`` of them hash at a time and
      ``LOGIN_QUEUE`` more wait their turn: bogus logins from one place cannot fill the
      hashing queue and starve everyone else's.
    * *X* with ``failures`` failed logins (to any accounts) is refused until the oldest
      leaves the window.
    * *A* with ``failures`` failed logins (from any addresses) is refused to every address
      that has itself failed recently -- but not to an address with no recent failure, so
      guessing someone's password never locks that person (or a unit) out: a correct
      password from a clean address always gets in.

    Refusals are :class:`Throttled` (429 with ``Retry-After``). Nothing is reset by a
    success: a valid account must not buy its holder fresh guesses at others. Account
    names are keyed as sent, so an unknown name and a real one behave the same.
    """

    def __init__(self, *, failures: int, window_s: float, burst: int = LOGIN_BURST, rate_per_s: float = LOGIN_RATE_PER_S,
                 concurrency: int = LOGIN_CONCURRENCY, queue: int = LOGIN_QUEUE, max_keys: int = 100_000) -> None:
        self.failures = failures
        self.window = window_s
        self.burst = burst
        self.rate = rate_per_s
        self.concurrency = concurrency
        self.queue = queue
        self.max_keys = max_keys
        self._addresses: collections.OrderedDict[str, _Failures] = collections.OrderedDict()
        self._accounts: collections.OrderedDict[str, _Failures] = collections.OrderedDict()
        self._buckets: collections.OrderedDict[str, _Bucket] = collections.OrderedDict()
        self._slots: dict[str, _Slots] = {}

    def _recent(self, table: collections.OrderedDict[str, _Failures], key: str, now: float) -> collections.deque[float] | None:
        entry = table.get(key)
        if entry is None:
            return None
        times = entry.times
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del table[key]
            return None
        return times

    def check(self, address: str, account: str, *, now: float | None = None) -> None:
        """Raise :class:`Throttled` when a login to ``account`` from ``address`` may not be
        tried now; otherwise count it against the address's rate."""
        now = time.monotonic() if now is None else now
        slots = self._slots.get(address)
        if slots is not None and slots.users >= self.concurrency + self.queue:
            raise Throttled("too many logins from this address at once; retry shortly", 1)
        self._failures(address, account, now)
        bucket = self._buckets.get(address)
        if bucket is None:
            bucket = self._buckets[address] = _Bucket(float(self.burst), now)
            self._trim(self._buckets)
        else:
            self._buckets.move_to_end(address)
        bucket.level = min(float(self.burst), bucket.level + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        if bucket.level < 1.0:
            raise Throttled("too many logins from this address; slow down", (1.0 - bucket.level) / self.rate)
        bucket.level -= 1.0

    def _failures(self, address: str, account: str, now: float) -> None:
        mine = self._recent(self._addresses, address, now)
        if mine is not None and len(mine) >= self.failures:
            raise Throttled("too many failed logins from this address; try again later", mine[0] + self.window - now)
        theirs = self._recent(self._accounts, account, now)
        if mine is not None and theirs is not None and len(theirs) >= self.failures:
            raise Throttled("too many failed logins for this account; try again later", mine[-1] + self.window - now)

    @contextlib.asynccontextmanager
    async def attempt(self, address: str, account: str) -> AsyncIterator[None]:
        """``async with throttle.attempt(addr, account):`` around the hashing: :meth:`check`,
        then wait for one of the address's hashing slots (and check its failures again:
        others from the same address may have failed meanwhile)."""
        self.check(address, account)
        slots = self._slots.get(address)
        if slots is None:
            slots = self._slots[address] = _Slots(self.concurrency)
        slots.users += 1
        try:
            async with slots.sem:
                self._failures(address, account, time.monotonic())
                yield
        finally:
            slots.users -= 1
            if slots.users == 0:
                del self._slots[address]

    def failed(self, address: str, account: str, *, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for table, key in ((self._addresses, address), (self._accounts, account)):
            times = self._recent(table, key, now)
            if times is None:
                table[key] = entry = _Failures(self.failures)
                times = entry.times
                self._trim(table)
            else:
                table.move_to_end(key)
            times.append(now)

    def _trim(self, table: collections.OrderedDict[str, Any]) -> None:
        while len(table) > self.max_keys:
            table.popitem(last=False)
