"""Negotiate H.264 constrained baseline (and Opus) explicitly with every peer, unit or browser.

The shared encoder's packets are H.264 (constrained baseline, packetization-mode 1), and
aiortc's sender only packetizes pre-encoded packets with the codec that was negotiated; were
VP8 picked (aiortc's first default, and often a browser's), the packets would be unusable.
So every video transceiver is limited to that one H.264 profile (plus RTX for
retransmissions), and every audio transceiver to Opus (the shared microphone sends Opus
packets to everyone), with :meth:`RTCRtpTransceiver.setCodecPreferences` — before
``createOffer()`` on the offering side.

On the answering side aiortc 1.16 settles the codec list inside ``setRemoteDescription()``,
using the preferences of the transceiver the offer's m-line lands on. So the answering unit
adds its tracks first (``addTrack`` creates transceivers that the offer's m-lines then
reuse), calls :func:`prefer_wallmesh_codecs`, and only then applies the remote offer; preferences
set after ``setRemoteDescription()`` come too late (tests/mesh/test_negotiation.py shows both).
Chrome, Firefox and Safari all offer 42e01f.
"""

from __future__ import annotations

from typing import Any

from aiortc import RTCRtpSender
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

#: H.264 constrained baseline, level 3.1 (the SDP profile-level-id every browser offers).
H264_PROFILE_LEVEL_ID = "42e01f"


def h264_preferences() -> list[RTCRtpCodecCapability]:
    """aiortc's capability entries for H.264 constrained baseline, then RTX."""
    codecs = RTCRtpSender.getCapabilities("video").codecs
    h264 = [
        c
        for c in codecs
        if c.mimeType.lower() == "video/h264"
        and str(c.parameters.get("profile-level-id", "")).lower() == H264_PROFILE_LEVEL_ID
        and str(c.parameters.get("packetization-mode", "0")) == "1"
    ]
    if not h264:
        raise RuntimeError("this aiortc build offers no H.264 constrained baseline codec")
    rtx = [c for c in codecs if c.mimeType.lower() == "video/rtx"]
    return h264 + rtx


def opus_preferences() -> list[RTCRtpCodecCapability]:
    """aiortc's capability entry for Opus (48 kHz, 2 channels in SDP; the stream may be mono)."""
    opus = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType.lower() == "audio/opus"]
    if not opus:
        raise RuntimeError("this aiortc build offers no Opus codec")
    return opus


def prefer_h264(transceiver: Any) -> None:
    """Limit one video transceiver to H.264 constrained baseline (no-op for audio)."""
    if transceiver.kind == "video":
        transceiver.setCodecPreferences(h264_preferences())


def prefer_opus(transceiver: Any) -> None:
    """Limit one audio transceiver to Opus, which shared-audio packets need (no-op for video)."""
    if transceiver.kind == "audio":
        transceiver.setCodecPreferences(opus_preferences())


def prefer_wallmesh_codecs(pc: Any) -> None:
    """Limit every transceiver of a peer connection to wallmesh's codecs: H.264 constrained
    baseline on video (:func:`prefer_h264`), Opus on audio (:func:`prefer_opus`)."""
    for transceiver in pc.getTransceivers():
        prefer_h264(transceiver)
        prefer_opus(transceiver)


def negotiated_video_codec(sdp: str) -> str | None:
    """The first codec of the first video section of an SDP, e.g. ``H264`` (None if absent)."""
    lines = sdp.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("m=video "):
            parts = line.split()
            if len(parts) < 4:
                return None
            first = parts[3]
            for attr in lines[index + 1 :]:
                if attr.startswith("m="):
                    break
                if attr.startswith(f"a=rtpmap:{first} "):
                    return attr.split(" ", 1)[1].split("/", 1)[0]
            return None
    return None
