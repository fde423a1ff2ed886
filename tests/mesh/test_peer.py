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

from appliance.mesh import ice
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
    ice.install()
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


def test_decode_backlog_skips_to_a_fresh_keyframe_instead_of_growing():
    from aiortc.jitterbuffer import JitterFrame
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    from appliance.mesh.receive import DecodeBacklog, h264_keyframe

    h264 = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=102)
    idr = b"\x00\x00\x00\x01\x67\x42" + b"\x00\x00\x00\x01\x68\xce" + b"\x00\x00\x00\x01\x65\x88"
    inter = b"\x00\x00\x00\x01\x41\x9a"
    assert h264_keyframe(idr) and not h264_keyframe(inter)
    asks = []
    q = DecodeBacklog(lambda: asks.append(1), max_backlog=3)
    for t in range(3):
        q.put((h264, JitterFrame(inter, t)))
    assert q.qsize() == 3 and not asks
    q.put((h264, JitterFrame(inter, 3)))  # the decoder has fallen behind
    assert q.qsize() == 0 and asks == [1] and q.dropped == 4
    q.put((h264, JitterFrame(inter, 4)))  # useless without its reference pictures
    assert q.qsize() == 0 and q.dropped == 5 and asks == [1]  # one request per second at most
    q.put((h264, JitterFrame(idr, 5)))
    q.put((h264, JitterFrame(inter, 6)))
    assert [q.get()[1].timestamp for _ in range(2)] == [5, 6]
    q.put(None)  # the end marker always gets through
    assert q.get() is None


def _h264_pictures(n: int, width: int = 320, height: int = 240) -> list[bytes]:
    """``n`` real H.264 access units from the unit's encoder: a keyframe, then inter pictures."""
    from appliance.capture.pattern import PatternSource
    from appliance.mesh.fanout import X264Encoder

    async def frames():
        src = PatternSource(width=width, height=height, fps=1000)
        await src.start()
        return [await src.read() for _ in range(n)]

    enc = X264Encoder(width, height, 30, 1_500_000, threads=1)
    return [bytes(p) for i, f in enumerate(asyncio.run(frames())) for p in enc.encode(f, i == 0)]


def test_small_pictures_decode_on_the_loop_and_big_ones_move_to_the_thread():
    from aiortc.jitterbuffer import JitterFrame
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    from appliance.mesh.receive import DecodeRoute, h264_keyframe

    h264 = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=102)
    pictures = _h264_pictures(12)
    assert h264_keyframe(pictures[0]) and not h264_keyframe(pictures[1])
    asks, got = [], []
    route = DecodeRoute(lambda: asks.append(1), budget_ms=1000.0)
    route.put((h264, JitterFrame(pictures[0], 0)))  # nobody connected yet: decoded, dropped
    route.connect(got.append)
    for t, data in enumerate(pictures[1:6], 1):
        route.put((h264, JitterFrame(data, t * 3000)))
    assert route.inline and route.decoded == 6 and len(got) == 5 and route.qsize() == 0
    assert got[-1].width == 320 and route.budget.ms is not None and not asks
    route.put((h264, JitterFrame(b"\x00\x00\x00\x01\x41" + b"\xff" * 40, 99)))  # garbage: ask for a keyframe
    assert route.errors == 1 and asks == [1]

    def broken(frame):
        raise RuntimeError("display bug")

    route.connect(broken)  # this runs inside aiortc's RTP handler: nothing may escape into it
    route.put((h264, JitterFrame(pictures[0], 30_000)))
    assert route.errors == 2 and route.inline

    slow = DecodeRoute(lambda: asks.append(2), budget_ms=0.0)  # every picture is "too slow" for the loop
    slow.connect(got.append)
    for t, data in enumerate(pictures[:9]):
        slow.put((h264, JitterFrame(data, t * 3000)))
    assert slow.inline and slow.decoded == 9  # no verdict on the first pictures (a keyframe is costly)
    slow.put((h264, JitterFrame(pictures[9], 9 * 3000)))
    assert not slow.inline and asks[-1] == 2  # moved to the thread, which starts at a fresh keyframe
    slow.put((h264, JitterFrame(pictures[10], 10 * 3000)))  # an inter picture is useless there
    assert slow.qsize() == 0
    slow.put((h264, JitterFrame(pictures[0], 99_000)))
    assert slow.qsize() == 1 and slow.get()[1].timestamp == 99_000
    slow.put(None)  # the end marker reaches the thread
    assert slow.get() is None


def test_a_browsers_hd_picture_goes_to_the_decoder_thread_from_the_first_one():
    from aiortc.jitterbuffer import JitterFrame
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    from appliance.mesh.receive import DecodeRoute

    h264 = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=102)
    pictures = _h264_pictures(3, 1280, 720)
    got = []
    route = DecodeRoute(lambda: None)
    route.connect(got.append)
    route.put((h264, JitterFrame(pictures[0], 0)))
    assert len(got) == 1 and got[0].width == 1280  # that one is shown...
    assert not route.inline  # ...and the loop never decodes another of this size
    route.put((h264, JitterFrame(pictures[1], 3000)))
    assert len(got) == 1 and route.qsize() == 0  # the thread waits for a keyframe
    route.connect(None)


def test_jitter_buffer_skips_a_lost_packet_after_a_short_wait(monkeypatch):
    from aiortc.rtp import RtpPacket

    from appliance.mesh import receive

    clock = [100.0]
    monkeypatch.setattr(receive.time, "monotonic", lambda: clock[0])
    jb = receive.gap_skipping_jitter_buffer(capacity=64, max_wait=0.25)

    def pkt(seq: int, ts: int) -> RtpPacket:
        p = RtpPacket(sequence_number=seq, timestamp=ts)
        p._data = bytes([seq])
        return p

    assert jb.add(pkt(0, 0)) == (False, None)
    pli, frame = jb.add(pkt(1, 3000))  # picture 0 is complete once picture 1 starts
    assert frame.timestamp == 0
    # packet 2 is lost: picture 1 (or 2) is incomplete and everything behind it waits
    outs = [jb.add(pkt(3, 6000)), jb.add(pkt(4, 9000)), jb.add(pkt(5, 12000))]
    assert all(f is None for _, f in outs)
    clock[0] += 0.3  # longer than max_wait: give up on the gap
    pli, frame = jb.add(pkt(6, 15000))
    assert pli and frame is not None and frame.timestamp == 9000  # first picture clear of the gap
    assert jb.gaps_skipped == 1
    pli, frame = jb.add(pkt(7, 18000))
    assert frame.timestamp == 12000 and not pli
    # a big picture still arriving (no gap) is never cut short
    for seq in range(8, 40):
        assert jb.add(pkt(seq, 18000))[1] is None or seq == 8
    clock[0] += 1.0
    pli, frame = jb.add(pkt(40, 21000))
    assert frame.timestamp == 18000 and not pli


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
    from appliance.display.model import Quality, quality_from
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
