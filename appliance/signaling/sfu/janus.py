"""A small client of Janus's HTTP API (one session, long-polled events), on aiohttp.

Only the signaling server speaks to Janus; clients never do. Every request carries the
site's API secret, and VideoRoom rooms are created with the plugin's admin key, both read
from the server's state directory, so nothing a client holds opens Janus.

Janus answers a request either at once (``success``/``error``: room creation, listing) or
with an ``ack`` followed by an ``event`` carrying the same transaction (joining, starting
a subscription). Events come from one long-poll loop per session; an event that answers
nothing (a subscription Janus updated by itself, a hang-up) goes to ``on_event``. When the
session is lost (Janus restarted or unreachable) every waiter fails with
:class:`SfuUnavailable` and ``on_lost`` is called once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from typing import Any

import aiohttp

from appliance.errors import WallmeshError

log = logging.getLogger(__name__)

VIDEOROOM = "janus.plugin.videoroom"


class SfuUnavailable(WallmeshError, ConnectionError):
    """Janus cannot be reached, refused a request, or lost our session."""


class JanusError(WallmeshError, RuntimeError):
    """Janus or its plugin answered a request with an error (``code`` as Janus gives it)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"janus error {code}: {reason}")
        self.code = code
        self.reason = reason


def _plugin_data(reply: dict[str, Any]) -> dict[str, Any]:
    """The plugin's answer inside a Janus reply; a plugin-level error raises JanusError."""
    data = ((reply.get("plugindata") or {}).get("data")) or {}
    if not isinstance(data, dict):
        return {}
    if data.get("error_code") is not None or (data.get("videoroom") == "event" and "error" in data):
        raise JanusError(int(data.get("error_code") or 0), str(data.get("error") or "error"))
    return data


class JanusSession:
    """One Janus session; see the module docstring."""

    def __init__(
        self,
        url: str,
        api_secret: str,
        *,
        timeout_s: float = 5.0,
        on_event: Callable[[int, dict[str, Any]], None] | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.api_secret = api_secret
        self.timeout_s = timeout_s
        self.on_event = on_event or (lambda handle, event: None)
        self.on_lost = on_lost or (lambda: None)
        self.session_id: int | None = None
        self._http: aiohttp.ClientSession | None = None
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._poll: asyncio.Task[None] | None = None
        self._closed = False
        self.lost = False

    @property
    def alive(self) -> bool:
        return self.session_id is not None and not self.lost and not self._closed

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self._http is not None
        body = {**body, "transaction": body.get("transaction") or secrets.token_hex(8), "apisecret": self.api_secret}
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self._http.post(self.url + path, json=body) as response:
                    reply = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise SfuUnavailable(f"janus at {self.url}: {exc.__class__.__name__}: {exc}") from exc
        if not isinstance(reply, dict):
            raise SfuUnavailable(f"janus at {self.url}: not a JSON object")
        if reply.get("janus") == "error":
            err = reply.get("error") or {}
            raise JanusError(int(err.get("code") or 0), str(err.get("reason") or "error"))
        return reply

    async def info(self) -> dict[str, Any]:
        """Janus's ``info`` document (also a reachability check; needs no session)."""
        if self._http is None:
            self._http = aiohttp.ClientSession()
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self._http.get(self.url + "/info") as response:
                    reply = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise SfuUnavailable(f"janus at {self.url}: {exc.__class__.__name__}: {exc}") from exc
        return reply if isinstance(reply, dict) else {}

    async def start(self) -> None:
        """Open the HTTP client and a Janus session, and start polling its events."""
        if self._http is None:
            self._http = aiohttp.ClientSession()
        reply = await self._post("", {"janus": "create"})
        self.session_id = int(reply["data"]["id"])
        self.lost = False
        self._poll = asyncio.create_task(self._long_poll(), name="janus-poll")
        log.info("janus: session %s open at %s", self.session_id, self.url)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._poll is not None:
            self._poll.cancel()
            await asyncio.gather(self._poll, return_exceptions=True)
        if self.session_id is not None and not self.lost and self._http is not None:
            with contextlib.suppress(SfuUnavailable, JanusError):
                await self._post(f"/{self.session_id}", {"janus": "destroy"})
        self._fail_waiters("session closed")
        if self._http is not None:
            await self._http.close()

    def _fail_waiters(self, why: str) -> None:
        waiters, self._waiters = self._waiters, {}
        for fut in waiters.values():
            if not fut.done():
                fut.set_exception(SfuUnavailable(why))

    def _lose(self, why: str) -> None:
        if self.lost or self._closed:
            return
        self.lost = True
        log.warning("janus: session %s lost: %s", self.session_id, why)
        self._fail_waiters(why)
        self.on_lost()

    async def _long_poll(self) -> None:
        assert self._http is not None
        params = {"maxev": "10", "apisecret": self.api_secret}
        while True:
            try:
                async with asyncio.timeout(45):
                    async with self._http.get(f"{self.url}/{self.session_id}", params=params) as response:
                        reply = await response.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                self._lose(f"{exc.__class__.__name__}: {exc}")
                return
            events = reply if isinstance(reply, list) else [reply]
            for event in events:
                if not isinstance(event, dict):
                    continue
                if event.get("janus") == "error":
                    self._lose(str((event.get("error") or {}).get("reason") or "error"))
                    return
                self._dispatch(event)

    def _dispatch(self, event: dict[str, Any]) -> None:
        kind = event.get("janus")
        if kind == "keepalive":
            return
        fut = self._waiters.pop(str(event.get("transaction") or ""), None)
        if fut is not None and kind == "event" and not fut.done():
            fut.set_result(event)
            return
        sender = event.get("sender")
        if isinstance(sender, int):
            try:
                self.on_event(sender, event)
            except Exception:  # one bad handler must not stop the polling
                log.exception("janus: event handler failed on %s", kind)

    def _need_session(self) -> int:
        if not self.alive or self.session_id is None:
            raise SfuUnavailable("no janus session")
        return self.session_id

    async def attach(self) -> int:
        """A new VideoRoom handle."""
        sid = self._need_session()
        reply = await self._post(f"/{sid}", {"janus": "attach", "plugin": VIDEOROOM})
        return int(reply["data"]["id"])

    async def detach(self, handle: int) -> None:
        if not self.alive:
            return
        try:
            await self._post(f"/{self.session_id}/{handle}", {"janus": "detach"})
        except (SfuUnavailable, JanusError) as exc:
            log.debug("janus: detach %s: %s", handle, exc)

    async def request(self, handle: int, body: dict[str, Any]) -> dict[str, Any]:
        """A synchronous plugin request (create, exists, destroy, listparticipants): its data."""
        sid = self._need_session()
        reply = await self._post(f"/{sid}/{handle}", {"janus": "message", "body": body})
        if reply.get("janus") != "success":
            raise JanusError(0, f"expected success, got {reply.get('janus')}")
        return _plugin_data(reply)

    async def message(self, handle: int, body: dict[str, Any], jsep: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """An asynchronous plugin request (join, start, configure): its event's data and JSEP."""
        sid = self._need_session()
        transaction = secrets.token_hex(8)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[transaction] = fut
        msg: dict[str, Any] = {"janus": "message", "body": body, "transaction": transaction}
        if jsep is not None:
            msg["jsep"] = jsep
        try:
            reply = await self._post(f"/{sid}/{handle}", msg)
            if reply.get("janus") == "success":  # some requests answer at once after all
                return _plugin_data(reply), reply.get("jsep")
            async with asyncio.timeout(self.timeout_s * 2):
                event = await fut
        except TimeoutError:
            raise SfuUnavailable("janus did not answer in time") from None
        finally:
            self._waiters.pop(transaction, None)
        return _plugin_data(event), event.get("jsep")

    async def trickle_done(self, handle: int) -> None:
        """Tell Janus the client's description held all its candidates."""
        sid = self._need_session()
        await self._post(f"/{sid}/{handle}", {"janus": "trickle", "candidate": {"completed": True}})

    async def keepalive(self) -> None:
        sid = self._need_session()
        await self._post(f"/{sid}", {"janus": "keepalive"})
