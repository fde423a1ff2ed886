"""One peer link: ICE gathering policy, browser-style trickled candidates, hostile descriptions.

The remote side here is a bare aiortc RTCPeerConnection behaving like a browser:
it sends its description without candidates and trickles them afterwards, the
way Chromium does, ending with an empty end-of-candidates.
"""

from __future__ import annotations

import asyncio
import contextlib
import re

import aioice.ice
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from appliance.mesh import aioice_hooks, ice
from appliance.mesh.negotiation import prefer_h264
from appliance.mesh.peer import Peer
from appliance.unit import config
from appliance.unit.media import UnitMedia

LOOPBACK = ice.IcePolicy(addresses=("127.0.0.1",), resolve_mdns=False)
CANDIDATE = re.compile(r"^a=(candidate:.*)$", re.M)


# aioice's own lookup, taken while this module is collected, before any test can have
# replaced it (appliance.bench.media_cpu.measure(), run in-process by a slow test,
# assigns a loopback-only lookup for the rest of the process).
AIOICE_LOOKUP = getattr(aioice.ice.get_host_addresses, "__wrapped__", aioice.ice.get_host_addresses)


@pytest.fixture
def aioice_own_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """This test sees aioice's real lookup, whatever earlier tests in the process left behind."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", AIOICE_LOOKUP)


def host_addresses(sdp: str) -> set[str]:
    return {line.split()[4] for line in CANDIDATE.findall(sdp)}


async def offer_sdp(policy: ice.IcePolicy | None) -> str:
    pc = RTCPeerConnection(LOOPBACK.rtc_configuration())
    pc.addTransceiver("video")
    try:
        if policy is None:
            await pc.setLocalDescription(await pc.createOffer())
        else:
            with ice.gathering(policy):
                await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp
    finally:
        await pc.close()


async def test_gathering_follows_the_policy_and_leaves_aioice_alone_outside_it(aioice_own_lookup):
    assert host_addresses(await offer_sdp(LOOPBACK)) == {"127.0.0.1"}
    outside = host_addresses(await offer_sdp(None))
    assert "127.0.0.1" not in outside  # a real unit's default: aioice's own LAN gathering


async def test_the_hook_survives_a_replaced_lookup_and_the_process_default_ends_with_its_block(
    aioice_own_lookup, monkeypatch
):
    assert aioice_hooks.install()
    # Someone assigns aioice's function behind the hook's back (what leaked in the full suite).
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.2"] if use_ipv4 else [])
    assert host_addresses(await offer_sdp(LOOPBACK)) == {"127.0.0.1"}  # the policy still wins
    assert host_addresses(await offer_sdp(None)) == {"127.0.0.2"}  # and the replacement is used outside it
    monkeypatch.setattr(aioice.ice, "get_host_addresses", AIOICE_LOOKUP)
    with ice.process_default(LOOPBACK):
        assert host_addresses(await offer_sdp(None)) == {"127.0.0.1"}
        other = ice.IcePolicy(addresses=("127.0.0.3",))
        assert host_addresses(await offer_sdp(other)) == {"127.0.0.3"}  # a peer's own policy beats the default
    assert "127.0.0.1" not in host_addresses(await offer_sdp(None))


async def test_gathering_falls_back_to_aioices_own_and_says_so_once_when_the_hook_cannot_work(
    aioice_own_lookup, monkeypatch, caplog
):
    from appliance import compat

    monkeypatch.setattr(compat, "_off", set())
    # as if aioice gathered through another function: replacing get_host_addresses would do nothing
    monkeypatch.setattr(aioice_hooks, "LOOKUP", "get_host_addresses_renamed")
    with caplog.at_level("WARNING", logger="appliance.compat"):
        assert aioice_hooks.check() == ["host address choice"]
        first = host_addresses(await offer_sdp(LOOPBACK))
        second = host_addresses(await offer_sdp(LOOPBACK))
    assert "127.0.0.1" not in first and first == second  # aioice's own gathering, no crash
    assert aioice.ice.get_host_addresses is AIOICE_LOOKUP  # nothing was installed
    said = [r.getMessage() for r in caplog.records if r.name == "appliance.compat"]
    assert len(said) == 1 and said[0].startswith("aioice: host address choice is off"), said


@pytest.fixture
async def media():
    conf = config.cfg.build(
        config.UnitConfig, {"video": {"width": 320, "height": 240}, "quality": {"adaptive": False}}, "<test>"
    )
    m = UnitMedia(conf, sender=7, name="unit")
    await m.start()
    yield m
    await m.close()


class Browser:
    """A bare peer connection that answers like Chromium: candidates trickled after the SDP."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(LOOPBACK.rtc_configuration())
        self.to_unit: list[dict] = []
        self.frames = 0

        @self.pc.on("track")
        def on_track(track):
            if track.kind == "video":
                asyncio.ensure_future(self._drain(track))

    async def _drain(self, track):
        try:
            while True:
                await track.recv()
                self.frames += 1
        except Exception:
            return

    async def answer(self, offer: dict) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(**offer))
        for t in self.pc.getTransceivers():
            prefer_h264(t)
        with ice.gathering(LOOPBACK):
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        sdp = self.pc.localDescription.sdp
        bare = "\r\n".join(
            line for line in sdp.split("\r\n") if not line.startswith(("a=candidate:", "a=end-of-candidates"))
        )
        self.to_unit.append({"sdp": {"type": "answer", "sdp": bare}})
        for index, line in enumerate(CANDIDATE.findall(sdp)):
            self.to_unit.append({"candidate": {"candidate": line, "sdpMid": "0", "sdpMLineIndex": 0}})
        mdns = "candidate:9 1 udp 2122260223 0b1e6c52-1c36-4c8a-9f1e-6a8d2a1b2c3d.local 50000 typ host"
        self.to_unit.append({"candidate": {"candidate": mdns, "sdpMid": "0", "sdpMLineIndex": 0}})
        self.to_unit.append({"candidate": {"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0}})


def browser_facing_peer(media) -> tuple[Peer, list[dict]]:
    """The unit's Peer for a browser participant, and the list of signals it sends."""
    sent: list[dict] = []

    async def send(to, data):
        sent.append(data)
        return True

    return Peer(local_id="b", remote_id="a", name="Chromium", kind="user", policy=LOOPBACK, media=media, send_signal=send), sent


async def test_unit_connects_to_a_browser_that_trickles_candidates(media):
    browser = Browser()
    peer, sent = browser_facing_peer(media)
    try:
        await peer.offer()
        assert sent[0]["sdp"]["type"] == "offer" and "H264" in sent[0]["sdp"]["sdp"]
        assert "VP8" not in sent[0]["sdp"]["sdp"]
        await browser.answer(sent[0]["sdp"])
        for data in browser.to_unit:
            await peer.handle_signal(data)
        async with asyncio.timeout(15):
            while browser.frames < 10:
                await asyncio.sleep(0.05)
        assert peer.connection_state == "connected"
    finally:
        await peer.close()
        await browser.pc.close()


@contextlib.asynccontextmanager
async def linked(media, kind: str = "device"):
    """Two Peers relaying signals to each other like the server does; yields (a, b) once
    a is connected and b receives video."""
    jobs = set()

    def deliver(peer, d):  # like a server relay: the receiver handles it later, not inside our send
        job = asyncio.ensure_future(peer.handle_signal(d))
        jobs.add(job)
        job.add_done_callback(jobs.discard)

    async def to_b(to, d):
        deliver(b, d)
        return True

    async def to_a(to, d):
        deliver(a, d)
        return True

    a = Peer(local_id="a", remote_id="b", kind=kind, policy=LOOPBACK, media=media, send_signal=to_b)
    b = Peer(local_id="b", remote_id="a", kind=kind, policy=LOOPBACK, media=media, send_signal=to_a)
    try:
        await a.offer()
        async with asyncio.timeout(15):
            while a.connection_state != "connected" or not (b.video and b.video.frames > 3):
                await asyncio.sleep(0.05)
        yield a, b
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize(
    "data",
    [
        {"sdp": "not an object"},
        {"sdp": {"type": "offer"}},
        {"sdp": {"type": "offer", "sdp": "garbage"}},
        {"sdp": {"type": "offer", "sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"}},
        {"sdp": {"type": "answer", "sdp": "v=0\r\n"}},
        {"sdp": {"type": "rollback", "sdp": ""}},
        {"candidate": "x"},
        {"candidate": {"candidate": "candidate:1 1 udp"}},
        {"candidate": {"candidate": 42}},
        {"something": "else"},
    ],
)
async def test_hostile_signals_leave_a_working_link_alone(media, data):
    async with linked(media) as (a, b):
        pc = b.pc
        await b.handle_signal(data)  # must neither raise nor tear the link down
        assert b.pc is pc and b.connection_state == "connected"
        n = b.video.frames
        await asyncio.sleep(0.5)
        assert b.video.frames > n


@pytest.mark.parametrize(("kind", "expect_remb"), [("device", False), ("user", True)])
async def test_units_spare_each_other_remb_while_browsers_get_it(media, kind, expect_remb):
    from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, RtcpRrPacket

    async with linked(media, kind) as (a, b):
        sender = next(t.sender for t in a.pc.getTransceivers() if t.kind == "video")
        seen = {"remb": 0, "rr": 0}
        handle = sender._handle_rtcp_packet

        async def spy(packet):
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
                seen["remb"] += 1
            elif isinstance(packet, RtcpRrPacket):
                seen["rr"] += 1
            await handle(packet)

        sender._handle_rtcp_packet = spy
        # aiortc's estimator reports about once a second: five receiver reports take longer
        async with asyncio.timeout(15):
            while seen["rr"] < 5 or (expect_remb and not seen["remb"]):
                await asyncio.sleep(0.1)
        assert bool(seen["remb"]) is expect_remb, seen
        assert b.video.frames > 30


def _report(received: int, lost: int, fraction_lost: int, rtt: float):
    from datetime import datetime, timezone

    from aiortc.stats import RTCInboundRtpStreamStats, RTCRemoteInboundRtpStreamStats, RTCStatsReport, RTCTransportStats

    t = datetime.now(timezone.utc)
    report = RTCStatsReport()
    for stat in (
        RTCTransportStats(t, "transport", "t", 0, 0, 0, 1000 * received, "controlling", "connected"),
        RTCInboundRtpStreamStats(t, "inbound-rtp", "in", 1, "video", "t", received, lost, 0),
        RTCRemoteInboundRtpStreamStats(t, "remote-inbound-rtp", "rin", 2, "video", "t", 0, 0, 0, rtt, fraction_lost),
    ):
        report.add(stat)
    return report


def test_link_losses_are_fractions_whatever_unit_aiortc_reports():
    from appliance.wall.model import Quality, quality_from
    from appliance.mesh.stats import StatsSampler

    s = StatsSampler()
    s.fold(_report(received=100, lost=0, fraction_lost=0, rtt=0.02), now=0.0)
    fig = s.fold(_report(received=190, lost=10, fraction_lost=128, rtt=0.02), now=1.0)
    assert fig.out_loss == pytest.approx(0.5)  # RTCP 128/256, not 128
    assert fig.loss == pytest.approx(0.1)  # 10 lost of 100 in the interval
    assert fig.bitrate == pytest.approx(90 * 1000 * 8)
    assert 0.0 <= fig.as_dict()["out_loss"] <= 1.0
    assert quality_from(fig.out_loss, fig.rtt) is Quality.BAD
    fig = s.fold(_report(received=290, lost=10, fraction_lost=2, rtt=0.02), now=2.0)
    assert fig.out_loss == pytest.approx(2 / 256) and fig.loss == 0.0
    assert quality_from(fig.out_loss, fig.rtt) not in (Quality.BAD, Quality.UNKNOWN)


async def test_the_unit_answers_a_browser_offer_with_h264_and_opus(media):
    """A browser lists VP8 before H.264 and its other audio codecs before Opus; the unit's answer
    must still pick H.264 and Opus (the shared audio sends Opus packets to everyone)."""
    from aiortc import RTCRtpSender

    from appliance.mesh.negotiation import negotiated_video_codec

    browser = RTCPeerConnection(LOOPBACK.rtc_configuration())
    peer, sent = browser_facing_peer(media)
    try:
        video = browser.addTransceiver("video")
        audio = browser.addTransceiver("audio")
        vcodecs = RTCRtpSender.getCapabilities("video").codecs
        acodecs = RTCRtpSender.getCapabilities("audio").codecs
        video.setCodecPreferences(sorted(vcodecs, key=lambda c: c.mimeType != "video/VP8"))
        audio.setCodecPreferences(sorted(acodecs, key=lambda c: c.mimeType == "audio/opus"))
        with ice.gathering(LOOPBACK):
            await browser.setLocalDescription(await browser.createOffer())
        offer = browser.localDescription.sdp
        assert negotiated_video_codec(offer) == "VP8"
        first_audio_pt = next(ln for ln in offer.split("\r\n") if ln.startswith("m=audio")).split()[3]
        assert "opus" not in next(ln for ln in offer.split("\r\n") if ln.startswith(f"a=rtpmap:{first_audio_pt} ")).lower()
        await peer.handle_signal({"sdp": {"type": "offer", "sdp": offer}})
        answers = [d["sdp"]["sdp"] for d in sent if "sdp" in d]
        assert answers, "the unit sent no answer"
        answer = answers[-1]
        assert negotiated_video_codec(answer) == "H264"
        sections = answer.split("\r\nm=")
        audio_section = next(sec for sec in sections if sec.startswith("audio"))
        rtpmaps = [ln for ln in audio_section.split("\r\n") if ln.startswith("a=rtpmap:")]
        assert rtpmaps and all("opus/48000" in ln.lower() for ln in rtpmaps), rtpmaps
    finally:
        await peer.close()
        await browser.close()


async def test_a_link_runs_on_aiortcs_own_paths_when_the_receiver_hooks_find_nothing(media, monkeypatch, caplog):
    """As if aiortc had renamed its receiver's internals: every hook says once that it is off,
    and units still connect, see each other and hear each other through aiortc's own threads."""
    from appliance import compat
    from appliance.mesh.aiortc_hooks import receiver as receiver_hooks

    monkeypatch.setattr(compat, "_off", set())
    for name in ("DECODER_QUEUE", "BITRATE_ESTIMATOR"):
        monkeypatch.setattr(receiver_hooks, name, f"_RTCRtpReceiver__renamed_{name.lower()}")
    with caplog.at_level("WARNING", logger="appliance.compat"):
        async with linked(media, "device") as (_, b):
            status = b.status()
            assert b.decode_backlog is None
            assert not status["decode_inline"] and not status["audio_inline"] and not status["remb_dropped"]
            frames = b.video.frames
            async with asyncio.timeout(10):
                while b.video.frames < frames + 10 or not (b.audio and b.audio.decoded_frames > 10):
                    await asyncio.sleep(0.05)
    said = sorted(r.getMessage().split(" is off")[0] for r in caplog.records if r.name == "appliance.compat")
    assert said == ["aiortc: REMB skipping", "aiortc: inline audio", "aiortc: inline video decoding"]  # once each, two peers
