"""aiortc's receiver and sender, with wallmesh's hooks in: the replaced queues and buffers on their own,
the hooks on real peer connections, and what happens when aiortc's internals are not what the hooks expect.
"""

from __future__ import annotations

import asyncio
import fractions
import logging

import pytest
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from appliance import compat
from appliance.mesh import aiortc_hooks
from appliance.mesh.aiortc_hooks import (
    DecodeBacklog,
    DecodeRoute,
    GapSkippingJitterBuffer,
    h264_keyframe,
)
from appliance.mesh.aiortc_hooks import receiver as receiver_hooks
from appliance.mesh.aiortc_hooks import sender as sender_hooks


@pytest.fixture
def fresh_reports(monkeypatch):
    """Hooks reported off by earlier tests are reported again here."""
    monkeypatch.setattr(compat, "_off", set())


def said_off(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "appliance.compat" and r.levelno == logging.WARNING]


def test_the_pinned_aiortc_has_every_hook():
    assert aiortc_hooks.check() == []


def test_decode_backlog_skips_to_a_fresh_keyframe_instead_of_growing():
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
    from appliance.capture.x264 import X264Encoder

    async def frames():
        src = PatternSource(width=width, height=height, fps=1000)
        await src.start()
        return [await src.read() for _ in range(n)]

    enc = X264Encoder(width, height, 30, 1_500_000, threads=1)
    return [bytes(p) for i, f in enumerate(asyncio.run(frames())) for p in enc.encode(f, i == 0)]


def test_small_pictures_decode_on_the_loop_and_big_ones_move_to_the_thread():
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


def test_jitter_buffer_skips_a_lost_packet_after_a_short_wait():
    clock = [100.0]
    jb = GapSkippingJitterBuffer(capacity=64, max_wait=0.25, clock=lambda: clock[0])

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




async def test_a_keyframe_request_reaches_the_callback_and_aiortcs_own_handling(new_pc):
    from aiortc import RTCRtpSender

    sender = new_pc().addTransceiver("video").sender
    calls, own = [], []
    monkeypatched = RTCRtpSender._send_keyframe

    def spy(self):
        own.append(1)
        monkeypatched(self)

    RTCRtpSender._send_keyframe = spy
    try:
        assert aiortc_hooks.on_keyframe_request(sender, lambda: calls.append("first"))
        assert aiortc_hooks.on_keyframe_request(sender, lambda: calls.append("second"))  # replaces, never stacks
        sender._send_keyframe()  # what aiortc's RTCP handler calls on PLI/FIR
        assert calls == ["second"] and own == [1]
        aiortc_hooks.remove_keyframe_request(sender)
        sender._send_keyframe()
        assert calls == ["second"] and own == [1, 1]
    finally:
        RTCRtpSender._send_keyframe = monkeypatched


async def test_without_aiortcs_keyframe_hook_requests_fall_back_and_it_is_said_once(new_pc, fresh_reports, monkeypatch, caplog):
    monkeypatch.setattr(sender_hooks, "KEYFRAME_HOOK", "_send_keyframe_renamed")  # as if aiortc renamed it
    pc = new_pc()
    senders = [pc.addTransceiver("video").sender, pc.addTransceiver("video").sender]
    with caplog.at_level("WARNING", logger="appliance.compat"):
        assert aiortc_hooks.check() == ["keyframe requests to the shared encoder"]
        assert not any(aiortc_hooks.on_keyframe_request(s, lambda: None) for s in senders)
    assert all("_send_keyframe" not in vars(s) for s in senders)  # aiortc's own handling untouched
    assert len(said_off(caplog)) == 1 and said_off(caplog)[0].startswith("aiortc: keyframe requests to the shared encoder is off")


def test_a_receiver_already_decoding_keeps_its_queue_and_says_why(caplog):
    from types import SimpleNamespace

    from aiortc import RTCRtpReceiver

    receiver = RTCRtpReceiver("video", SimpleNamespace(state="new"))  # a transport stand-in: only its state is read
    queue_before = getattr(receiver, receiver_hooks.DECODER_QUEUE)
    setattr(receiver, receiver_hooks.DECODER_THREAD, object())  # negotiation has started it
    with caplog.at_level("WARNING"):
        assert aiortc_hooks.install_inline_video(receiver) is None
    assert getattr(receiver, receiver_hooks.DECODER_QUEUE) is queue_before
    assert any("too late" in r.getMessage() for r in caplog.records)


def test_each_access_unit_is_split_into_rtp_payloads_once_for_every_sender():
    import av
    from aiortc.codecs import h264

    from appliance.mesh import aiortc_hooks
    from appliance.mesh.aiortc_hooks.sender import SharedPacking

    assert aiortc_hooks.share_h264_packing() and aiortc_hooks.share_h264_packing()  # idempotent
    shared = h264.H264Encoder.__dict__["pack"]
    assert isinstance(shared, SharedPacking) and not isinstance(shared.original, SharedPacking)
    au = b"\x00\x00\x00\x01\x67" + bytes(20) + b"\x00\x00\x00\x01\x68" + bytes(4) + b"\x00\x00\x00\x01\x65" + bytes(4000)
    packet = av.Packet(au)
    packet.pts, packet.time_base = 3000, fractions.Fraction(1, 90000)
    calls = []
    original = shared.original
    shared.original = lambda enc, p: calls.append(p) or original(enc, p)
    try:
        senders = [h264.H264Encoder() for _ in range(5)]
        results = [s.pack(packet) for s in senders]
        other = av.Packet(au[:-1])
        other.pts, other.time_base = 6000, fractions.Fraction(1, 90000)
        second = senders[0].pack(other)
    finally:
        shared.original = original
    assert len(calls) == 2  # once per access unit, not once per sender
    assert all(r == results[0] for r in results) and results[0][1] == 3000 and len(results[0][0]) >= 4
    assert results[0] == original(h264.H264Encoder(), packet)  # what aiortc itself makes of it
    assert second[1] == 6000 and second != results[0]
    results[1][0].clear()  # one sender's list is its own: the next sender still gets every payload
    assert len(senders[2].pack(packet)[0]) == len(results[0][0])
