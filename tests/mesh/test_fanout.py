"""SharedVideo: one encoder, packets fanned out to real aiortc peer connections over loopback."""

from __future__ import annotations

import asyncio
import time

import av
import pytest
from aiortc.mediastreams import MediaStreamError

from appliance.capture.pattern import PatternSource, read_stamp
from appliance.mesh.negotiation import negotiated_video_codec, prefer_wallmesh_codecs
from appliance.mesh.fanout import SharedVideo
from appliance.mesh.quality import TIERS


async def _send_to(new_pc, connect_pair, video: SharedVideo):
    """One sender PC carrying a fan-out track and one receiving PC; returns (sender, receiver, track future)."""
    tx, rx = new_pc(), new_pc()
    sender = tx.addTrack(video.track())
    video.attach(sender)
    prefer_wallmesh_codecs(tx)
    got: asyncio.Future = asyncio.get_running_loop().create_future()

    @rx.on("track")
    def on_track(track):
        if track.kind == "video" and not got.done():
            got.set_result(track)

    await connect_pair(tx, rx, before_answer=prefer_wallmesh_codecs)
    assert negotiated_video_codec(tx.localDescription.sdp) == "H264"
    assert negotiated_video_codec(rx.localDescription.sdp) == "H264"
    return tx, rx, await asyncio.wait_for(got, 5)


async def _frames(track, n: int, timeout: float = 10) -> list[av.VideoFrame]:
    out = []
    async def run():
        while len(out) < n:
            out.append(await track.recv())
    await asyncio.wait_for(run(), timeout)
    return out


async def test_one_encoder_feeds_every_peer(new_pc, connect_pair):
    video = SharedVideo(PatternSource(width=320, height=240, fps=30, sender=4242), width=320, height=240, fps=30, bitrate=250_000)
    await video.start()
    try:
        remotes = []
        for _ in range(3):
            remotes.append((await _send_to(new_pc, connect_pair, video))[2])
        results = await asyncio.gather(*(_frames(t, 20) for t in remotes))
        for frames in results:
            stamps = [read_stamp(f) for f in frames]
            good = [s for s in stamps if s is not None]
            assert len(good) >= 18, stamps
            assert {s.sender for s in good} == {4242}
            counters = [s.counter for s in good]
            assert counters == sorted(counters)
            assert all(0 <= time.time() - s.capture_time < 5 for s in good)
        # one encoder for three peers: frames encoded track frames captured, not three times them
        from appliance.capture.x264 import SoftwareH264

        assert isinstance(video.source, SoftwareH264)
        assert video.stats.frames_encoded <= video.source.stats.frames_in
        assert video.peers == 3
    finally:
        await video.close()


async def test_pli_from_a_real_receiver_produces_one_keyframe(new_pc, connect_pair):
    video = SharedVideo(PatternSource(width=320, height=240, fps=30), width=320, height=240, fps=30,
                        bitrate=250_000, keyframe_interval=60)
    await video.start()
    try:
        tx, rx, remote = await _send_to(new_pc, connect_pair, video)
        await _frames(remote, 10)
        await asyncio.sleep(0.3)
        before, asked = video.stats.keyframes, video.stats.keyframes_requested
        receiver = next(t.receiver for t in rx.getTransceivers() if t.kind == "video")
        ssrc = receiver.getSynchronizationSources()[0].source
        # a burst of PLIs, as a browser sends while it waits: coalesced into one IDR
        for _ in range(5):
            await receiver._send_rtcp_pli(ssrc)
        deadline = time.monotonic() + 3
        while video.stats.keyframes == before and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        assert video.stats.keyframes_requested - asked >= 5  # every PLI reached the encoder
        # ...and they made one IDR (two at most, should the loaded machine stall a reader and
        # the receiver ask again; never one per PLI)
        assert 1 <= video.stats.keyframes - before <= 2
    finally:
        await video.close()


async def test_new_track_starts_with_a_keyframe_and_requests_are_coalesced():
    video = SharedVideo(PatternSource(width=320, height=240, fps=30), width=320, height=240, fps=30,
                        bitrate=250_000, keyframe_interval=60)
    await video.start()
    try:
        first = video.track()
        packet = await asyncio.wait_for(first.recv(), 5)
        assert packet.is_keyframe
        assert bytes(packet)[:64].find(b"\x00\x00\x00\x01\x67") >= 0 or b"\x00\x00\x01\x67" in bytes(packet)[:64]  # SPS first
        for _ in range(20):
            await first.recv()

        async def drain():
            while True:
                await first.recv()

        draining = asyncio.create_task(drain())
        keys = video.stats.keyframes
        late = video.track()  # joins mid-GOP
        for _ in range(10):
            video.request_keyframe()
        packet = await asyncio.wait_for(late.recv(), 2)
        assert packet.is_keyframe
        await asyncio.sleep(0.5)
        assert 1 <= video.stats.keyframes - keys <= 2  # 11 requests, one IDR (a stalled reader may add one)
        draining.cancel()
    finally:
        await video.close()


async def test_a_slow_peer_never_queues_stale_packets():
    video = SharedVideo(PatternSource(width=320, height=240, fps=30), width=320, height=240, fps=30,
                        bitrate=250_000, keyframe_interval=60, max_queue=3)
    await video.start()
    try:
        fast, slow = video.track(), video.track()
        async def drain():
            while True:
                await fast.recv()
        task = asyncio.create_task(drain())
        await asyncio.sleep(1.0)  # slow reads nothing for 30 frame times
        deadline = time.monotonic() + 10  # a loaded machine may encode fewer than 4 frames in that second
        while slow.drops == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert len(slow._queue) <= 3
        assert slow.drops > 0
        assert video.stats.keyframes <= 2  # a stuck peer does not make the encoder spray IDRs (several a second otherwise)
        # when it resumes, what it gets starts at a fresh keyframe
        packet = await asyncio.wait_for(slow.recv(), 2)
        while not packet.is_keyframe:
            packet = await asyncio.wait_for(slow.recv(), 2)
        task.cancel()
    finally:
        await video.close()


async def test_reconfigure_switches_size_at_a_keyframe():
    video = SharedVideo(PatternSource(width=320, height=240, fps=30), width=320, height=240, fps=30, bitrate=250_000)
    await video.start()
    try:
        track = video.track()
        decoder = av.CodecContext.create("h264", "r")
        sizes = []
        for _ in range(5):
            for frame in decoder.decode(await track.recv()):
                sizes.append((frame.width, frame.height))
        video.reconfigure(TIERS[1])
        switched = None
        for _ in range(30):
            packet = await asyncio.wait_for(track.recv(), 2)
            frames = decoder.decode(packet)
            if frames and (frames[0].width, frames[0].height) == (640, 480):
                switched = packet
                assert read_stamp(frames[0]) is not None
                break
        assert sizes and set(sizes) == {(320, 240)}
        assert switched is not None and switched.is_keyframe
        assert video.stats.reconfigures == 1
    finally:
        await video.close()


async def test_a_tier_change_taken_back_before_it_applies_is_dropped():
    video = SharedVideo(PatternSource(width=320, height=240), width=320, height=240, bitrate=250_000)
    video.reconfigure(TIERS[2])
    video.reconfigure(TIERS[0])  # back to what it already is, before any frame
    await video.start()
    try:
        track = video.track()
        for _ in range(5):
            await asyncio.wait_for(track.recv(), 5)
        assert (video.width, video.height) == (320, 240) and video.stats.reconfigures == 0
    finally:
        await video.close()


async def test_close_is_idempotent_and_ends_tracks():
    video = SharedVideo(PatternSource(width=320, height=240, fps=30), width=320, height=240)
    await video.start()
    track = video.track()
    await asyncio.wait_for(track.recv(), 5)
    await video.close()
    await video.close()
    with pytest.raises(MediaStreamError):
        while True:
            await asyncio.wait_for(track.recv(), 2)
    with pytest.raises(RuntimeError):
        video.track()


async def test_an_absent_camera_fails_start_and_close_stays_safe():
    from appliance.capture.v4l2 import AvVideoSource
    from appliance.errors import DeviceError

    video = SharedVideo(AvVideoSource("v4l2", "/dev/video77"), width=320, height=240)
    with pytest.raises(DeviceError, match="video.device"):
        await video.start()
    await video.close()
    await video.close()


async def test_two_hundred_peers_coming_and_going_leave_nothing_behind():
    video = SharedVideo(PatternSource(width=320, height=240), width=320, height=240, bitrate=250_000,
                        min_keyframe_spacing=0)  # every newcomer's keyframe at the next frame: a quicker test
    await video.start()
    try:
        baseline = len(asyncio.all_tasks())
        for _ in range(200):
            track = video.track()
            await asyncio.wait_for(track.recv(), 5)
            track.stop()  # what aiortc does when the peer's sender stops
        assert video.peers == 0
        assert len(asyncio.all_tasks()) <= baseline
        frames = video.stats.frames_encoded
        await asyncio.sleep(0.3)
        assert video.stats.frames_encoded == frames  # nobody left to send to: nothing is encoded
    finally:
        await video.close()
