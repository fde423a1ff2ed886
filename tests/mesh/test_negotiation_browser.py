"""H.264 negotiation against real headless Chromium SDP (offers and answers), no media.

Chromium offers VP8 first and several H.264 profiles; the unit must land on constrained
baseline with packetization-mode 1, both when it answers Chromium and when Chromium answers it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess

import pytest

from appliance.capture.pattern import PatternSource
from appliance.mesh.negotiation import negotiated_video_codec, prefer_wallmesh_codecs
from appliance.mesh.fanout import SharedVideo

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is installed by scripts/setup")

PAGE = """<html><body><pre id="out">pending</pre><script>
(async () => {
  const remote = %s;
  const pc = new RTCPeerConnection({iceServers: []});
  let sdp;
  if (remote) {
    await pc.setRemoteDescription({type: 'offer', sdp: remote});
    sdp = (await pc.createAnswer()).sdp;
  } else {
    pc.addTransceiver('video', {direction: 'sendrecv'});
    sdp = (await pc.createOffer()).sdp;
  }
  document.getElementById('out').textContent = 'SDP\\n' + sdp;
})().catch(e => document.getElementById('out').textContent = 'ERR ' + e);
</script></body></html>"""


async def chromium_sdp(tmp_path, remote_offer: str | None) -> str:
    """Chromium's offer (or its answer to ``remote_offer``), from a headless ``--dump-dom`` run.

    ``--dump-dom`` prints the page when its virtual-time budget runs out; WebRTC's
    description work happens off the page's thread, so on a loaded machine the page may
    still say "pending" then. Each retry doubles the budget; the SDP itself is never faked.
    """
    page = tmp_path / "sdp.html"
    page.write_text(PAGE % json.dumps(remote_offer))
    body = "pending"
    for attempt in range(4):
        proc = await asyncio.create_subprocess_exec(
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
            f"--user-data-dir={tmp_path / f'profile-{attempt}'}",
            f"--virtual-time-budget={5000 * 2 ** attempt}", "--dump-dom", page.as_uri(),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
        text = out.decode()
        start = text.index('<pre id="out">') + len('<pre id="out">')
        body = text[start : text.index("</pre>", start)]
        if body != "pending":
            break
    assert body.startswith("SDP"), body[:200]
    return body[4:].replace("\n", "\r\n")


def _fmtp(sdp: str, codec: str) -> str:
    lines = sdp.split("\r\n")
    pt = next(line.split()[0].split(":")[1] for line in lines if line.startswith("a=rtpmap:") and codec in line)
    return next((line for line in lines if line.startswith(f"a=fmtp:{pt} ")), "")


async def test_unit_answers_a_chromium_offer_with_constrained_baseline(tmp_path, new_pc):
    from aiortc import RTCSessionDescription

    offer = await chromium_sdp(tmp_path, None)
    assert negotiated_video_codec(offer) == "VP8"  # Chromium's own first choice
    video = SharedVideo(PatternSource(width=320, height=240), width=320, height=240)
    unit = new_pc()
    unit.addTrack(video.track())
    prefer_wallmesh_codecs(unit)
    await unit.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
    await unit.setLocalDescription(await unit.createAnswer())
    answer = unit.localDescription.sdp
    assert negotiated_video_codec(answer) == "H264"
    fmtp = _fmtp(answer, "H264")
    assert "profile-level-id=42e01f" in fmtp and "packetization-mode=1" in fmtp
    await video.close()


async def test_chromium_accepts_the_units_h264_only_offer(tmp_path, new_pc):
    unit = new_pc()
    video = SharedVideo(PatternSource(width=320, height=240), width=320, height=240)
    unit.addTrack(video.track())
    prefer_wallmesh_codecs(unit)
    await unit.setLocalDescription(await unit.createOffer())
    answer = await chromium_sdp(tmp_path, unit.localDescription.sdp)
    assert negotiated_video_codec(answer) == "H264"
    assert "42e01f" in _fmtp(answer, "H264")
    assert "VP8" not in answer
    await video.close()
