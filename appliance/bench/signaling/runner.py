"""``wallmesh bench signaling``: the site's signaling server under a power-cut join storm.

One run measures two loads, first against ``wallmesh signal`` and then against the stock
PeerJS server, with the same traffic:

1. *join storm* — every unit of a site reboots at once: all clients connected, then every
   room of four does its full-mesh join at the same instant (per pair an offer and an
   answer of ~3 KB and ten trickled candidates each way). Figures: frames relayed per
   second, relay latency p50/p99, time until the last frame is delivered, frames lost,
   server memory.
2. *steady state* — the same clients stay connected while rooms join, negotiate and leave
   at a site's usual pace (a few hundred frames a second in all): relay latency p50/p99.

The servers run in their own processes and the clients in one or two load processes
(:mod:`appliance.bench.signaling.load`), so a figure is the server's and not the load
generator's; the generators' CPU use is reported alongside to show they were not the limit.
Latency is measured from the sender building a frame to the receiver reading it, both on
CLOCK_MONOTONIC, which every process of a Linux host shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from appliance.bench.report import Result
from appliance.bench.signaling import traffic
from appliance.bench.signaling.figures import Figures, Phase, Storm, results
from appliance.bench.signaling.plan import FULL, QUICK, Plan
from appliance.bench.signaling.servers import BenchError, ServerProcess, child_env, die_with_parent, start_peerjs, start_wallmesh

BENCH_USER = "bench"


def run(quick: bool) -> list[Result]:
    """The ``wallmesh bench`` entry point."""
    return asyncio.run(measure(QUICK if quick else FULL))


def progress(msg: str, *args: object) -> None:
    print("# signaling: " + (msg % args if args else msg), file=sys.stderr, flush=True)


# --- load processes -------------------------------------------------------------------


class LoadProcess:
    """One :mod:`~appliance.bench.signaling.load` process, driven over its stdin/stdout."""

    def __init__(self, proc: asyncio.subprocess.Process, index: int) -> None:
        self.proc = proc
        self.index = index

    @classmethod
    async def spawn(cls, dialect: str, url: str, first: int, count: int, index: int, secret: str) -> LoadProcess:
        argv = [sys.executable, "-m", "appliance.bench.signaling.load", "--dialect", dialect, "--url", url]
        argv += ["--first", str(first), "--count", str(count), "--worker", str(index + 1)]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=child_env(),
            start_new_session=True, preexec_fn=die_with_parent, limit=256 * 1024 * 1024,
        )
        assert proc.stdin is not None
        proc.stdin.write(secret.encode() + b"\n")
        return cls(proc, index)

    async def call(self, op: str, wait_s: float, **args: Any) -> dict[str, Any]:
        import orjson

        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(orjson.dumps({"op": op, **args}) + b"\n")
        await self.proc.stdin.drain()
        deadline = time.monotonic() + wait_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(f"load process {self.index} did not finish {op!r} in {wait_s:.0f} s")
            try:
                line = await asyncio.wait_for(self.proc.stdout.readline(), timeout=remaining)
            except TimeoutError:
                continue
            if not line:
                raise BenchError(f"load process {self.index} exited during {op!r} (status {await self.proc.wait()})")
            reply = orjson.loads(line)
            if reply.get("ev") == op:
                return reply

    async def close(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(BenchError, OSError, ValueError):
                await self.call("close", wait_s=20)
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        await self.proc.wait()


class Target:
    """One server under test, its load processes, and what was measured against it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.figures = Figures(name)
        self.server: ServerProcess | None = None
        self.loads: list[LoadProcess] = []

    @property
    def failed(self) -> bool:
        return bool(self.figures.failure)

    def fail(self, exc: Exception) -> None:
        progress("%s: %s", self.name, exc)
        self.figures.failure = str(exc)

    async def start(self, plan: Plan, workdir: Path) -> None:
        """Start the server, then its load processes, and connect every client."""
        if self.name == "wallmesh":
            password = secrets.token_urlsafe(18)
            self.server = await asyncio.to_thread(start_wallmesh, workdir, BENCH_USER, password)
            secret = await _login(self.server.url, BENCH_USER, password)
        else:
            self.server = await asyncio.to_thread(start_peerjs, workdir)
            secret = "peerjs"
        progress("%s: server at %s (pid %d); connecting %d clients", self.name, self.server.url, self.server.pid, plan.clients)
        rooms = plan.clients // traffic.ROOM_SIZE
        per = [rooms // plan.workers + (1 if i < rooms % plan.workers else 0) for i in range(plan.workers)]
        first = 0
        for index, n in enumerate(per):
            if n:
                load = await LoadProcess.spawn(self.name, self.server.url, first * traffic.ROOM_SIZE, n * traffic.ROOM_SIZE, index, secret)
                self.loads.append(load)
            first += n
        replies = await asyncio.gather(*(w.call("connect", wait_s=300) for w in self.loads))
        self.figures.clients = sum(r["connected"] for r in replies)
        self.figures.connect_s = max(r["seconds"] for r in replies)
        for r in replies:
            self.figures.connect_errors.update(r["errors"])
        self._check("while clients connected")
        if plan.drop:
            await self.loads[0].call("drop", wait_s=30, count=plan.drop)

    def _check(self, when: str) -> None:
        assert self.server is not None
        if not self.server.alive():
            raise BenchError(f"{self.server.name} exited {when}: {self.server.log_tail()}")

    async def storm(self, plan: Plan, run: int) -> None:
        """One join storm; afterwards every room is left again, ready for the next."""
        server, figures = self.server, self.figures
        assert server is not None
        progress("%s: join storm %d/%d of %d rooms", self.name, run + 1, plan.storms, figures.clients // traffic.ROOM_SIZE)
        cpu0, wait0 = server.cpu_s(), server.cpu_wait_s()
        t0 = time.monotonic_ns() + 500_000_000
        replies = await asyncio.gather(*(w.call("storm", wait_s=plan.storm_timeout_s + 60, t0=t0, timeout=plan.storm_timeout_s) for w in self.loads))
        storm = Storm(Phase.merge(replies), t0, server.cpu_s() - cpu0, os.getloadavg()[0])
        storm.phase.server_wait_s = server.cpu_wait_s() - wait0
        figures.storms.append(storm)
        rss, peak = server.rss_mb()
        figures.rss_mb, figures.peak_rss_mb = rss, max(peak, figures.peak_rss_mb or 0.0)
        progress("%s: storm delivered %d/%d frames in %.2f s", self.name, storm.phase.received, storm.phase.expected, storm.drain_s or 0)
        if self.name == "wallmesh":
            await asyncio.gather(*(w.call("leave", wait_s=60) for w in self.loads))
        self._check("during the join storm")
        await asyncio.sleep(1.0)

    async def steady(self, plan: Plan) -> None:
        server, figures = self.server, self.figures
        assert server is not None
        progress("%s: steady state for %.0f s", self.name, plan.steady_s)
        t0 = time.monotonic_ns() + 300_000_000
        share = plan.steady_rate / len(self.loads)
        cpu0, wait0 = server.cpu_s(), server.cpu_wait_s()
        replies = await asyncio.gather(*(w.call("steady", wait_s=plan.steady_s + 90, t0=t0, seconds=plan.steady_s, rate=share) for w in self.loads))
        figures.steady = Phase.merge(replies)
        figures.steady.server_wait_s = server.cpu_wait_s() - wait0
        figures.steady.server_cpu_s = server.cpu_s() - cpu0
        figures.steady_s = max(r["seconds"] for r in replies)
        self._check("during the steady state")

    async def close(self) -> None:
        """Stop the load processes, then the server. Idempotent."""
        loads, self.loads = self.loads, []
        await asyncio.gather(*(w.close() for w in loads), return_exceptions=True)
        if self.server is not None:
            await asyncio.to_thread(self.server.stop)


async def _login(url: str, username: str, password: str) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.post(url + "/api/auth/login", json={"username": username, "password": password}) as resp:
        body = await resp.json(content_type=None)
        if resp.status != 200:
            raise BenchError(f"login to {url} failed: HTTP {resp.status} {body.get('error', {}).get('code')}")
        return body["token"]


def raise_fd_limit(clients: int) -> None:
    """Every client is a socket in a load process and another in the server."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, 4 * clients + 1024)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < 2 * clients + 256:
        progress("file descriptor limit %d is low for %d clients", want, clients)


async def measure(plan: Plan) -> list[Result]:
    """Run the loads of ``plan`` against each target server; the figures as results.

    Both servers are up, with all their clients connected, for the whole run, and their
    storms alternate (wallmesh, PeerJS, then PeerJS, wallmesh, ...): on a shared machine
    whose background load drifts, each server's storms meet the same conditions and the
    ratio of their throughputs stays meaningful.
    """
    if plan.clients % traffic.ROOM_SIZE:
        raise BenchError(f"clients must be a multiple of the room size {traffic.ROOM_SIZE}")
    raise_fd_limit(plan.clients * max(1, len(plan.targets)))
    targets = [Target(name) for name in ("wallmesh", "peerjs") if name in plan.targets]
    with tempfile.TemporaryDirectory(prefix=f"wallmesh-bench-signaling-{os.getpid()}-") as tmp:
        try:
            for target in targets:
                workdir = Path(tmp) / target.name
                workdir.mkdir()
                await _guarded(target, target.start(plan, workdir))
            await asyncio.sleep(1.0)
            for run in range(plan.storms):
                for target in targets if run % 2 == 0 else targets[::-1]:
                    if not target.failed:
                        await _guarded(target, target.storm(plan, run))
            for target in targets:
                if not target.failed:
                    await _guarded(target, target.steady(plan))
        finally:
            for target in targets:
                await target.close()
    return results(plan, {t.name: t.figures for t in targets})


async def _guarded(target: Target, step: Any) -> None:
    """Run one step; a failure ends this target's measurement, not the other's."""
    try:
        await step
    except BenchError as exc:
        target.fail(exc)
