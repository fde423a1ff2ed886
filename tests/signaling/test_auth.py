"""JWT negative suite and key handling: only tokens this site signed, for the right use, pass."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import time

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance import protocol
from appliance.errors import AuthError
from appliance.signaling.auth import Hasher, KeyRing, LoginThrottle, Throttled, TokenService

from .conftest import Client


@pytest.fixture
def ring(tmp_path) -> KeyRing:
    keys = KeyRing(tmp_path, max_token_ttl_s=3600)
    keys.load()
    return keys


@pytest.fixture
def svc(ring) -> TokenService:
    return TokenService(ring, issuer="wallmesh", audience="wallmesh-signal")


def _b64(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _claims(**over):
    now = int(time.time())
    base = {"iss": "wallmesh", "aud": "wallmesh-signal", "sub": "alice", "kind": "user", "name": "alice",
            "rooms": ["*"], "iat": now, "exp": now + 600, "jti": "j1"}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def _sign(ring: KeyRing, payload, **headers) -> str:
    kid, key = ring.signing_key()
    return pyjwt.encode(payload, key, algorithm="EdDSA", headers={"kid": kid, **headers})


def test_good_token_round_trips(svc) -> None:
    claims = svc.verify(svc.issue("user", "alice", "Alice", ["lobby"], 60), "user")
    assert (claims.sub, claims.name, claims.rooms) == ("alice", "Alice", ("lobby",))
    assert claims.grants("lobby") and not claims.grants("other")


def test_alg_none_refused(svc, ring) -> None:
    kid, _ = ring.signing_key()
    token = _b64({"alg": "none", "typ": "JWT", "kid": kid}) + "." + _b64(_claims()) + "."
    with pytest.raises(AuthError):
        svc.verify(token, "user")


def test_hmac_with_the_public_key_refused(svc, ring) -> None:
    kid, key = ring.signing_key()
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    import hashlib
    import hmac

    for secret in (public_pem, raw):
        header = _b64({"alg": "HS256", "typ": "JWT", "kid": kid})
        body = _b64(_claims())
        sig = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
        token = f"{header}.{body}." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()
        with pytest.raises(AuthError):
            svc.verify(token, "user")


def test_other_keys_and_algorithms_refused(svc, ring) -> None:
    kid, _ = ring.signing_key()
    foreign = Ed25519PrivateKey.generate()
    with pytest.raises(AuthError):
        svc.verify(pyjwt.encode(_claims(), foreign, algorithm="EdDSA", headers={"kid": kid}), "user")
    es = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(AuthError):
        svc.verify(pyjwt.encode(_claims(), es, algorithm="ES256", headers={"kid": kid}), "user")


@pytest.mark.parametrize(
    "change",
    [
        {"aud": "someone-else"},
        {"aud": ["wallmesh-signal-x"]},
        {"iss": "wallmes"},        # partial issuer
        {"iss": "wallmesh-evil"},
        {"iss": None},
        {"aud": None},
        {"sub": None},
        {"exp": None},             # missing exp
        {"exp": int(time.time()) - 120, "iat": int(time.time()) - 700},  # expired
        {"kind": "device"},
        {"kind": "enroll"},
        {"kind": None},
        {"rooms": "lobby"},
        {"jti": None},
    ],
)
def test_claim_problems_refused(svc, ring, change) -> None:
    with pytest.raises(AuthError):
        svc.verify(_sign(ring, _claims(**change)), "user")


def test_device_token_is_not_a_user_token(svc) -> None:
    device = svc.issue("device", "pi-1", "pi-1", ["*"], 60)
    svc.verify(device, "device")
    with pytest.raises(AuthError):
        svc.verify(device, "user")
    with pytest.raises(AuthError):
        svc.verify(svc.issue("user", "alice", "alice", ["*"], 60), "device")


def test_rotation_keeps_old_tokens_until_they_expire(tmp_path) -> None:
    ring = KeyRing(tmp_path, max_token_ttl_s=3600)
    ring.load()
    svc = TokenService(ring, issuer="i", audience="a")
    old = svc.issue("user", "alice", "alice", ["*"], 60)
    first = ring.current
    ring.rotate()
    assert ring.current != first
    new = svc.issue("user", "alice", "alice", ["*"], 60)
    assert pyjwt.get_unverified_header(new)["kid"] == ring.current
    svc.verify(old, "user")  # now also in the token cache
    svc.verify(new, "user")
    # once the retired key is older than any token it could have signed, it is dropped,
    # and a cached token signed by it is refused like any other
    index = json.loads((tmp_path / "keys" / "index.json").read_text())
    index["retired"][first] = time.time() - 7200
    (tmp_path / "keys" / "index.json").write_text(json.dumps(index))
    ring.load()
    with pytest.raises(AuthError):
        svc.verify(old, "user")
    svc.verify(new, "user")


def test_key_files_are_private(ring, tmp_path) -> None:
    files = list((tmp_path / "keys").iterdir())
    assert files
    for path in files:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


async def test_hasher_meets_owasp_minimum_and_runs_off_loop() -> None:
    hasher = Hasher(memory_kib=19456, time_cost=2, parallelism=1, workers=1, queue=1)
    try:
        digest = await hasher.hash("s3cret-pass")
        assert digest.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
        assert await hasher.verify(digest, "s3cret-pass")
        assert not await hasher.verify(digest, "other")
        assert not await hasher.verify(None, "other")
    finally:
        hasher.close()


def test_throttle_by_address_and_account_never_locks_out_a_clean_address() -> None:
    throttle = LoginThrottle(failures=3, window_s=60)
    for t in range(3):
        throttle.check("10.0.0.66", "user:alice", now=t)
        throttle.failed("10.0.0.66", "user:alice", now=t)
    # the failing address is refused, for every account, until its oldest failure is 60 s old
    for account in ("user:alice", "user:bob"):
        with pytest.raises(Throttled) as info:
            throttle.check("10.0.0.66", account, now=10)
        assert info.value.code == "rate_limited" and info.value.retry_after == 50
    # the account's owner, from an address of her own, is not
    throttle.check("10.0.0.7", "user:alice", now=10)
    # an address that failed once (here at another account) is refused the attacked account ...
    throttle.failed("10.0.0.8", "user:carol", now=11)
    with pytest.raises(Throttled):
        throttle.check("10.0.0.8", "user:alice", now=12)
    throttle.check("10.0.0.8", "user:carol", now=12)  # ... but not its own
    # once the window has passed, all is forgotten
    throttle.check("10.0.0.66", "user:alice", now=61)
    throttle.check("10.0.0.8", "user:alice", now=72)


async def test_throttle_bounds_logins_per_address() -> None:
    throttle = LoginThrottle(failures=5, window_s=60, burst=4, rate_per_s=0.5, concurrency=2, queue=1)
    for _ in range(4):
        throttle.check("10.0.0.9", "user:x", now=0)
    with pytest.raises(Throttled) as info:
        throttle.check("10.0.0.9", "user:y", now=0)
    assert info.value.retry_after == 2
    throttle.check("10.0.0.10", "user:x", now=0)  # another address has its own bucket
    throttle.check("10.0.0.9", "user:x", now=2)  # refilled at 0.5 a second
    # two hash at once, one waits its turn, a fourth is refused
    throttle = LoginThrottle(failures=5, window_s=60, concurrency=2, queue=1)
    inside, release = [], asyncio.Event()

    async def login(account: str) -> None:
        async with throttle.attempt("10.0.0.11", account):
            inside.append(account)
            await release.wait()

    tasks = [asyncio.create_task(login(a)) for a in "abc"]
    await asyncio.sleep(0.01)
    assert inside == ["a", "b"]
    with pytest.raises(Throttled):
        throttle.check("10.0.0.11", "d")
    throttle.check("10.0.0.12", "d")
    release.set()
    await asyncio.gather(*tasks)
    assert inside == ["a", "b", "c"]
    throttle.check("10.0.0.11", "d")


async def test_forged_tokens_refused_at_hello(server, http) -> None:
    foreign = Ed25519PrivateKey.generate()
    kid = server.keys.current
    forged = pyjwt.encode(_claims(), foreign, algorithm="EdDSA", headers={"kid": kid})
    enroll = await server.admin.enrollment_token(ttl_s=600)
    for token in (forged, enroll, "x" * 100):
        c = await Client.connect(http, server)
        await c.send({"type": "hello", "token": token})
        assert (await c.recv())["code"] == "unauthorized"
        assert await c.expect_close() == protocol.CLOSE_UNAUTHORIZED


def test_repeated_token_is_verified_once(svc, monkeypatch) -> None:
    token = svc.issue("device", "pi-1", "pi-1", ["*"], 60)
    calls = []
    real = pyjwt.decode
    monkeypatch.setattr(pyjwt, "decode", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    for _ in range(5):
        assert svc.verify(token, "device").sub == "pi-1"
        with pytest.raises(AuthError):
            svc.verify(token, "user")  # the kind is checked on every hit too
    assert len(calls) == 1


def test_token_cache_is_bounded(ring) -> None:
    svc = TokenService(ring, issuer="wallmesh", audience="wallmesh-signal", cache_size=3)
    tokens = [svc.issue("user", f"u{i}", f"u{i}", ["*"], 60) for i in range(10)]
    for token in tokens:
        svc.verify(token, "user")
    assert len(svc._cache) == 3


def test_cached_token_refused_after_it_expires(svc) -> None:
    token = svc.issue("user", "alice", "alice", ["*"], 1)
    claims = svc.verify(token, "user")
    assert svc.verify(token, "user") is claims  # served from the cache
    while time.time() <= claims.exp + 0.05:
        time.sleep(0.05)
    with pytest.raises(AuthError):
        svc.verify(token, "user")



class _CountingArgon2:
    """Delegates to the real argon2 PasswordHasher, counting the computations it runs."""

    def __init__(self, real) -> None:
        self.real, self.runs = real, 0

    def hash(self, secret):
        self.runs += 1
        return self.real.hash(secret)

    def verify(self, stored, secret):
        self.runs += 1
        return self.real.verify(stored, secret)


async def test_an_unknown_name_costs_one_argon2_computation_like_a_wrong_secret() -> None:
    """Every verification -- of a real hash, or for a name that does not exist, the first such
    one included -- runs argon2id exactly once, so their timing cannot tell them apart."""
    hasher = Hasher(memory_kib=19456, time_cost=2, parallelism=1, workers=1, queue=4)
    try:
        digest = await hasher.hash("s3cret-pass")
        counting = hasher._ph = _CountingArgon2(hasher._ph)
        for stored in (digest, None, None, digest, None):
            before = counting.runs
            assert not await hasher.verify(stored, "wrong")
            assert counting.runs - before == 1, stored
    finally:
        hasher.close()
