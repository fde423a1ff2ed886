"""What the signaling benchmark sends: realistic offers, answers and ICE candidates.

A wall unit joining a room of four exchanges, with every other member, one SDP offer or
answer of about 3 KB and a handful of trickled candidates. The benchmark replays exactly
that shape against both servers, so the bytes on the wire look like a real mesh join:
the SDP text below is what aiortc produces for one Opus and one VP8/H.264 transceiver,
and each candidate is a host candidate line as a browser would trickle it.

Every frame carries two extra fields the servers relay untouched: ``t``, the sender's
``time.monotonic_ns()`` when it built the frame (CLOCK_MONOTONIC is one clock for every
process on a Linux host, so the receiving process can subtract it), and ``k``, a key unique
across the run, so the receiver can tell a lost frame from a duplicated one.
"""

from __future__ import annotations

import hashlib

ROOM_SIZE = 4  # members per room in both loads
CANDIDATES = 10  # trickled ICE candidates each way, per pair
SDP_BYTES = 3000  # target size of one offer or answer

# Frames one pair of room members exchange: offer + answer + CANDIDATES each way.
FRAMES_PER_PAIR = 2 + 2 * CANDIDATES


def frames_per_room(room_size: int = ROOM_SIZE) -> int:
    """Relayed frames of one full-mesh join of a room."""
    pairs = room_size * (room_size - 1) // 2
    return pairs * FRAMES_PER_PAIR


def frames_per_member(room_size: int = ROOM_SIZE) -> int:
    """Relayed frames each member receives in one full-mesh join: one SDP and the
    candidates from every other member."""
    return (room_size - 1) * (1 + CANDIDATES)


def sdp(kind: str, seed: int) -> str:
    """An SDP ``offer`` or ``answer`` of about :data:`SDP_BYTES` bytes.

    The session-level values (ufrag, password, fingerprint, ssrcs) derive from ``seed``
    so that different members do not send byte-identical text.
    """
    digest = hashlib.sha256(f"{kind}:{seed}".encode()).hexdigest()
    ufrag, pwd = digest[:8], digest[8:32]
    fingerprint = ":".join(digest[i : i + 2].upper() for i in range(0, 64, 2))
    ssrc_a, ssrc_v, ssrc_r = (int(digest[i : i + 8], 16) for i in (32, 40, 48))
    setup = "actpass" if kind == "offer" else "active"
    cname = f"{{{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}}}"
    lines = [
        "v=0",
        f"o=- {int(digest[:12], 16)} {int(digest[12:24], 16)} IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "a=msid-semantic:WMS *",
        "m=audio 9 UDP/TLS/RTP/SAVPF 96 0 8",
        "c=IN IP4 0.0.0.0",
        "a=sendrecv",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=extmap:2 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=mid:0",
        f"a=msid:{cname} {{{digest[32:40]}-audio}}",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=rtcp-mux",
        f"a=ssrc:{ssrc_a} cname:{cname}",
        "a=rtpmap:96 opus/48000/2",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        f"a=ice-ufrag:{ufrag}",
        f"a=ice-pwd:{pwd}",
        "a=ice-options:trickle",
        f"a=fingerprint:sha-256 {fingerprint}",
        f"a=setup:{setup}",
        "m=video 9 UDP/TLS/RTP/SAVPF 97 98 99 100 101 102",
        "c=IN IP4 0.0.0.0",
        "a=sendrecv",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=extmap:3 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        "a=mid:1",
        f"a=msid:{cname} {{{digest[40:48]}-video}}",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=rtcp-mux",
        f"a=ssrc-group:FID {ssrc_v} {ssrc_r}",
        f"a=ssrc:{ssrc_v} cname:{cname}",
        f"a=ssrc:{ssrc_r} cname:{cname}",
        "a=rtpmap:97 VP8/90000",
        "a=rtcp-fb:97 nack",
        "a=rtcp-fb:97 nack pli",
        "a=rtcp-fb:97 goog-remb",
        "a=rtpmap:98 rtx/90000",
        "a=fmtp:98 apt=97",
        "a=rtpmap:99 H264/90000",
        "a=rtcp-fb:99 nack",
        "a=rtcp-fb:99 nack pli",
        "a=rtcp-fb:99 goog-remb",
        "a=fmtp:99 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
        "a=rtpmap:100 rtx/90000",
        "a=fmtp:100 apt=99",
        "a=rtpmap:101 H264/90000",
        "a=rtcp-fb:101 nack",
        "a=rtcp-fb:101 nack pli",
        "a=rtcp-fb:101 goog-remb",
        "a=fmtp:101 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
        "a=rtpmap:102 rtx/90000",
        "a=fmtp:102 apt=101",
        f"a=ice-ufrag:{ufrag}",
        f"a=ice-pwd:{pwd}",
        "a=ice-options:trickle",
        f"a=fingerprint:sha-256 {fingerprint}",
        f"a=setup:{setup}",
    ]
    text = "\r\n".join(lines) + "\r\n"
    # Pad with candidate lines the way a multi-homed host's SDP grows, up to the target size.
    n = 0
    while len(text) < SDP_BYTES:
        text += f"a=candidate:{n} 1 udp {2130706431 - n} 192.168.{n % 250}.{(seed + n) % 250 + 1} {40000 + n} typ host\r\n"
        n += 1
    return text


def candidate(index: int, seed: int) -> dict[str, object]:
    """One trickled host candidate, as ``RTCIceCandidate.toJSON()`` gives it."""
    port = 40000 + (seed * 16 + index) % 20000
    return {
        "candidate": f"candidate:{index} 1 udp {2122260223 - index} 10.{seed % 250}.{index}.{seed % 200 + 1} {port} typ host"
        f" generation 0 ufrag {seed:08x} network-id {index + 1}",
        "sdpMid": str(index % 2),
        "sdpMLineIndex": index % 2,
        "usernameFragment": f"{seed:08x}",
    }
