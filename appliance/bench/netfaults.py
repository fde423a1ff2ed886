"""Real network faults on real units: loss, a partition, TURN as the only path.

Each scenario builds a :class:`~appliance.bench.netlab.Lab`, puts the signaling server (and
coturn) on its switch and one ``wallmesh run`` on each host, spoils one link and watches the
units through their ``GET /status``, polled every :data:`POLL_S`. ``wallmesh bench faults``
reports the figures; the tests run the same functions and check what the units did.

* :func:`loss` -- ``percent`` % random drop on one unit's link, both ways: how long until
  that unit's encoder runs a lower tier, the longest gap between pictures its peer shows
  from it while the loss lasts (a freeze), how long after the link is clean the tier is
  back. Figures ``loss5_tier_step_s`` and ``loss15_max_freeze_ms``.
* :func:`rate_limit` -- the same with a ``tc`` token bucket on what the unit sends, below
  what its best tier needs: figure ``rate_limit_tier_step_s`` (an addition to the issue's).
* :func:`partition` -- one of three units loses its link for ``seconds``: the other two
  must go on receiving each other; the cut-off unit must say ``reconnecting``; once the
  link is back, how long until its pictures and the others' flow both ways again, without
  anyone's help. Figure ``partition_rejoin_s``.
* :func:`turn_only` -- UDP between the two units' hosts is dropped, so only coturn's relay
  on the switch joins them: from the second unit's join to both peer connections connected.
  Figure ``turn_only_connect_s``.

Times are measured at the poll, so a figure can be late by up to one poll interval.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.bench.labsite import LabSite, LabUnit, frames_from, peer_named, until
from appliance.bench.netlab import Host, Lab, LabError, missing
from appliance.bench.report import Result

POLL_S = 0.1
#: A token bucket that 640x480 does not fit through (about 600 kbit/s with audio) and 320x240 does (about 350).
RATE_KBIT = 480
#: Units that follow loss: the policy may pick up to 640x480, which two units can send each
#: other on a shared machine; loss then has a tier to step down from.
BEST_WIDTH = 640
ADAPTIVE: dict[str, Any] = {"quality": {"adaptive": True, "max_tier": "medium"}, "video": {"width": BEST_WIDTH, "height": 480, "fps": 15}}


@dataclass
class Watch:
    """The frames one unit has shown from another, and the longest gap between new ones."""

    viewer: LabUnit
    sender: str
    frames: int = -1
    peer_id: str | None = None
    last_new: float | None = None
    longest_gap: float = 0.0
    samples: list[float] = field(default_factory=list)

    def fold(self, status: dict[str, Any] | None, now: float) -> None:
        peer = peer_named(status, self.sender)
        frames = frames_from(status, self.sender)
        pid = peer.get("id") if peer else None
        new = frames > self.frames or (pid != self.peer_id and frames > 0)
        if new:
            if self.last_new is not None:
                self.longest_gap = max(self.longest_gap, now - self.last_new)
            self.last_new = now
        self.frames, self.peer_id = frames, pid

    def reset(self, now: float) -> None:
        """Start measuring gaps from ``now`` (the frames seen so far count as the last picture)."""
        self.last_new, self.longest_gap = now, 0.0

    def gap_now(self, now: float) -> float:
        """The gap so far, counting a freeze that has not ended yet."""
        return max(self.longest_gap, now - self.last_new) if self.last_new is not None else float("inf")


async def _statuses(units: list[LabUnit]) -> list[dict[str, Any] | None]:
    return list(await asyncio.gather(*(u.status() for u in units)))


async def _all_streams(units: list[LabUnit], timeout: float, min_frames: int = 10) -> None:
    async def flowing() -> bool:
        statuses = await _statuses(units)
        return all(frames_from(st, other.name) >= min_frames
                   for unit, st in zip(units, statuses, strict=True) for other in units if other is not unit)

    await until(flowing, timeout, f"video between all of {', '.join(u.name for u in units)}")


def _width(status: dict[str, Any] | None) -> int | None:
    encoder = ((status or {}).get("media") or {}).get("encoder") or {}
    return encoder.get("width")


# --- loss ----------------------------------------------------------------------------------


@dataclass
class LossRun:
    fault: str  # what was done to the link, in words
    start_width: int
    step_s: float | None  # loss on -> the lossy unit's encoder at a lower tier
    low_width: int | None
    max_freeze_ms: float  # longest gap between pictures from the lossy unit while lossy (the peer's record)
    polled_freeze_ms: float  # the same seen through status polls (up to a poll interval more)
    recovered_s: float | None  # loss off -> the encoder back at its first tier
    out_loss: list[float]  # what the lossy unit's peer reported losing (RTCP), each poll

    @property
    def detail(self) -> str:
        step = f"{self.step_s:.1f} s" if self.step_s is not None else "never"
        back = f"{self.recovered_s:.1f} s after the link was clean" if self.recovered_s is not None else "not back"
        seen = sorted(self.out_loss)
        median = f"{seen[len(seen) // 2] * 100:.1f} %" if seen else "none"
        return (f"{self.fault} on one of two units' links: tier {self.start_width}px -> "
                f"{self.low_width or '-'}px after {step}, back {back}; longest freeze {self.max_freeze_ms:.0f} ms "
                f"(polled {self.polled_freeze_ms:.0f} ms); "
                f"median reported loss {median}")


async def loss(root: Path, percent: int, *, lossy_s: float = 15.0, recover_s: float = 40.0) -> LossRun:
    """Two adaptive units; ``percent`` % loss on the first one's link for ``lossy_s`` seconds."""
    return await _degraded(root, f"{percent} % drop each way", lambda h: h.set_loss(percent), lambda h: h.set_loss(0),
                           lossy_s=lossy_s, recover_s=recover_s)


async def rate_limit(root: Path, kbit: int, *, lossy_s: float = 15.0, recover_s: float = 40.0) -> LossRun:
    """Two adaptive units; what the first one sends limited to ``kbit`` kbit/s (tc tbf) for
    ``lossy_s`` seconds: less than its best tier needs, so the bucket drops what does not fit."""
    return await _degraded(root, f"a {kbit} kbit/s token bucket", lambda h: h.set_rate(kbit), lambda h: h.set_rate(None),
                           lossy_s=lossy_s, recover_s=recover_s)


async def _degraded(root: Path, fault: str, spoil: Callable[[Host], None], mend: Callable[[Host], None], *,
                    lossy_s: float, recover_s: float) -> LossRun:
    with Lab.create() as lab:
        site = LabSite(lab, root)
        try:
            await site.start_server()
            a = await site.spawn(lab.add_host("a"), 1, ADAPTIVE)
            b = await site.spawn(lab.add_host("b"), 2, ADAPTIVE)
            await _all_streams([a, b], 60)

            async def settled() -> int | None:
                st = await a.status()
                width = _width(st)
                return width if width and width > BEST_WIDTH // 2 else None

            start_width = await until(settled, 20, "the unit's encoder at its best tier")
            await asyncio.sleep(2.0)  # the new tier's keyframe is through
            watch = Watch(b, a.name)
            watch.fold(await b.status(), time.monotonic())
            t0 = time.monotonic()
            watch.reset(t0)
            spoil(a.host)
            step_s = low_width = None
            out_loss: list[float] = []
            while (now := time.monotonic()) - t0 < lossy_s:
                sa, sb = await _statuses([a, b])
                watch.fold(sb, now)
                width = _width(sa)
                if step_s is None and width is not None and width < start_width:
                    step_s, low_width = now - t0, width
                reported = (peer_named(sb, a.name) or {}).get("loss")
                if reported is not None:
                    out_loss.append(reported)
                await asyncio.sleep(POLL_S)
            # the unit's own record of its freezes (exact), and a freeze still going on (polled)
            t_end = time.time()
            freezes = [gap for end, gap in (peer_named(await b.status(), a.name) or {}).get("freezes", [])
                       if t_end - (time.monotonic() - t0) <= end <= t_end]
            ongoing = time.monotonic() - watch.last_new if watch.last_new is not None else lossy_s
            freeze_ms = max([*freezes, ongoing * 1000])
            polled_ms = watch.gap_now(time.monotonic()) * 1000
            mend(a.host)
            t1 = time.monotonic()
            recovered_s = None
            while step_s is not None and time.monotonic() - t1 < recover_s:
                if _width(await a.status()) == start_width:
                    recovered_s = time.monotonic() - t1
                    break
                await asyncio.sleep(POLL_S * 2)
            return LossRun(fault, start_width, step_s, low_width, freeze_ms, polled_ms, recovered_s, out_loss)
        finally:
            await site.close()


# --- partition -----------------------------------------------------------------------------


@dataclass
class PartitionRun:
    seconds: float
    others_max_gap_ms: float  # longest gap between pictures the two connected units showed each other
    reconnecting_after_s: float | None  # link down -> the cut-off unit says "reconnecting"
    rejoin_s: float | None  # link up -> pictures flow both ways between it and both others
    cut_states: list[str]

    @property
    def detail(self) -> str:
        said = f"after {self.reconnecting_after_s:.1f} s" if self.reconnecting_after_s is not None else "never"
        back = f"{self.rejoin_s:.1f} s" if self.rejoin_s is not None else "never"
        return (f"one of three units' switch port down {self.seconds:.0f} s: the other two's longest freeze "
                f"{self.others_max_gap_ms:.0f} ms; it showed reconnecting {said} (states {', '.join(self.cut_states)}); "
                f"media both ways with both others {back} after the port came up; bar 5 s")


async def partition(root: Path, seconds: float = 30.0, *, rejoin_timeout: float = 60.0) -> PartitionRun:
    with Lab.create() as lab:
        site = LabSite(lab, root)
        try:
            await site.start_server()
            units = [await site.spawn(lab.add_host(h), i, None) for i, h in enumerate("abc", 1)]
            a, b, c = units
            await _all_streams(units, 90)
            ab, ba = Watch(b, a.name), Watch(a, b.name)
            t0 = time.monotonic()
            for w in (ab, ba):
                w.fold(await w.viewer.status(), t0)
                w.reset(t0)
            c.host.set_link(False)
            reconnecting = None
            states: list[str] = []
            while (now := time.monotonic()) - t0 < seconds:
                sa, sb, sc = await _statuses(units)
                ba.fold(sa, now)
                ab.fold(sb, now)
                state = (sc or {}).get("state")
                if state and (not states or states[-1] != state):
                    states.append(state)
                if reconnecting is None and state == "reconnecting":
                    reconnecting = now - t0
                await asyncio.sleep(POLL_S)
            others_gap = max(ab.gap_now(time.monotonic()), ba.gap_now(time.monotonic()))
            # what each of the six streams showed when the link came back
            pairs = [(v, s) for v in units for s in units if v is not s and c in (v, s)]
            watches = [Watch(v, s.name) for v, s in pairs]
            for w, st in zip(watches, await _statuses([v for v, _ in pairs]), strict=True):
                w.fold(st, 0.0)
            c.host.set_link(True)
            t1 = time.monotonic()
            rejoin = None
            while (now := time.monotonic()) - t1 < rejoin_timeout:
                statuses = await _statuses([v for v, _ in pairs])
                for w, st in zip(watches, statuses, strict=True):
                    before = w.last_new
                    w.fold(st, now)
                    if w.last_new != before:
                        w.samples.append(now)
                state = (statuses[pairs.index((c, a))] or {}).get("state")
                if state and (not states or states[-1] != state):
                    states.append(state)
                # fresh pictures (two new frame counts each) on all four streams to and from the cut-off unit
                if all(len(w.samples) >= 2 for w in watches) and state == "in_call":
                    rejoin = max(w.samples[1] for w in watches) - t1
                    break
                await asyncio.sleep(POLL_S)
            return PartitionRun(seconds, others_gap * 1000, reconnecting, rejoin, states)
        finally:
            await site.close()


# --- TURN only -----------------------------------------------------------------------------


@dataclass
class TurnRun:
    connect_s: float | None  # second unit joined -> both peer connections connected
    first_frame_s: float | None  # second unit joined -> both show the other's pictures
    allocations: int  # TURN allocations the units made
    relayed_pairs: int  # ICE checks that succeeded through the relay on the switch
    direct_pairs: int  # ... and directly between the units (must be none: UDP between them is dropped)

    @property
    def detail(self) -> str:
        first = f"{self.first_frame_s:.2f} s" if self.first_frame_s is not None else "never"
        return (f"UDP between the two units' hosts dropped, coturn on the switch with REST credentials from welcome: "
                f"connected {_s(self.connect_s)} after the second join, first pictures both ways after {first}; "
                f"{self.allocations} TURN allocations, {self.relayed_pairs} candidate pairs through the relay and "
                f"{self.direct_pairs} direct; bar 3 s")


async def turn_only(root: Path, *, timeout: float = 30.0) -> TurnRun:
    with Lab.create() as lab:
        site = LabSite(lab, root)
        try:
            await site.start_turn()
            await site.start_server()
            ha, hb = lab.add_host("a"), lab.add_host("b")
            ha.block_udp_with([hb])
            a = await site.spawn(ha, 1)
            await until(lambda: _in_call(a), 60, "the first unit in its room")
            b = await site.spawn(hb, 2)
            await until(lambda: _in_call(b), 60, "the second unit in its room")
            connect = first = None
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                sa, sb = await _statuses([a, b])
                joined = (sb or {}).get("joined_at")
                pa, pb = peer_named(sa, b.name) or {}, peer_named(sb, a.name) or {}
                if joined and connect is None and pa.get("connection") == pb.get("connection") == "connected":
                    connect = max(pa["connected_at"], pb["connected_at"]) - joined
                if joined and pa.get("first_frame_at") and pb.get("first_frame_at"):
                    first = max(pa["first_frame_at"], pb["first_frame_at"]) - joined
                    break
                await asyncio.sleep(POLL_S)
            logs = a.log_text() + "\n" + b.log_text()
            allocations = logs.count("TURN allocation created")
            succeeded = [ln for ln in logs.splitlines() if "-> State.SUCCEEDED" in ln]
            via_turn = sum(1 for ln in succeeded if f"('{lab.address}'," in ln)
            return TurnRun(connect, first, allocations, via_turn, len(succeeded) - via_turn)
        finally:
            await site.close()


async def _in_call(unit: LabUnit) -> bool:
    return ((await unit.status()) or {}).get("state") == "in_call"


# --- the bench -----------------------------------------------------------------------------


def run(quick: bool) -> list[Result]:
    return asyncio.run(measure(quick))


async def measure(quick: bool) -> list[Result]:
    names = ("loss5_tier_step_s", "loss15_max_freeze_ms", "partition_rejoin_s", "turn_only_connect_s", "rate_limit_tier_step_s")
    units = ("s", "ms", "s", "s", "s")
    why = missing()
    if why:
        return [Result(n, None, u, f"not measured: {why}") for n, u in zip(names, units, strict=True)]
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="wallmesh-bench-netfaults-") as tmp:
        root = Path(tmp)
        lossy_s = 12.0 if quick else 20.0
        try:
            five = await loss(root / "loss5", 5, lossy_s=lossy_s)
            results.append(Result(names[0], _round(five.step_s, 2), "s", five.detail + "; bar 10 s"))
        except LabError as exc:
            results.append(Result(names[0], None, "s", f"failed: {exc}"))
        try:
            fifteen = await loss(root / "loss15", 15, lossy_s=lossy_s)
            results.append(Result(names[1], round(fifteen.max_freeze_ms), "ms", fifteen.detail + "; bar 1000 ms"))
        except LabError as exc:
            results.append(Result(names[1], None, "ms", f"failed: {exc}"))
        try:
            cut = await partition(root / "partition", 30.0)
            results.append(Result(names[2], _round(cut.rejoin_s, 2), "s", cut.detail))
        except LabError as exc:
            results.append(Result(names[2], None, "s", f"failed: {exc}"))
        try:
            turn = await turn_only(root / "turn")
            results.append(Result(names[3], _round(turn.connect_s, 2), "s", turn.detail))
        except LabError as exc:
            results.append(Result(names[3], None, "s", f"failed: {exc}"))
        try:
            limited = await rate_limit(root / "rate", RATE_KBIT, lossy_s=lossy_s)
            results.append(Result(names[4], _round(limited.step_s, 2), "s", limited.detail))
        except LabError as exc:
            results.append(Result(names[4], None, "s", f"failed: {exc}"))
    return results


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
