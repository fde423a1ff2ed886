// Pure parts of the browser client's peer module, run by Node's test runner
// (tests/e2e/test_js_units.py starts it). Node has EventTarget, which is all
// peer.js needs at import time.

import { test } from "node:test";
import assert from "node:assert/strict";

const { preferH264, offeredDirections } = await import(process.env.WALLMESH_PEER_JS);

const codec = (mimeType, sdpFmtpLine = "") => ({ mimeType, clockRate: 90000, sdpFmtpLine });

test("constrained baseline H.264 with packetization-mode=1 comes first", () => {
  const caps = [
    codec("video/VP8"),
    codec("video/rtx", "apt=96"),
    codec("video/H264", "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f"),
    codec("video/H264", "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f"),
    codec("video/H264", "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f"),
    codec("video/H264", "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"),
    codec("video/AV1"),
  ];
  const out = preferH264(caps).map((c) => c.sdpFmtpLine.match(/packetization-mode=\d;profile-level-id=\w+/)?.[0] || c.mimeType);
  assert.deepEqual(out.slice(0, 4), [
    "packetization-mode=1;profile-level-id=42e01f",
    "packetization-mode=1;profile-level-id=42001f",
    "packetization-mode=1;profile-level-id=4d001f",
    "packetization-mode=0;profile-level-id=42e01f",
  ]);
  // Everything else is kept (so a peer without H.264 still gets video), in its original order.
  assert.deepEqual(out.slice(4), ["video/VP8", "video/rtx", "video/AV1"]);
  assert.equal(caps[0].mimeType, "video/VP8", "the input list is not reordered in place");
});

test("without H.264 the order is left alone", () => {
  const caps = [codec("video/VP8"), codec("video/VP9"), codec("video/rtx")];
  assert.deepEqual(preferH264(caps), caps);
});

test("offered directions are read per mid", () => {
  const sdp = [
    "v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:0", "a=sendrecv",
    "m=video 9 UDP/TLS/RTP/SAVPF 96", "a=mid:1", "a=recvonly",
    "m=video 9 UDP/TLS/RTP/SAVPF 96", "a=mid:v2",
    "",
  ].join("\r\n");
  const dirs = offeredDirections(sdp);
  assert.equal(dirs.get("0"), "sendrecv");
  assert.equal(dirs.get("1"), "recvonly");
  assert.equal(dirs.get("v2"), "sendrecv");   // no attribute means sendrecv
  assert.equal(offeredDirections("garbage").size, 0);
  assert.equal(offeredDirections(undefined).size, 0);
});
