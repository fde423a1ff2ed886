"""``wallmesh bench faults``: what hostile or broken clients cost everyone else.

Two figures, both against a real ``wallmesh signal`` process on loopback:

* ``login_unknown_over_wrong_p50`` -- the median time of a login to a name that does not
  exist over that of a wrong password for a real one. Each attempt comes from a fresh
  loopback address (any 127.x address is this host), so the per-address throttle never
  answers for the hash; the two kinds alternate so drift hits both alike. A ratio near 1
  means timing does not tell which names exist.
* ``silent_clients_p99_delay_ms`` -- the p99 relay delay of signal frames between two
  well-behaved clients while, from a separate process, ``silent`` hostile sockets are kept
  open: a third send half an HTTP request head and stop, a third upgrade to a WebSocket
  and never say hello, a third join rooms and never read while a sender in their room
  fills their queues with large frames. Each one closed by the server is replaced at once,
  so the pressure lasts the whole run. The detail says how the server's memory moved.

Then the network faults on real units in namespaces (:mod:`appliance.bench.netfaults`):
``loss5_tier_step_s``, ``loss15_max_freeze_ms``, ``partition_rejoin_s``, ``turn_only_connect_s``.

The part also runs :mod:`appliance.bench.watchdog` (``watchdog_rejoin_s``: the image's
systemd restarts a killed and a hung unit) and :mod:`appliance.bench.soak`
(``soak_rss_slope_kb_per_min``, ``soak_fd_growth``: a 4-unit room for 30 minutes, 5 with
``--quick``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from appliance.bench.report import Result
from appliance.bench.signaling.figures import percentile
from appliance.bench.signaling.servers import BenchError, ServerProcess, start_wallmesh
from appliance.bench.signaling.wsclient import WsClient

USER = "bench-faults"
#: Loopback addresses the hostile sockets come from (at most ``SOCKETS_PER_ADDRESS`` each,
#: under the server's per-address cap) and the first one login attempts come from.
HOSTILE_NET = "127.0.2."
SOCKETS_PER_ADDRESS = 64
BLAST_BYTES = 60_000
#: How often each sender sends the reader that never reads one such frame: its queue
#: passes the server's bound within a few seconds, and the senders together are a steady
#: load on the server, not a flood the rate limit would cut off first.
BLAST_INTERVAL_S = 0.2
KINDS = ("partial-head", "no-hello", "never-reads")


def run(quick: bool) -> list[Result]:
    from appliance.bench import netfaults, soak, watchdog

    results = asyncio.run(measure(quick))
    results.extend(netfaults.run(quick))
    results.extend(watchdog.run(quick))
    results.extend(soak.run(quick))
    return results


async def measure(quick: bool, *, silent: int | None = None, seconds: float | None = None,
                  login_samples: int | None = None) -> list[Result]:
    silent = silent if silent is not None else (60 if quick else 200)
    seconds = seconds if seconds is not None else (5.0 if quick else 20.0)
    login_samples = login_samples if login_samples is not None else (10 if quick else 100)
    password = secrets.token_urlsafe(18)
    with tempfile.TemporaryDirectory(prefix="wallmesh-bench-faults-") as tmp:
        server = await asyncio.to_thread(start_wallmesh, Path(tmp), USER, password)
        try:
            login = await login_timing(server.url, password, login_samples)
            token = await _token(server.url, password)
            delay = await silent_clients(server, token, silent, seconds)
        finally:
            await asyncio.to_thread(server.stop)
    return [login, delay]


# --- login timing -----------------------------------------------------------------------


async def _post_login(url: str, address: str, username: str, password: str) -> tuple[float, int]:
    import aiohttp

    connector = aiohttp.TCPConnector(local_addr=(address, 0), force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        start = time.perf_counter()
        async with http.post(url + "/api/auth/login", json={"username": username, "password": password}) as res:
            await res.read()
            return time.perf_counter() - start, res.status


async def login_timing(url: str, password: str, samples: int, *, net: int = 3) -> Result:
    """Median login time for unknown names over that for wrong passwords (one try per
    address, from ``127.<net>.x.y`` on: a second run against the same server needs another
    ``net``, as the addresses of the first have failed logins on record)."""
    unknown: list[float] = []
    wrong: list[float] = []
    refused = 0
    for i in range(6):  # warm both paths up (the dummy hash, the store's first reads), from addresses of their own
        await _post_login(url, f"127.{net}.255.{1 + i}", USER if i % 2 else f"nobody-{secrets.token_hex(4)}", password + "-")
    for i in range(2 * samples):
        address = f"127.{net}.{i // 250}.{1 + i % 250}"
        is_unknown = i % 2 == (i // 2) % 2  # u w w u u w w u ...: neither kind always goes first
        name = f"nobody-{secrets.token_hex(4)}" if is_unknown else USER
        seconds, status = await _post_login(url, address, name, "not-the-password")
        if status != 401:
            refused += 1
            continue
        (unknown if is_unknown else wrong).append(seconds)
    if not unknown or not wrong:
        return Result("login_unknown_over_wrong_p50", None, "ratio", f"every attempt was refused ({refused})")
    ratio = statistics.median(unknown) / statistics.median(wrong)
    detail = (f"median unknown user {statistics.median(unknown) * 1000:.1f} ms, wrong password "
              f"{statistics.median(wrong) * 1000:.1f} ms, {len(unknown)}+{len(wrong)} tries; bar 0.9-1.1")
    if refused:
        detail += f"; {refused} throttled"
    return Result("login_unknown_over_wrong_p50", round(ratio, 3), "ratio", detail)


async def _token(url: str, password: str) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.post(url + "/api/auth/login", json={"username": USER, "password": password}) as res:
        return (await res.json())["token"]


# --- silent and slow clients ------------------------------------------------------------


class _Pair:
    """Two well-behaved clients in a room of their own, timing each other's signal frames."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.sent = 0
        self.peers: dict[int, str] = {}
        self.welcome: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.clients: list[WsClient] = []

    def on_message(self, index: int, payload: bytes) -> None:
        now = time.perf_counter()
        msg = orjson.loads(payload)
        kind = msg.get("type")
        if kind == "signal":
            self.delays.append(now - msg["data"]["t"])
        elif kind in ("welcome", "joined", "error"):
            fut = self.welcome.get(index)
            if fut is not None and not fut.done():
                fut.set_result(msg)

    async def start(self, ws_url: str, token: str, room: str) -> None:
        loop = asyncio.get_running_loop()
        for index in range(2):
            client = await WsClient.connect(ws_url, functools.partial(self.on_message, index), _ignore_close)
            self.clients.append(client)
            for message in ({"type": "hello", "token": token, "name": f"pair-{index}"}, {"type": "join", "room": room}):
                self.welcome[index] = loop.create_future()
                client.send(orjson.dumps(message))
                try:
                    reply = await asyncio.wait_for(self.welcome[index], 10)
                except TimeoutError:
                    raise BenchError(f"the server did not answer {message['type']} in time") from None
                if reply["type"] == "error":
                    raise BenchError(f"the server refused the measuring client's {message['type']}: {reply.get('code')}")
                if reply["type"] == "welcome":
                    self.peers[index] = reply["peer_id"]

    async def exchange(self, seconds: float, rate: float = 50.0) -> None:
        """Each client sends ``rate`` candidates a second to the other, stamped with the time."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            for index, client in enumerate(self.clients):
                to = self.peers[1 - index]
                data = {"t": time.perf_counter(), "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"}}
                client.send(orjson.dumps({"type": "signal", "to": to, "data": data}))
                self.sent += 1
            await asyncio.sleep(1 / rate)
        await asyncio.sleep(1.0)  # the last frames in flight

    def close(self) -> None:
        for client in self.clients:
            client.abort()


async def silent_clients(server: ServerProcess, token: str, count: int, seconds: float) -> Result:
    ws_url = server.url.replace("http", "ws", 1) + "/ws"
    rss0, _ = server.rss_mb()
    cpu0, wait0 = server.cpu_s(), server.cpu_wait_s()
    # the hostile side runs in a process of its own, so its work never delays the pair's clock;
    # a plain child driven over its stdout (as the signaling bench's load processes are): it
    # prints "ready" once its sockets are open, and the closures it counted when it is stopped
    attack = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "appliance.bench.faults", "--attack", ws_url, token, str(count), str(seconds + 30),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
    )
    assert attack.stdout is not None
    pair = _Pair()
    ended = [0] * len(KINDS)
    try:
        try:
            line = await asyncio.wait_for(attack.stdout.readline(), 60)
        except TimeoutError:
            line = b""
        if line.strip() != b"ready":
            return Result("silent_clients_p99_delay_ms", None, "ms", "the hostile clients did not connect")
        await pair.start(ws_url, token, "bench-faults-pair")
        await asyncio.sleep(1.0)
        await pair.exchange(seconds)
        rss1, peak = server.rss_mb()
        cpu, wait = server.cpu_s() - cpu0, server.cpu_wait_s() - wait0
    finally:
        pair.close()
        if attack.returncode is None:
            attack.terminate()
        try:
            out, _ = await asyncio.wait_for(attack.communicate(), 10)
            ended = orjson.loads(out.splitlines()[-1]) if out.strip() else ended
        except TimeoutError:
            attack.kill()
            await attack.wait()
    p99 = percentile([d * 1000 for d in pair.delays], 99)
    lost = pair.sent - len(pair.delays)
    closed = ", ".join(f"{n} {kind}" for kind, n in zip(KINDS, ended, strict=True))
    detail = (f"{count} silent/slow sockets ({closed} closed by the server), {len(pair.delays)} frames in {seconds:.0f} s, {lost} lost; "
              f"server RSS {rss0:.0f} -> {rss1:.0f} MiB (peak {peak:.0f}), CPU {cpu:.1f} s, waited for a CPU {wait:.1f} s; bar 50 ms")
    return Result("silent_clients_p99_delay_ms", None if p99 is None else round(p99, 2), "ms", detail)


def _ignore(_payload: bytes) -> None:
    pass


def _ignore_close(_code: int | None) -> None:
    pass


def _attack_main(ws_url: str, token: str, count: int, seconds: float) -> None:
    """The hostile side's process: "ready" on stdout once its sockets are open; on SIGTERM (or
    after ``seconds``), the closures by kind as one JSON line."""
    ended = [0] * len(KINDS)

    def ready() -> None:
        print("ready", flush=True)

    async def main() -> None:
        task = asyncio.create_task(_attack(ws_url, token, count, seconds, ready, ended))
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())
    print(orjson.dumps(ended).decode(), flush=True)


async def _open(host: str, port: int, index: int) -> socket.socket:
    """A non-blocking TCP socket to the server from one of the hostile addresses."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills quickly when not read
    sock.bind((f"{HOSTILE_NET}{1 + index // SOCKETS_PER_ADDRESS}", 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    return sock


async def _attack(ws_url: str, token: str, count: int, seconds: float, ready: Callable[[], None], ended: list[int]) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(ws_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds

    async def partial_head(index: int) -> bool:
        sock = await _open(host, port, index)
        try:
            await loop.sock_sendall(sock, f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n".encode())
            while await loop.sock_recv(sock, 4096):  # until the server gives up on the head
                pass
            return True
        finally:
            sock.close()

    async def upgraded(index: int) -> tuple[WsClient, asyncio.Future[None]]:
        sock = await _open(host, port, index)
        closed: asyncio.Future[None] = loop.create_future()

        def on_close(_code: int | None) -> None:
            if not closed.done():
                closed.set_result(None)

        _, proto = await loop.create_connection(lambda: WsClient(_ignore, on_close), sock=sock)
        await asyncio.wait_for(proto.upgrade(host, port, "/ws"), 10)
        return proto, closed

    async def no_hello(index: int) -> bool:
        _, closed = await upgraded(index)
        await closed  # 4401 after the hello timeout
        return True

    async def never_reads(index: int) -> bool:
        # a room of this reader and a sender that keeps filling the reader's queue
        room = f"bench-faults-{index}"
        (reader, _), (sender, _) = await upgraded(index), await upgraded(index)
        got: asyncio.Future[str] = loop.create_future()
        gone = asyncio.Event()  # the server dropped the reader: the sender hears so

        def on_sender(payload: bytes) -> None:
            msg = orjson.loads(payload)
            kind = msg.get("type")
            if kind == "peer-joined" and not got.done():
                got.set_result(msg["peer_id"])
            elif kind == "peer-left" or (kind == "error" and msg.get("code") == "unknown_peer"):
                gone.set()

        sender.on_message = on_sender
        for client in (sender, reader):
            client.send(orjson.dumps({"type": "hello", "token": token, "name": "never-reads"}))
            client.send(orjson.dumps({"type": "join", "room": room}))
            await asyncio.sleep(0.2)
        assert reader.transport is not None
        reader.transport.pause_reading()  # the kernel buffer fills, then the server's queue
        try:
            to = await asyncio.wait_for(got, 10)
        except TimeoutError:
            reader.abort()
            sender.abort()
            return False
        blob = "x" * BLAST_BYTES
        blast = orjson.dumps({"type": "signal", "to": to, "data": {"sdp": {"type": "offer", "sdp": blob}}})
        while not gone.is_set() and not sender.closed and loop.time() < end:
            sender.send(blast)
            await asyncio.sleep(BLAST_INTERVAL_S)
        reader.abort()
        sender.abort()
        return gone.is_set()

    workers = {"partial-head": partial_head, "no-hello": no_hello, "never-reads": never_reads}

    async def keep_open(index: int) -> None:
        which = index % len(KINDS)
        while loop.time() < end:
            try:
                if await workers[KINDS[which]](index):
                    ended[which] += 1
            except (OSError, ConnectionError, TimeoutError, ValueError):
                pass
            await asyncio.sleep(0.05)

    tasks = [asyncio.create_task(keep_open(i)) for i in range(count)]
    await asyncio.sleep(2.0)
    ready()
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--attack":
        _attack_main(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
    else:
        sys.exit("usage: python -m appliance.bench.faults --attack WS_URL TOKEN COUNT SECONDS (the faults bench starts it)")
