"""H.264 constrained baseline is negotiated explicitly, whichever side offers."""

from __future__ import annotations

import asyncio

from appliance.capture.pattern import PatternSource, read_stamp
from appliance.mesh.negotiation import h264_preferences, negotiated_video_codec, opus_preferences, prefer_wallmesh_codecs
from appliance.mesh.fanout import SharedVideo


def _video_section(sdp: str) -> str:
    return sdp[sdp.index("m=video"):]


async def test_offer_lists_only_h264_constrained_baseline(new_pc):
    plain = new_pc()
    plain.addTransceiver("video", direction="sendrecv")
    await plain.setLocalDescription(await plain.createOffer())
    assert negotiated_video_codec(plain.localDescription.sdp) == "VP8"  # aiortc's own default

    unit = new_pc()
    unit.addTransceiver("video", direction="sendrecv")
    prefer_wallmesh_codecs(unit)
    await unit.setLocalDescription(await unit.createOffer())
    video = _video_section(unit.localDescription.sdp)
    assert negotiated_video_codec(unit.localDescription.sdp) == "H264"
    assert "VP8" not in video
    assert "profile-level-id=42e01f" in video and "packetization-mode=1" in video
    assert "42001f" not in video


async def test_unit_answering_a_vp8_first_offer_picks_h264_and_video_flows(new_pc, connect_pair):
    """The remote (a browser, say) offers VP8 first; the unit answers H.264 and sends shared packets."""
    video = SharedVideo(PatternSource(width=320, height=240, sender=77), width=320, height=240, bitrate=250_000)
    await video.start()
    try:
        remote, unit = new_pc(), new_pc()
        remote.addTransceiver("video", direction="recvonly")
        got = asyncio.get_running_loop().create_future()
        remote.on("track", lambda track: got.done() or got.set_result(track))
        # the answering unit adds its track and preferences before applying the offer
        video.attach(unit.addTrack(video.track()))
        prefer_wallmesh_codecs(unit)
        await connect_pair(remote, unit)
        assert negotiated_video_codec(remote.localDescription.sdp) == "VP8"
        assert negotiated_video_codec(unit.localDescription.sdp) == "H264"
        track = await asyncio.wait_for(got, 5)
        frame = await asyncio.wait_for(track.recv(), 10)
        for _ in range(5):
            frame = await asyncio.wait_for(track.recv(), 5)
        assert read_stamp(frame).sender == 77
    finally:
        await video.close()


async def test_preferences_set_after_the_offer_come_too_late(new_pc):
    """Documents aiortc 1.16's behaviour that dictates the order above."""
    remote, unit = new_pc(), new_pc()
    remote.addTransceiver("video", direction="sendrecv")
    await remote.setLocalDescription(await remote.createOffer())
    await unit.setRemoteDescription(remote.localDescription)
    prefer_wallmesh_codecs(unit)
    await unit.setLocalDescription(await unit.createAnswer())
    assert negotiated_video_codec(unit.localDescription.sdp) == "VP8"


def test_preferences_are_h264_then_rtx_and_opus_for_audio():
    prefs = h264_preferences()
    assert [c.mimeType for c in prefs] == ["video/H264", "video/rtx"]
    assert [c.mimeType for c in opus_preferences()] == ["audio/opus"]


async def test_audio_is_limited_to_opus(new_pc):
    unit = new_pc()
    unit.addTransceiver("audio", direction="sendrecv")
    prefer_wallmesh_codecs(unit)
    await unit.setLocalDescription(await unit.createOffer())
    audio = unit.localDescription.sdp[unit.localDescription.sdp.index("m=audio"):]
    assert "opus/48000/2" in audio and "PCMU" not in audio and "G722" not in audio


def test_negotiated_codec_parser_handles_missing_sections():
    assert negotiated_video_codec("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n") is None
    assert negotiated_video_codec("m=video 9 UDP/TLS/RTP/SAVPF\r\n") is None
