// wallmesh browser client: the signaling connection (wire protocol v1 over /ws).
//
// One SignalingClient per page. It says hello with the JWT from the login API,
// joins a room, keeps the connection alive with pings and comes back on its own
// after a drop (capped, jittered backoff), rejoining the room it was in. Every
// server frame is re-emitted as a DOM event named after its `type`, so the rest
// of the page listens with addEventListener("joined", ...), etc.
//
// A reconnect gives this page a new peer_id; the server has already announced
// the old one as gone, so listeners get a "session" event: links built under the
// old id are only kept if their peers reappear (see adopt() in app.js).
//
// Protocol constants (close codes) come from the server-rendered protocol.js, and
// the session's limits from its welcome: this file keeps no copy of either.

import { CLOSE } from "./protocol.js";

// The server drops a connection that stays silent for several seconds, so ping well inside that.
const PING_EVERY_MS = 3000;      // a ping this often ...
const PONG_GRACE_MS = 10000;     // ... and a connection silent for this long is dead
const HELLO_TIMEOUT_MS = 8000;
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 10000;

// Close codes after which retrying with the same token is pointless.
const FATAL_CLOSE_CODES = new Set([CLOSE.UNAUTHORIZED]);

export class SignalingClient extends EventTarget {
  constructor({ url, token, name }) {
    super();
    this.url = url;
    this.token = token;
    this.name = name;
    this.ws = null;
    this.peerId = null;
    this.iceServers = [];
    this.limits = {};          // from the welcome: {max_room_size, max_frame_bytes}
    this.room = null;          // the room we want to be in (survives reconnects)
    this.state = "idle";       // idle | connecting | ready | reconnecting | closed
    this._attempt = 0;
    this._timers = new Set();
    this._pingSeq = 0;
    this._lastHeard = 0;
    this._closedByUs = false;
  }

  /** Opens the connection; resolves with the welcome, rejects when refused. */
  connect() {
    this._closedByUs = false;
    return this._open();
  }

  /** Asks to join `room`; the answer arrives as a "joined" (or "error") event. */
  join(room) {
    this.room = room;
    this.send({ type: "join", room });
  }

  leave() {
    this.room = null;
    this.send({ type: "leave" });
  }

  signal(to, data) {
    this.send({ type: "signal", to, data });
  }

  sendState(muted, camera) {
    this.send({ type: "state", muted, camera });
  }

  /**
   * Sends one frame. A frame over the session's max_frame_bytes is not sent: the page
   * hears the same "error" (too_large) the server would have answered.
   */
  send(message) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    const text = JSON.stringify(message);
    const max = this.limits.max_frame_bytes;
    if (typeof max === "number" && text.length > max / 3) {   // a UTF-16 unit is at most 3 UTF-8 bytes
      const size = new TextEncoder().encode(text).length;
      if (size > max) {
        const detail = { type: "error", code: "too_large", message: `frame of ${size} bytes exceeds ${max}`, ref: message.type };
        this.dispatchEvent(new CustomEvent("error", { detail }));
        return false;
      }
    }
    this.ws.send(text);
    return true;
  }

  /** Closes for good: no reconnect. Idempotent. */
  close() {
    this._closedByUs = true;
    this._clearTimers();
    if (this.ws) {
      try { this.ws.close(1000, "bye"); } catch (_) { /* already closed */ }
    }
    this.ws = null;
    this._setState("closed");
  }

  _open() {
    this._setState(this._attempt === 0 ? "connecting" : "reconnecting");
    return new Promise((resolve, reject) => {
      let settled = false;
      const ws = new WebSocket(this.url);
      this.ws = ws;
      const helloTimer = this._later(() => {
        if (settled) return;
        settled = true;
        if (this._attempt === 0) this._closedByUs = true;   // the caller reports it
        reject(new Error("no welcome from the server"));
        ws.close();
      }, HELLO_TIMEOUT_MS);

      ws.onopen = () => {
        const hello = { type: "hello", token: this.token };
        if (this.name) hello.name = this.name;
        ws.send(JSON.stringify(hello));
      };

      ws.onmessage = (event) => {
        if (ws !== this.ws) return;
        this._lastHeard = performance.now();
        let msg;
        try { msg = JSON.parse(event.data); } catch (_) { return; }
        if (!msg || typeof msg.type !== "string") return;
        if (msg.type === "welcome") {
          this._onWelcome(msg);
          if (!settled) { settled = true; this._cancel(helloTimer); resolve(msg); }
          return;
        }
        if (msg.type === "pong") return;
        this.dispatchEvent(new CustomEvent(msg.type, { detail: msg }));
      };

      ws.onclose = (event) => {
        if (ws !== this.ws) return;
        this.ws = null;
        this._clearTimers();
        if (!settled) {
          settled = true;
          const err = new Error(event.code === CLOSE.UNAUTHORIZED ? "the server refused the sign-in" : "could not reach the server");
          err.code = event.code;
          // A first connection that fails is the caller's to report; a
          // reconnection that fails just tries again below.
          if (this._attempt === 0) { this._setState("closed"); reject(err); return; }
        }
        if (this._closedByUs) return;
        if (FATAL_CLOSE_CODES.has(event.code)) {
          this._setState("closed");
          this.dispatchEvent(new CustomEvent("fatal", { detail: { code: event.code, reason: event.reason } }));
          return;
        }
        this._scheduleReconnect();
      };
      ws.onerror = () => { /* onclose follows and decides */ };
    });
  }

  _onWelcome(msg) {
    const previous = this.peerId;
    this.peerId = msg.peer_id;
    this.iceServers = Array.isArray(msg.ice_servers) ? msg.ice_servers : [];
    this.limits = msg.limits || {};
    this._attempt = 0;
    this._setState("ready");
    this._startHeartbeat();
    this.dispatchEvent(new CustomEvent("session", { detail: { peerId: this.peerId, previous } }));
    if (this.room) {
      this.send({ type: "join", room: this.room });
    }
  }

  _startHeartbeat() {
    this._lastHeard = performance.now();
    const tick = () => {
      if (!this.ws) return;
      if (performance.now() - this._lastHeard > PONG_GRACE_MS) {
        // The socket looks open but nothing comes back: treat it as dropped.
        try { this.ws.close(4000, "heartbeat lost"); } catch (_) { /* ignore */ }
        const ws = this.ws;
        this.ws = null;
        if (ws) { ws.onclose = null; }
        this._clearTimers();
        if (!this._closedByUs) this._scheduleReconnect();
        return;
      }
      this.send({ type: "ping", id: String(++this._pingSeq) });
      this._later(tick, PING_EVERY_MS);
    };
    this._later(tick, PING_EVERY_MS);
  }

  _scheduleReconnect() {
    this._attempt += 1;
    const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** (this._attempt - 1));
    const delay = cap / 2 + Math.random() * cap / 2;
    this._setState("reconnecting");
    this._later(() => {
      this._open().catch(() => { /* onclose schedules the next try */ });
    }, delay);
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent("statechange", { detail: { state } }));
  }

  _later(fn, ms) {
    const id = setTimeout(() => { this._timers.delete(id); fn(); }, ms);
    this._timers.add(id);
    return id;
  }

  _cancel(id) {
    clearTimeout(id);
    this._timers.delete(id);
  }

  _clearTimers() {
    for (const id of this._timers) clearTimeout(id);
    this._timers.clear();
  }
}
