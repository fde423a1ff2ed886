// wallmesh browser client: a room that goes through the site's conference server (SFU).
//
// When the server says room-mode "sfu", the page publishes its camera and microphone once,
// to the SFU, and receives everyone else's streams on one subscriber connection; both are
// negotiated with the reserved peer id "sfu" over the same signaling connection (the server
// relays them to Janus). A subscription offer says, per media line (mid), whose stream it
// carries. Descriptions are sent with every candidate in them (the server does not trickle).
//
// Each remote reached this way is an SfuRemote: the few things app.js asks of a mesh Peer
// (remoteStream, pc.connectionState, mediaAge, sampleMedia, close), so tiles do not care
// which path feeds them.

import { preferH264 } from "./peer.js";

export const SFU_PEER = "sfu";

function gathered(pc, timeoutMs = 5000) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") { pc.removeEventListener("icegatheringstatechange", done); resolve(); } };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, timeoutMs);   // send what there is rather than nothing
  });
}

/** One remote participant as received through the SFU. */
export class SfuRemote extends EventTarget {
  constructor(peerId, name) {
    super();
    this.peerId = peerId;
    this.name = name || peerId;
    this.polite = true;
    this.remoteStream = new MediaStream();
    this.pc = { connectionState: "new" };
    this.lastMediaAt = 0;
    this.sfu = true;
  }

  attach(track, pc) {
    for (const old of this.remoteStream.getTracks().filter((t) => t.kind === track.kind)) this.remoteStream.removeTrack(old);
    this.remoteStream.addTrack(track);
    this.pc = pc;
    this.lastMediaAt = performance.now();
    this.dispatchEvent(new CustomEvent("track", { detail: { track } }));
  }

  async sampleMedia() {
    if (this.remoteStream.getTracks().some((t) => t.readyState === "live" && !t.muted)) this.lastMediaAt = performance.now();
  }

  mediaAge() {
    return this.lastMediaAt ? (performance.now() - this.lastMediaAt) / 1000 : null;
  }

  /** The figures app.js shows for a mesh Peer, from the subscriber's streams of this participant. */
  async stats() {
    const out = { peer_id: this.peerId, name: this.name, via: "sfu", connectionState: this.pc.connectionState, video: null, audio: null };
    if (typeof this.pc.getStats !== "function") return out;
    const ids = new Set(this.remoteStream.getTracks().map((t) => t.id));
    const report = await this.pc.getStats();
    report.forEach((s) => {
      if (s.type !== "inbound-rtp" || (s.trackIdentifier && !ids.has(s.trackIdentifier))) return;
      if (s.kind === "video") {
        out.video = { framesDecoded: s.framesDecoded || 0, framesReceived: s.framesReceived || 0, framesPerSecond: s.framesPerSecond || 0,
                      frameWidth: s.frameWidth || 0, frameHeight: s.frameHeight || 0, bytesReceived: s.bytesReceived || 0 };
      } else if (s.kind === "audio") {
        out.audio = { packetsReceived: s.packetsReceived || 0, bytesReceived: s.bytesReceived || 0 };
      }
    });
    return out;
  }

  handleSignal() {}
  restart() {}
  rekey(selfId, peerId) { this.peerId = peerId; }
  setLocalTrack() {}
  close() { this.closed = true; }
}

/** The page's publisher and subscriber connections to the SFU. */
export class SfuLink extends EventTarget {
  constructor({ iceServers, signal, localTracks }) {
    super();
    this.iceServers = iceServers || [];
    this._signal = signal;
    this.localTracks = { audio: null, video: null, ...(localTracks || {}) };
    this.publisher = null;
    this.subscribers = [];   // oldest first
    this.closed = false;
  }

  _pc() {
    return new RTCPeerConnection({ iceServers: this.iceServers, bundlePolicy: "max-bundle" });
  }

  async publish() {
    if (this.closed) return;
    if (this.publisher) this.publisher.close();
    const pc = this.publisher = this._pc();
    const audio = pc.addTransceiver(this.localTracks.audio || "audio", { direction: this.localTracks.audio ? "sendonly" : "inactive" });
    const video = pc.addTransceiver(this.localTracks.video || "video", { direction: this.localTracks.video ? "sendonly" : "inactive" });
    void audio;
    if (typeof RTCRtpSender.getCapabilities === "function" && video.setCodecPreferences) {
      const caps = RTCRtpSender.getCapabilities("video");
      if (caps) try { video.setCodecPreferences(preferH264(caps.codecs)); } catch (_) { /* the browser's own order */ }
    }
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    this._signal({ sdp: { type: "offer", sdp: pc.localDescription.sdp }, stream: "publish" });
  }

  setLocalTrack(kind, track) {
    this.localTracks[kind] = track;
    if (!this.publisher) return;
    for (const t of this.publisher.getTransceivers()) {
      if (t.receiver.track && t.receiver.track.kind === kind) t.sender.replaceTrack(track).catch(() => {});
    }
  }

  async handleSignal(data) {
    const sdp = data && data.sdp;
    if (!sdp || typeof sdp.sdp !== "string" || this.closed) return;
    if (data.stream === "publish" && sdp.type === "answer" && this.publisher) {
      await this.publisher.setRemoteDescription(sdp).catch((err) => console.warn("wallmesh: SFU answer refused:", err.message));
    } else if (data.stream === "subscribe" && sdp.type === "offer") {
      await this._subscribe(data.session, data.streams || [], sdp.sdp);
    }
  }

  async _subscribe(session, streams, text) {
    const owners = new Map(streams.filter((s) => s && typeof s.mid === "string").map((s) => [s.mid, s.peer_id]));
    const pc = this._pc();
    pc.ontrack = ({ track, transceiver }) => {
      const peerId = owners.get(transceiver.mid);
      if (peerId) this.dispatchEvent(new CustomEvent("track", { detail: { peerId, track, pc, session } }));
    };
    pc.onconnectionstatechange = () => this.dispatchEvent(new CustomEvent("statechange", { detail: { state: pc.connectionState } }));
    await pc.setRemoteDescription({ type: "offer", sdp: text });
    await pc.setLocalDescription(await pc.createAnswer());
    await gathered(pc);
    this.subscribers.push(pc);
    this._signal({ sdp: { type: "answer", sdp: pc.localDescription.sdp }, stream: "subscribe", session });
    // the server detaches the old subscription a few seconds after the new one starts
    const older = this.subscribers.slice(0, -1);
    setTimeout(() => {
      for (const old of older) { try { old.close(); } catch (_) { /* gone */ } }
      this.subscribers = this.subscribers.filter((p) => !older.includes(p));
    }, 6000);
  }

  close() {
    this.closed = true;
    for (const pc of [this.publisher, ...this.subscribers]) {
      if (pc) try { pc.close(); } catch (_) { /* gone */ }
    }
    this.publisher = null;
    this.subscribers = [];
  }
}
