"""Users, devices, enrollment tokens and the call log, kept in MongoDB through pymongo's async API.

The same code runs against a real ``mongod`` and against the embedded ``nx-27017``. Every
connection-level failure surfaces as :class:`~appliance.errors.StoreUnavailable`, so callers
fail closed (logins refused) while rooms, which live in memory, carry on. A background
probe keeps :attr:`Store.available` current, and the call log is buffered in memory while
the store is away (oldest entries dropped past a bound, counted).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from appliance.errors import StoreUnavailable, WallmeshError

log = logging.getLogger(__name__)


class Conflict(WallmeshError, ValueError):
    """The record already exists (a user name or device id is taken)."""


def _keep_cancel(exc: BaseException | None) -> None:
    """Raise the cancel that pymongo swallowed.

    A task cancelled mid-operation can see pymongo turn the cancel into AutoReconnect
    or a timeout, or finish the operation and return. Either way the cancel would be
    lost and a background loop would keep running after the server stopped.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc


class Store:
    """The site's persistent records. ``uri`` names any MongoDB deployment."""

    def __init__(self, uri: str, database: str = "wallmesh", *, timeout_s: float = 2.0) -> None:
        from pymongo import AsyncMongoClient

        ms = int(timeout_s * 1000)
        self._client: Any = AsyncMongoClient(
            uri, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms, socketTimeoutMS=ms * 2, tz_aware=False
        )
        db = self._client[database]
        self.users = db["users"]
        self.devices = db["devices"]
        self.enrollments = db["enrollments"]
        self.calls = db["calls"]
        self.removed = db["removed_users"]
        self.available = False
        self._calllog: collections.deque[dict[str, Any]] = collections.deque(maxlen=10000)
        self._calllog_wakeup = asyncio.Event()
        self.on_calllog_dropped: Callable[[int], None] = lambda n: None
        self.on_availability: Callable[[bool], None] = lambda up: None

    async def close(self) -> None:
        await self._client.close()

    # --- availability -----------------------------------------------------

    async def _call(self, coro: Any) -> Any:
        from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

        try:
            result = await coro
        except (TimeoutError, ConnectionFailure) as exc:  # AutoReconnect, ServerSelectionTimeout, NetworkTimeout
            _keep_cancel(exc)
            self._set_available(False)
            raise StoreUnavailable(f"store unreachable: {type(exc).__name__}") from exc
        except OperationFailure:
            raise
        except PyMongoError as exc:
            _keep_cancel(exc)
            raise StoreUnavailable(f"store error: {type(exc).__name__}") from exc
        _keep_cancel(None)
        self._set_available(True)
        return result

    def _set_available(self, up: bool) -> None:
        if up != self.available:
            self.available = up
            if up:
                log.info("store is reachable")
            else:
                log.warning("store is unreachable; logins fail closed, rooms keep relaying")
            self.on_availability(up)
            if up:
                self._calllog_wakeup.set()

    async def ping(self) -> bool:
        try:
            await self._call(self._client.admin.command("ping"))
        except StoreUnavailable:
            return False
        return True

    async def setup(self) -> None:
        """Create indexes; raises StoreUnavailable when the store cannot be reached."""
        await self._call(self.calls.create_index([("at", 1)]))
        await self._call(self.devices.create_index([("revoked", 1)]))

    async def watch(self, interval_s: float = 1.0) -> None:
        """Probe the store forever; flush the buffered call log whenever it is reachable."""
        while True:
            await self.ping()
            if self.available and self._calllog:
                await self._flush_calllog()
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancel
            # that races its timeout, and the server would then never finish stopping.
            try:
                async with asyncio.timeout(interval_s):
                    await self._calllog_wakeup.wait()
            except TimeoutError:
                pass
            self._calllog_wakeup.clear()

    # --- users ------------------------------------------------------------

    async def add_user(self, name: str, password_hash: str, rooms: Iterable[str]) -> None:
        from pymongo.errors import DuplicateKeyError

        doc = {"_id": name, "hash": password_hash, "rooms": list(rooms), "created": time.time()}
        try:
            await self._call(self.users.insert_one(doc))
        except DuplicateKeyError:
            raise Conflict(f"user {name!r} already exists") from None

    async def get_user(self, name: str) -> dict[str, Any] | None:
        return await self._call(self.users.find_one({"_id": name}))

    async def set_user_hash(self, name: str, password_hash: str) -> None:
        await self._call(self.users.update_one({"_id": name}, {"$set": {"hash": password_hash}}))

    async def remove_user(self, name: str) -> bool:
        """Delete the account; a tombstone (written first) refuses every token issued until now."""
        if await self.get_user(name) is None:
            return False
        await self._call(self.removed.replace_one({"_id": name}, {"_id": name, "at": time.time()}, upsert=True))
        result = await self._call(self.users.delete_one({"_id": name}))
        return result.deleted_count == 1

    async def removed_users(self, since: float) -> dict[str, float]:
        """User name -> when it was last removed, for removals after ``since``."""
        cursor = self.removed.find({"at": {"$gt": since}})
        return {doc["_id"]: float(doc["at"]) for doc in await self._call(cursor.to_list(None))}

    async def list_users(self) -> list[dict[str, Any]]:
        cursor = self.users.find({}, {"hash": 0}).sort("_id", 1)
        return await self._call(cursor.to_list(None))

    # --- devices ----------------------------------------------------------

    async def add_device(self, device_id: str, name: str, secret_hash: str, rooms: Iterable[str], enrollment: str) -> None:
        from pymongo.errors import DuplicateKeyError

        doc = {
            "_id": device_id, "name": name, "hash": secret_hash, "rooms": list(rooms),
            "enrollment": enrollment, "created": time.time(), "revoked": False, "revoked_at": None,
        }
        try:
            await self._call(self.devices.insert_one(doc))
        except DuplicateKeyError:
            raise Conflict(f"device {device_id!r} already exists") from None

    async def get_device(self, device_id: str) -> dict[str, Any] | None:
        return await self._call(self.devices.find_one({"_id": device_id}))

    async def list_devices(self) -> list[dict[str, Any]]:
        cursor = self.devices.find({}, {"hash": 0}).sort("_id", 1)
        return await self._call(cursor.to_list(None))

    async def revoke_device(self, device_id: str) -> bool:
        result = await self._call(
            self.devices.update_one({"_id": device_id}, {"$set": {"revoked": True, "revoked_at": time.time()}})
        )
        return result.matched_count == 1

    async def revoked_devices(self) -> set[str]:
        cursor = self.devices.find({"revoked": True}, {"_id": 1})
        return {doc["_id"] for doc in await self._call(cursor.to_list(None))}

    # --- enrollment tokens --------------------------------------------------

    async def add_enrollment(self, jti: str, rooms: Iterable[str], expires: float) -> None:
        doc = {"_id": jti, "rooms": list(rooms), "expires": expires, "created": time.time(), "revoked": False}
        await self._call(self.enrollments.insert_one(doc))

    async def get_enrollment(self, jti: str) -> dict[str, Any] | None:
        return await self._call(self.enrollments.find_one({"_id": jti}))

    async def list_enrollments(self) -> list[dict[str, Any]]:
        return await self._call(self.enrollments.find({}).sort("created", 1).to_list(None))

    async def revoke_enrollment(self, jti: str) -> bool:
        result = await self._call(self.enrollments.update_one({"_id": jti}, {"$set": {"revoked": True}}))
        return result.matched_count == 1

    # --- call log -----------------------------------------------------------

    def log_call(self, event: str, room: str, peer_id: str, sub: str, kind: str, name: str) -> None:
        """Queue one join/leave record (never blocks; written by :meth:`watch`)."""
        if len(self._calllog) == self._calllog.maxlen:
            self.on_calllog_dropped(1)
        self._calllog.append(
            {"event": event, "room": room, "peer_id": peer_id, "sub": sub, "kind": kind, "name": name, "at": time.time()}
        )
        if self.available and len(self._calllog) >= 200:
            self._calllog_wakeup.set()

    async def _flush_calllog(self) -> None:
        while self._calllog and self.available:
            batch = [self._calllog.popleft() for _ in range(min(500, len(self._calllog)))]
            try:
                await self._call(self.calls.insert_many(batch, ordered=True))
            except StoreUnavailable:
                self._calllog.extendleft(reversed(batch))  # retried when the store is back
                return

    async def call_log(self, room: str | None = None) -> list[dict[str, Any]]:
        query = {"room": room} if room else {}
        return await self._call(self.calls.find(query, {"_id": 0}).sort("at", 1).to_list(None))
