// wallmesh browser client: the local camera and microphone.
//
// One LocalMedia per page holds what is captured (a MediaStream that may lack either kind),
// the mute and camera switches, and the devices the person picked. Camera off stops the
// capture itself, so the camera's light goes out; stop() releases everything. A newly picked
// camera or microphone is opened first, handed to `replaceTrack` (the owner moves every
// connection's sender to it) and the old track is stopped only after that, so the others
// never lose the picture or the sound.

const VIDEO_CONSTRAINTS = { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30 } };
const DEVICE_KIND = { audio: "audioinput", video: "videoinput" };

export class LocalMedia {
  /** @param {function} replaceTrack async (kind, track|null) => void: what every connection sends */
  constructor({ replaceTrack }) {
    this.stream = null;
    this.muted = false;
    this.cameraOn = true;
    this.devices = { videoinput: "", audioinput: "", audiooutput: "" };   // picked ("" = default)
    this._replaceTrack = replaceTrack;
    this._opening = null;
    this._generation = 0;    // bumped by stop(): a capture that lands afterwards is released at once
  }

  /**
   * What to ask getUserMedia for one kind: the picked device, insisted on (`exact`) when the
   * person just chose it, preferred otherwise (a device since unplugged then falls back).
   */
  constraints(kind, exact = false) {
    const base = kind === "video" ? { ...VIDEO_CONSTRAINTS } : {};
    const id = this.devices[DEVICE_KIND[kind]];
    if (id) base.deviceId = exact ? { exact: id } : { ideal: id };
    return Object.keys(base).length ? base : true;
  }

  /** Captures camera and microphone (whatever of them is there); one capture however often called. */
  open() {
    if (this.stream) return Promise.resolve(this.stream);
    if (!this._opening) this._opening = this._capture().finally(() => { this._opening = null; });
    return this._opening;
  }

  async _capture() {
    const generation = this._generation;
    const attempts = [
      { audio: this.constraints("audio"), video: this.constraints("video") },
      { audio: false, video: this.constraints("video") },
      { audio: this.constraints("audio"), video: false },
    ];
    let stream = null;
    for (const constraints of attempts) {
      try {
        stream = await navigator.mediaDevices.getUserMedia(constraints);
        break;
      } catch (_) { /* try the next, smaller ask */ }
    }
    if (generation !== this._generation) {
      for (const t of stream ? stream.getTracks() : []) t.stop();   // released while it was opening
      return null;
    }
    this.stream = stream || new MediaStream();
    this.cameraOn = this.stream.getVideoTracks().length > 0;
    for (const t of this.stream.getAudioTracks()) t.enabled = !this.muted;
    return this.stream;
  }

  /** Releases the camera and microphone: every captured track ends. Idempotent. */
  stop() {
    this._generation += 1;
    for (const t of this.stream ? this.stream.getTracks() : []) t.stop();
    this.stream = null;
  }

  tracks(kind) {
    if (!this.stream) return [];
    return kind === "audio" ? this.stream.getAudioTracks() : this.stream.getVideoTracks();
  }

  /** The track to send for `kind`, or null. */
  track(kind) {
    const track = this.tracks(kind)[0] || null;
    if (kind === "audio") return track;                // muting disables it, see setMuted
    return this.cameraOn ? track : null;               // camera off: nothing is sent at all
  }

  setMuted(muted) {
    this.muted = muted;
    for (const t of this.tracks("audio")) t.enabled = !muted;
  }

  /** Camera off stops the capture; camera on asks for the camera again. False if it cannot be had. */
  async setCamera(on) {
    if (!this.stream) return false;
    if (on && !this.tracks("video").length) {
      try {
        const stream = await navigator.mediaDevices.getUserMedia({ video: this.constraints("video") });
        this.stream.addTrack(stream.getVideoTracks()[0]);
      } catch (_) {
        return false;
      }
    } else if (!on) {
      for (const t of this.tracks("video")) {
        t.stop();
        this.stream.removeTrack(t);
      }
    }
    this.cameraOn = on;
    await this._replaceTrack("video", this.track("video"));
    return true;
  }

  /**
   * Uses the picked camera or microphone from now on; one in use is swapped at once.
   * False when that device cannot be opened (the current one stays).
   */
  async choose(deviceKind, deviceId) {
    this.devices[deviceKind] = deviceId;
    const kind = Object.keys(DEVICE_KIND).find((k) => DEVICE_KIND[k] === deviceKind);
    const current = kind ? this.tracks(kind) : [];
    if (!current.length) return true;    // nothing of that kind captured now (camera off): used next time
    let track;
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ [kind]: this.constraints(kind, true) });
      track = stream.getTracks()[0];
    } catch (_) {
      return false;
    }
    if (!this.stream) {    // released meanwhile
      track.stop();
      return true;
    }
    if (kind === "audio") track.enabled = !this.muted;
    this.stream.addTrack(track);
    for (const old of current) this.stream.removeTrack(old);
    await this._replaceTrack(kind, this.track(kind));
    for (const old of current) old.stop();
    return true;
  }

  /** kind → deviceId in use: the live track's device, else what was picked. */
  inUse() {
    const of = (kind) => {
      const t = this.tracks(kind)[0];
      return (t && t.getSettings().deviceId) || this.devices[DEVICE_KIND[kind]];
    };
    return { videoinput: of("video"), audioinput: of("audio"), audiooutput: this.devices.audiooutput };
  }

  /** The kinds being captured right now (for operators and tests). */
  capturing() {
    return this.stream ? this.stream.getTracks().filter((t) => t.readyState === "live").map((t) => t.kind).sort() : [];
  }
}
