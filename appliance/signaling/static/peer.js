// wallmesh browser client: one RTCPeerConnection to one remote participant.
//
// Roles follow wire protocol v1: the participant that joined later makes the
// first offer; the one already in the room waits for it and answers with its
// own tracks attached to the offered transceivers (so both sides never offer
// at once on a fresh connection). Later renegotiation uses the "perfect
// negotiation" pattern, the polite side being the one whose peer_id sorts lower.
//
// Video prefers H.264 constrained baseline with packetization-mode=1: the wall
// units encode once with a shared H.264 encoder and send the same packets to
// every peer, so the browser must accept exactly that.

let linkSeq = 0;   // numbers every RTCPeerConnection this page builds (stats show which one is live)

const H264_PROFILE_ORDER = ["42e0", "4200", "4d00", "6400"]; // constrained baseline first

/** Orders codec capabilities so H.264 constrained baseline (packetization-mode=1) comes first. */
export function preferH264(codecs) {
  const rank = (c) => {
    if (c.mimeType.toLowerCase() !== "video/h264") return 100;
    const fmtp = (c.sdpFmtpLine || "").toLowerCase();
    const mode1 = /packetization-mode=1/.test(fmtp);
    const m = /profile-level-id=([0-9a-f]{4})/.exec(fmtp);
    const profile = m ? H264_PROFILE_ORDER.indexOf(m[1]) : -1;
    return (mode1 ? 0 : 10) + (profile < 0 ? 5 : profile);
  };
  return [...codecs].sort((a, b) => rank(a) - rank(b));
}

function applyVideoPreference(transceiver) {
  if (typeof RTCRtpReceiver.getCapabilities !== "function" || !transceiver.setCodecPreferences) return;
  const caps = RTCRtpReceiver.getCapabilities("video");
  if (!caps) return;
  try {
    transceiver.setCodecPreferences(preferH264(caps.codecs));
  } catch (err) {
    console.warn("wallmesh: codec preference refused:", err.message);
  }
}

/** mid → direction of every m-section in an SDP, as the remote side wrote it. */
export function offeredDirections(sdp) {
  const out = new Map();
  for (const section of String(sdp || "").split(/\r?\nm=/).slice(1)) {
    const mid = /\na=mid:(\S+)/.exec("\n" + section);
    const dir = /\na=(sendrecv|sendonly|recvonly|inactive)\b/.exec("\n" + section);
    if (mid) out.set(mid[1], dir ? dir[1] : "sendrecv");
  }
  return out;
}

function transceiverKind(t) {
  return (t.receiver && t.receiver.track && t.receiver.track.kind) || (t.sender.track && t.sender.track.kind);
}

export class Peer extends EventTarget {
  /**
   * @param {object} o
   * @param {string} o.selfId        our peer_id
   * @param {string} o.peerId        the remote peer_id
   * @param {boolean} o.offerer      true when we joined later and make the first offer
   * @param {Array} o.iceServers     from the server's welcome only
   * @param {boolean} o.relayOnly    use TURN relay candidates only (checking a site's TURN server)
   * @param {function} o.signal      (data) => void, sends {sdp}|{candidate} to this peer
   * @param {object} o.localTracks   {audio, video}: what we send (either may be null)
   */
  constructor({ selfId, peerId, name, kind, offerer, iceServers, relayOnly, signal, localTracks }) {
    super();
    this.selfId = selfId;
    this.peerId = peerId;
    this.name = name || peerId;
    this.kind = kind || "user";
    this.polite = String(selfId) < String(peerId);
    this.offerer = offerer;
    this.iceServers = iceServers || [];
    this.relayOnly = !!relayOnly;
    this._signal = signal;
    this.remoteStream = new MediaStream();
    this.localTracks = { audio: null, video: null, ...(localTracks || {}) };
    this.closed = false;
    this._queue = Promise.resolve();
    this._build();
  }

  _build() {
    const pc = new RTCPeerConnection({
      iceServers: this.iceServers,
      bundlePolicy: "max-bundle",
      iceTransportPolicy: this.relayOnly ? "relay" : "all",
    });
    this.pc = pc;
    this.link = ++linkSeq;
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.answerPending = false;
    this.negotiated = false;        // a first offer/answer has completed
    this.descriptions = 0;          // local offers and answers made on this connection
    this.lastMediaAt = 0;
    this._bytesSeen = 0;
    this.remoteStream = new MediaStream();

    this.gathered = { host: 0, srflx: 0, relay: 0 };
    this.iceErrors = [];
    pc.onicecandidateerror = (e) => {
      // A STUN/TURN server that refuses us (bad credential, unreachable): kept for diagnosis.
      this.iceErrors = [...this.iceErrors.slice(-4), { url: e.url, code: e.errorCode, text: e.errorText }];
    };
    pc.onicecandidate = ({ candidate }) => {
      if (pc !== this.pc || !candidate || !candidate.candidate) return;
      const type = candidate.type || (/ typ (\w+)/.exec(candidate.candidate) || [])[1];
      if (type) this.gathered[type] = (this.gathered[type] || 0) + 1;
      this._signal({ candidate: candidate.toJSON() });
    };
    pc.ontrack = ({ track }) => {
      if (pc !== this.pc) return;
      this.remoteStream.addTrack(track);
      track.onended = () => this.remoteStream.removeTrack(track);
      this._emit("track", { track, stream: this.remoteStream });
    };
    pc.onnegotiationneeded = async () => {
      if (pc !== this.pc) return;
      // The peer already in the room waits for the joiner's first offer.
      if (!this.offerer && !this.negotiated) return;
      try {
        this.makingOffer = true;
        await pc.setLocalDescription();
        this.descriptions += 1;
        this._signal({ sdp: { type: pc.localDescription.type, sdp: pc.localDescription.sdp } });
      } catch (err) {
        console.warn("wallmesh: offer to %s failed: %s", this.peerId, err.message);
      } finally {
        this.makingOffer = false;
      }
    };
    pc.onconnectionstatechange = () => {
      if (pc !== this.pc) return;
      this._emit("connectionstatechange", { state: pc.connectionState });
    };
    pc.onsignalingstatechange = () => {
      if (pc === this.pc && pc.signalingState === "stable" && pc.currentRemoteDescription) {
        this.negotiated = true;
      }
    };

    if (this.offerer) {
      // Transceivers up front; the answer decides what each side actually sends.
      const audio = pc.addTransceiver("audio", { direction: "sendrecv" });
      const video = pc.addTransceiver("video", { direction: "sendrecv" });
      applyVideoPreference(video);
      if (this.localTracks.audio) audio.sender.replaceTrack(this.localTracks.audio);
      if (this.localTracks.video) video.sender.replaceTrack(this.localTracks.video);
    }
  }

  /**
   * Sets what we send; null stops sending that kind. No renegotiation: the senders switch
   * tracks in place. Resolves once they have (a replaced track may only be stopped then).
   */
  setLocalTrack(kind, track) {
    this.localTracks[kind] = track;
    const switched = [];
    for (const t of this.pc.getTransceivers()) {
      if (t.stopped || t.currentDirection === "stopped") continue;
      if (transceiverKind(t) === kind && t.direction !== "recvonly" && t.direction !== "inactive") {
        switched.push(t.sender.replaceTrack(track).catch(() => {}));
      }
    }
    return Promise.all(switched);
  }

  /** Handles one `data` object relayed from this peer; calls run one after another. */
  handleSignal(data) {
    this._queue = this._queue.then(() => this._handle(data)).catch((err) => {
      console.warn("wallmesh: signal from %s not applied: %s", this.peerId, err.message);
    });
    return this._queue;
  }

  async _handle(data) {
    if (this.closed || !data || typeof data !== "object") return;
    if (data.sdp && typeof data.sdp.type === "string") {
      const desc = { type: data.sdp.type, sdp: data.sdp.sdp };
      if (desc.type === "offer" && ["failed", "closed"].includes(this.pc.connectionState)) {
        // The other side rebuilt its connection: start over with a fresh one.
        this._rebuild(false);
      }
      const pc = this.pc;
      const readyForOffer = !this.makingOffer && (pc.signalingState === "stable" || this.answerPending);
      const collision = desc.type === "offer" && !readyForOffer;
      this.ignoreOffer = !this.polite && collision;
      if (this.ignoreOffer) return;
      this.answerPending = desc.type === "answer";
      try {
        await pc.setRemoteDescription(desc);
      } catch (err) {
        if (desc.type !== "offer") throw err;
        // An offer this connection cannot take (new DTLS identity, say): rebuild and retry once.
        this._rebuild(false);
        await this.pc.setRemoteDescription(desc);
      } finally {
        this.answerPending = false;
      }
      if (desc.type === "offer") {
        this._attachToOffer(desc.sdp);
        await this.pc.setLocalDescription();
        this.descriptions += 1;
        const local = this.pc.localDescription;
        this._signal({ sdp: { type: local.type, sdp: local.sdp } });
      }
    } else if (data.candidate && typeof data.candidate === "object") {
      try {
        await this.pc.addIceCandidate(data.candidate);
      } catch (err) {
        if (!this.ignoreOffer) console.warn("wallmesh: candidate from %s refused: %s", this.peerId, err.message);
      }
    }
  }

  /** As answerer: put our tracks on the transceivers the offer created, mirroring its directions. */
  _attachToOffer(offerSdp) {
    const offered = offeredDirections(offerSdp);
    for (const t of this.pc.getTransceivers()) {
      const kind = transceiverKind(t);
      if (!kind || t.mid === null || t.currentDirection === "stopped" || t.stopped) continue;
      if (t.sender.track && t.currentDirection) continue;   // already answered once
      const remote = offered.get(t.mid) || "sendrecv";
      const remoteReceives = remote === "sendrecv" || remote === "recvonly";
      const remoteSends = remote === "sendrecv" || remote === "sendonly";
      t.direction = remoteReceives ? (remoteSends ? "sendrecv" : "sendonly") : (remoteSends ? "recvonly" : "inactive");
      if (kind === "video") applyVideoPreference(t);
      const track = this.localTracks[kind];
      if (remoteReceives && track && !t.sender.track) t.sender.replaceTrack(track).catch(() => {});
    }
  }

  /** Replaces the connection with a fresh one; the offerer re-offers at once. */
  _rebuild(asOfferer) {
    const old = this.pc;
    this.offerer = asOfferer;
    this._build();
    try { old.close(); } catch (_) { /* ignore */ }
    this._emit("rebuilt", { stream: this.remoteStream });
  }

  /** Called by the owner after a failure, on the side that re-offers (the impolite one). */
  restart() {
    if (this.closed) return;
    this._rebuild(true);
  }

  /**
   * After a signaling reconnect both sides get new peer_ids; a link whose media still flows is
   * kept and simply renamed (the wall units do the same), so nobody sees a glitch.
   */
  rekey(selfId, peerId) {
    this.selfId = selfId;
    this.peerId = peerId;
    this.polite = String(selfId) < String(peerId);
  }

  /** Notes when media last arrived from this peer (bytes received grew); call about once a second. */
  async sampleMedia() {
    if (this.closed) return;
    let bytes = 0;
    try {
      const report = await this.pc.getStats();
      report.forEach((s) => { if (s.type === "inbound-rtp") bytes += s.bytesReceived || 0; });
    } catch (_) { return; }
    if (bytes > (this._bytesSeen || 0)) this.lastMediaAt = performance.now();
    this._bytesSeen = bytes;
  }

  /** Seconds since media last arrived, or null when none ever did. */
  mediaAge() {
    return this.lastMediaAt ? (performance.now() - this.lastMediaAt) / 1000 : null;
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    try { this.pc.close(); } catch (_) { /* ignore */ }
    for (const track of this.remoteStream.getTracks()) track.stop();
  }

  /** Per-peer figures from getStats: what we receive from this peer and what we send it. */
  async stats() {
    const out = {
      peer_id: this.peerId, name: this.name, kind: this.kind, link: this.link,
      connectionState: this.pc.connectionState, iceConnectionState: this.pc.iceConnectionState,
      video: null, audio: null, sent: null, codec: null, candidatePair: null,
      gathered: { ...this.gathered },   // local candidates by type, as announced to the peer
      iceErrors: this.iceErrors,
      iceServers: this.pc.getConfiguration().iceServers.map((s) => s.urls),   // never the credentials
      descriptions: this.descriptions,
      sending: { audio: null, video: null },   // id of the local track each kind's sender carries
    };
    for (const sender of this.pc.getSenders()) {
      if (sender.track) out.sending[sender.track.kind] = sender.track.id;
    }
    const report = await this.pc.getStats();
    const byId = new Map();
    report.forEach((s) => byId.set(s.id, s));
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") {
        out.video = {
          framesDecoded: s.framesDecoded || 0, framesReceived: s.framesReceived || 0,
          framesDropped: s.framesDropped || 0, framesPerSecond: s.framesPerSecond || 0,
          frameWidth: s.frameWidth || 0, frameHeight: s.frameHeight || 0,
          bytesReceived: s.bytesReceived || 0, packetsLost: s.packetsLost || 0,
        };
        const codec = s.codecId && byId.get(s.codecId);
        if (codec) out.codec = { mimeType: codec.mimeType, sdpFmtpLine: codec.sdpFmtpLine || "" };
      } else if (s.type === "inbound-rtp" && s.kind === "audio") {
        out.audio = { packetsReceived: s.packetsReceived || 0, bytesReceived: s.bytesReceived || 0 };
      } else if (s.type === "outbound-rtp" && s.kind === "video") {
        const codec = s.codecId && byId.get(s.codecId);
        out.sent = {
          framesEncoded: s.framesEncoded || 0, framesSent: s.framesSent || 0,
          bytesSent: s.bytesSent || 0, codec: codec ? codec.mimeType : null,
        };
      } else if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") {
        const local = byId.get(s.localCandidateId);
        const remote = byId.get(s.remoteCandidateId);
        out.candidatePair = {
          localType: local ? local.candidateType : null,
          local: local ? `${local.address}:${local.port}` : null,
          remote: remote ? `${remote.address}:${remote.port}` : null,
          rtt: s.currentRoundTripTime,
        };
      }
    });
    return out;
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail: { peer: this, ...detail } }));
  }
}
