// wallmesh browser client: the page a laptop on the LAN opens to join a room.
//
// Sign in (POST /api/auth/login) → pick a room → one RTCPeerConnection per
// participant (full mesh, see peer.js) over the signaling connection (see
// signaling.js). Media goes peer to peer; ICE servers come only from the
// server's welcome, never from a public default.
//
// The camera and microphone live in media.js. Before and during a call a person
// picks the camera, microphone and speaker (devices.js); a new camera or microphone
// replaces the track every connection sends, with no renegotiation. Leave releases
// the camera and microphone; a lost server is said in the call's main area while the
// client retries and rejoins by itself.
//
// A room larger than a mesh goes through the site's conference server (sfu.js): on
// room-mode "sfu" the page publishes once and receives everyone from it; each tile moves
// to its new stream once that stream arrives, and back to a mesh link the same way.
//
// window.wallmesh is a small read-only hook for operators and automated tests:
// wallmesh.stats() resolves to per-peer figures from getStats.

import { SignalingClient } from "./signaling.js";
import { Peer } from "./peer.js";
import { SFU_PEER, SfuLink, SfuRemote } from "./sfu.js";
import { fillPickers, routeAudio, watchPickers } from "./devices.js";
import { icon } from "./icons.js";
import { LocalMedia } from "./media.js";
import { notify } from "./notices.js";
import { CLOSE, MAX_ROOM_CHARS, ROOM_RE } from "./protocol.js";
import { loadSession, signIn, storeSession } from "./session.js";
import { addTile, displayName, initials, layoutGrid, updateTile } from "./tiles.js";

// A link kept across a signaling reconnect is closed once its media has been quiet this long.
const STALE_GRACE_S = 3;
// "?ice=relay" sends all media through the site's TURN server: a way to check that it works.
const RELAY_ONLY = new URLSearchParams(location.search).get("ice") === "relay";

const $ = (id) => document.getElementById(id);

const app = {
  session: null,      // {token, name, expiresAt}
  client: null,       // SignalingClient
  room: null,
  lastRoom: null,     // the room Leave left, for Rejoin
  selfId: null,
  peers: new Map(),   // peer_id → {peer, tile, info}
  warnedNoMedia: false,
  events: [],         // the last peer events, newest last (see window.wallmesh.events)
  mode: "mesh",       // the room's: "mesh", or "sfu" through the site's conference server
  epoch: 0,
  sfu: null,          // SfuLink while the room goes through the SFU
  pending: new Map(), // peer_id → mesh Peer being built back after the SFU
};
const media = new LocalMedia({ replaceTrack: sendEverywhere });

/** Notes a change in who we are connected to, with the wall-clock time, for operators and tests. */
function note(type, peerId, name) {
  app.events.push({ t: Date.now(), type, peer_id: peerId, name });
  if (app.events.length > 100) app.events.shift();
}

// ---------------------------------------------------------------- views

function saveSession(s) {
  storeSession(s);
  app.session = s;
}

function show(view) {
  for (const v of ["signin", "lobby", "left", "call"]) $(`view-${v}`).hidden = v !== view;
  const signedIn = view !== "signin";
  $("who").hidden = !signedIn;
  $("signout").hidden = !signedIn;
  $("who").textContent = signedIn && app.session ? app.session.name : "";
  $("topbar-room").hidden = view !== "call";
  $("conn").hidden = view !== "call";
  if (view !== "call") {
    showDevicePanel(false);
    $("outage").hidden = true;
  }
  document.body.dataset.view = view;
}

function showError(id, message) {
  const el = $(id);
  el.textContent = message || "";
  el.hidden = !message;
}

let toastTimer = null;
function toast(message) {
  const el = $("toast");
  el.textContent = message;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, 5000);
}

function setConn(state, text) {
  $("conn").dataset.state = state;
  $("conn-text").textContent = text;
}

// ---------------------------------------------------------------- local media and devices

/** Puts `track` (or nothing) on every connection for `kind`; resolves once all senders carry it. */
function sendEverywhere(kind, track) {
  if (app.sfu) app.sfu.setLocalTrack(kind, track);
  const links = [...[...app.peers.values()].map(({ peer }) => peer), ...app.pending.values()];
  return Promise.all(links.map((peer) => peer.setLocalTrack(kind, track)));
}

async function openLocalMedia() {
  const stream = await media.open();
  if (!stream) return null;    // released while it was opening (left, signed out)
  if (!stream.getTracks().length && !app.warnedNoMedia) {
    app.warnedNoMedia = true;
    toast("No camera or microphone available: you can still see and hear the room.");
  }
  showPreviews();
  renderControls();
  refreshPickers();
  return stream;
}

/** Releases the camera and microphone (on leave and sign-out: nothing stays captured). */
function stopLocalMedia() {
  media.stop();
  $("lobby-video").srcObject = null;
  $("self-video").srcObject = null;
}

function showPreviews() {
  // Re-assigning srcObject makes the elements pick up a track added after the first time.
  $("lobby-video").srcObject = media.stream;
  $("self-video").srcObject = media.stream;
  $("lobby-preview-off").hidden = media.tracks("video").length > 0;
}

function setMuted(muted) {
  media.setMuted(muted);
  publishState();
  renderControls();
}

async function setCamera(on) {
  if (!(await media.setCamera(on))) toast("No camera available.");
  showPreviews();
  publishState();
  renderControls();
  refreshPickers();
}

function refreshPickers() {
  return fillPickers(media.inUse());
}

/** A person picked a camera, microphone (swapped at once when in use) or speaker. */
async function chooseDevice(deviceKind, deviceId) {
  if (deviceKind === "audiooutput") {
    media.devices.audiooutput = deviceId;
    for (const video of document.querySelectorAll("#grid video")) routeAudio(video, deviceId);
  } else if (!(await media.choose(deviceKind, deviceId))) {
    toast(deviceKind === "videoinput" ? "That camera cannot be opened." : "That microphone cannot be opened.");
  }
  showPreviews();
  refreshPickers();
}

function showDevicePanel(open) {
  $("call-devices").hidden = !open;
  $("btn-devices").setAttribute("aria-expanded", String(open));
  if (open) refreshPickers();
}

function publishState() {
  if (app.client && app.room) app.client.sendState(media.muted, media.cameraOn);
}

function renderControls() {
  const mic = $("btn-mic");
  const cam = $("btn-cam");
  mic.innerHTML = icon(media.muted ? "mic-off" : "mic");
  mic.setAttribute("aria-pressed", String(media.muted));
  mic.title = media.muted ? "Unmute microphone" : "Mute microphone";
  mic.classList.toggle("off", media.muted);
  cam.innerHTML = icon(media.cameraOn ? "cam" : "cam-off");
  cam.setAttribute("aria-pressed", String(!media.cameraOn));
  cam.title = media.cameraOn ? "Turn camera off" : "Turn camera on";
  cam.classList.toggle("off", !media.cameraOn);
  $("btn-leave").innerHTML = icon("leave");
  $("btn-devices").innerHTML = icon("devices");
  $("self-muted").innerHTML = icon("mic-off");
  $("self-muted").hidden = !media.muted;
  $("self-video").hidden = !media.cameraOn;
  const avatar = $("self-avatar");
  avatar.hidden = media.cameraOn;
  avatar.textContent = initials(app.session ? app.session.name : "");
}

// ---------------------------------------------------------------- mesh

function makePeer(info, offerer) {
  const peer = new Peer({
    selfId: app.selfId,
    peerId: info.peer_id,
    name: info.name,
    kind: info.kind,
    offerer,
    iceServers: app.client.iceServers,
    relayOnly: RELAY_ONLY,
    signal: (data) => { if (app.client) app.client.signal(peer.peerId, data); },
    localTracks: { audio: media.track("audio"), video: media.track("video") },
  });
  return peer;
}

function addPeer(info, offerer) {
  removePeer(info.peer_id);
  const entry = addEntry(info, makePeer(info, offerer));
  wirePeer(entry, entry.peer);
  return entry;
}

/** A tile for `info`, fed by `link` (a mesh Peer or an SfuRemote). */
function addEntry(info, link) {
  const tile = addTile(info);
  const entry = { peer: link, tile, info, failTimer: null, stale: false };
  note("added", info.peer_id, info.name);
  app.peers.set(info.peer_id, entry);
  const video = tile.querySelector("video");
  if (media.devices.audiooutput) routeAudio(video, media.devices.audiooutput);
  video.srcObject = link.remoteStream;
  link.addEventListener("track", () => {
    if (entry.peer === link) { video.srcObject = link.remoteStream; video.play().catch(() => {}); }
  });
  updateTile(entry);
  return entry;
}

function wirePeer(entry, peer) {
  const video = entry.tile.querySelector("video");
  peer.addEventListener("rebuilt", () => { if (entry.peer === peer) { video.srcObject = peer.remoteStream; updateTile(entry); } });
  peer.addEventListener("connectionstatechange", (e) => {
    if (entry.peer !== peer) return;
    updateTile(entry);
    clearTimeout(entry.failTimer);
    if (e.detail.state === "failed" && !peer.polite) {
      // The impolite side rebuilds the connection and offers again; the polite
      // side answers whatever fresh offer arrives.
      entry.failTimer = setTimeout(() => { if (app.peers.get(peer.peerId) === entry) peer.restart(); }, 1000);
    }
  });
}

// ---------------------------------------------------------------- through the SFU

/** Feed `entry`'s tile from `link` now; the old link goes a moment later, so that the far
 *  side, which may not have its new path yet, keeps receiving us meanwhile. */
function switchEntry(entry, link) {
  const old = entry.peer;
  if (old === link) return;
  entry.peer = link;
  const video = entry.tile.querySelector("video");
  video.srcObject = link.remoteStream;
  video.play().catch(() => {});
  setTimeout(() => old.close(), 3000);
  note("switched", link.peerId, link.name);
  updateTile(entry);
}

function setMode(mode, epoch) {
  if (mode === "sfu") {
    const fresh = app.mode !== "sfu" || epoch !== app.epoch || !app.sfu;
    app.mode = "sfu";
    app.epoch = epoch;
    if (!fresh || !app.client) return;
    for (const peer of app.pending.values()) peer.close();
    app.pending.clear();
    if (!app.sfu) {
      const sfu = app.sfu = new SfuLink({
        iceServers: app.client.iceServers,
        signal: (data) => { if (app.client) app.client.signal(SFU_PEER, data); },
        localTracks: { audio: media.track("audio"), video: media.track("video") },
      });
      sfu.addEventListener("track", (e) => {
        if (app.sfu !== sfu || app.mode !== "sfu") return;
        const { peerId, track, pc } = e.detail;
        const entry = app.peers.get(peerId) || addEntry({ peer_id: peerId, name: "", state: { muted: false, camera: true } }, new SfuRemote(peerId, ""));
        const remote = entry.peer.sfu ? entry.peer : new SfuRemote(peerId, entry.peer.name);
        remote.attach(track, pc);
        if (entry.peer !== remote) switchEntry(entry, remote);
        else { const video = entry.tile.querySelector("video"); video.srcObject = remote.remoteStream; video.play().catch(() => {}); }
      });
    }
    app.sfu.publish().catch((err) => console.warn("wallmesh: publishing to the SFU failed:", err.message));
  } else if (app.mode === "sfu") {
    app.mode = "mesh";
    for (const [id, entry] of app.peers) {
      if (!entry.peer.sfu || app.pending.has(id)) continue;
      meshLinkFor(entry, String(app.selfId) > String(id));   // the higher id offers, as in a rebuild
    }
    setTimeout(() => finishMesh(true), 10000);
  }
}

/** A mesh link being built back for `entry`; it takes the tile over once it has a track. */
function meshLinkFor(entry, offerer) {
  const peer = makePeer(entry.info, offerer);
  app.pending.set(entry.info.peer_id, peer);
  peer.addEventListener("track", () => {
    if (app.pending.get(entry.info.peer_id) !== peer || app.peers.get(entry.info.peer_id) !== entry) return;
    app.pending.delete(entry.info.peer_id);
    switchEntry(entry, peer);
    wirePeer(entry, peer);
    finishMesh(false);
  });
  return peer;
}

/** Back on a mesh: once no tile needs the SFU (or after a while anyway), close its connections. */
function finishMesh(late) {
  if (app.mode !== "mesh" || !app.sfu) return;
  if (!late && [...app.peers.values()].some((e) => e.peer.sfu)) return;
  for (const [id, peer] of app.pending) {
    const entry = app.peers.get(id);
    if (entry && entry.peer.sfu) { switchEntry(entry, peer); wirePeer(entry, peer); }
  }
  app.pending.clear();
  app.sfu.close();
  app.sfu = null;
}

/**
 * After a reconnect, a participant reappears under a new peer_id. If exactly one kept
 * (stale) link has that name and its media still flows, rename it instead of connecting again.
 */
function adopt(info) {
  if (!info.name || app.peers.has(info.peer_id)) return null;
  const same = [...app.peers.values()].filter((e) => e.stale && e.peer.name === info.name);
  if (same.length !== 1) return null;
  const entry = same[0];
  const age = entry.peer.mediaAge();
  if (entry.peer.pc.connectionState !== "connected" || age === null || age > STALE_GRACE_S) return null;
  app.peers.delete(entry.peer.peerId);
  entry.peer.rekey(app.selfId, info.peer_id);
  entry.tile.dataset.peer = info.peer_id;
  entry.info = { ...entry.info, ...info, state: info.state || entry.info.state };
  entry.stale = false;
  app.peers.set(info.peer_id, entry);
  updateTile(entry);
  note("adopted", info.peer_id, info.name);
  return entry;
}

/** Once a second: note which links still carry media; close kept links that went quiet. */
async function housekeeping() {
  for (const [id, entry] of [...app.peers]) {
    await entry.peer.sampleMedia();
    if (!entry.stale) continue;
    const age = entry.peer.mediaAge();
    if (entry.peer.pc.connectionState !== "connected" || age === null || age > STALE_GRACE_S) {
      // Said as a leave unless the same person is already back under a new id.
      const back = [...app.peers.values()].some((e) => e !== entry && !e.stale && e.peer.name === entry.peer.name);
      removePeer(id, { announce: !back });
    }
  }
}

function removePeer(peerId, { announce = false } = {}) {
  const pending = app.pending.get(peerId);
  if (pending) { pending.close(); app.pending.delete(peerId); }
  const entry = app.peers.get(peerId);
  if (!entry) return;
  if (announce) notify(`${displayName(entry.info)} left`);
  clearTimeout(entry.failTimer);
  entry.peer.close();
  entry.tile.remove();
  note("removed", peerId, entry.peer.name);
  app.peers.delete(peerId);
  layoutGrid();
}

function removeAllPeers() {
  for (const id of [...app.peers.keys()]) removePeer(id);
  if (app.sfu) app.sfu.close();
  app.sfu = null;
  app.mode = "mesh";
  app.epoch = 0;
}

function wireClient(client) {
  client.addEventListener("session", (e) => {
    // A new session means a new peer_id. Links made under the old one keep running
    // (media does not need the server) and are adopted when their peer reappears.
    app.selfId = e.detail.peerId;
    for (const entry of app.peers.values()) entry.stale = true;
  });
  client.addEventListener("statechange", (e) => {
    const s = e.detail.state;
    // Said in the call itself, not only in the top bar: the page cannot reach the server.
    $("outage").hidden = s !== "reconnecting";
    if (s === "ready") setConn("ok", "Connected");
    else if (s === "reconnecting") setConn("warn", "Reconnecting…");
    else if (s === "connecting") setConn("warn", "Connecting…");
    else setConn("bad", "Offline");
  });
  client.addEventListener("joined", (e) => {
    const msg = e.detail;
    app.selfId = msg.peer_id || app.selfId;
    $("topbar-room").textContent = msg.room;
    $("empty-sub").textContent = `Room “${msg.room}”`;
    if (msg.mode === "sfu" || app.mode === "sfu") setMode(msg.mode === "sfu" ? "sfu" : "mesh", msg.epoch || 0);
    for (const info of msg.peers || []) {
      if (!info || info.peer_id === app.selfId) continue;
      if (app.mode === "sfu") {
        if (!app.peers.has(info.peer_id)) addEntry(info, new SfuRemote(info.peer_id, info.name));   // its stream comes from the SFU
        continue;
      }
      if (!adopt(info)) addPeer(info, true);    // we joined later: we offer to everyone already here
    }
    publishState();
    show("call");
  });
  client.addEventListener("peer-joined", (e) => {
    const info = e.detail;
    if (info.peer_id === app.selfId) return;
    const full = { ...info, state: info.state || { muted: false, camera: true } };
    if (app.mode === "sfu") {
      if (!app.peers.has(full.peer_id)) addEntry(full, new SfuRemote(full.peer_id, full.name));
      notify(`${displayName(full)} joined`);
      return;
    }
    if (adopt(full)) return;                   // the same person, back after a signaling drop
    addPeer(full, false);                      // the newcomer offers to us
    notify(`${displayName(full)} joined`);
  });
  client.addEventListener("peer-left", (e) => {
    const entry = app.peers.get(e.detail.peer_id);
    if (!entry) return;
    const age = entry.peer.mediaAge();
    if (e.detail.reason !== "left" && entry.peer.pc.connectionState === "connected" && age !== null && age < 1) {
      entry.stale = true;     // its signaling dropped, its media did not: keep it for now
      return;
    }
    removePeer(e.detail.peer_id, { announce: true });
  });
  client.addEventListener("peer-state", (e) => {
    const entry = app.peers.get(e.detail.peer_id);
    if (!entry) return;
    entry.info.state = { muted: !!e.detail.muted, camera: e.detail.camera !== false };
    updateTile(entry);
  });
  client.addEventListener("signal", (e) => {
    const { from, data } = e.detail;
    if (from === SFU_PEER) {
      if (app.sfu) app.sfu.handleSignal(data);
      return;
    }
    const entry = app.peers.get(from);
    if (!entry) return;
    const pending = app.pending.get(from);
    if (pending) pending.handleSignal(data);
    else if (!entry.peer.sfu) entry.peer.handleSignal(data);
    else if (data && data.sdp && data.sdp.type === "offer") meshLinkFor(entry, false).handleSignal(data);   // it is back on a mesh already
  });
  client.addEventListener("room-mode", (e) => {
    if (e.detail.room === app.room && (e.detail.mode === "sfu" || e.detail.mode === "mesh")) setMode(e.detail.mode, e.detail.epoch || 0);
  });
  client.addEventListener("left", () => { removeAllPeers(); });
  client.addEventListener("error", (e) => {
    const { code, message } = e.detail;
    if (code === "room_full" || code === "forbidden" || (code === "bad_message" && e.detail.ref === "join")) {
      const text = code === "room_full" ? roomFullText(client.limits.max_room_size, message)
        : code === "forbidden" ? "Your account may not join that room." : message;
      app.room = null;
      client.room = null;
      removeAllPeers();
      show("lobby");
      showError("join-error", text);
    } else if (code !== "unknown_peer") {
      toast(message || code);
    }
  });
  client.addEventListener("fatal", () => {
    leaveCall();
    stopLocalMedia();
    saveSession(null);
    show("signin");
    showError("signin-error", "Your session has ended. Please sign in again.");
  });
}

/** Says why a join was refused for a full room, with the size the server's welcome gave. */
function roomFullText(maxRoomSize, message) {
  // a site with a conference server grows rooms past the mesh size: the server says its own limit
  if (/conference server is not reachable/.test(message || "")) return "That room is full, and the site's conference server is not reachable.";
  const larger = /holds at most (\d+)/.exec(message || "");
  if (larger) maxRoomSize = Number(larger[1]);
  return Number.isInteger(maxRoomSize) ? `That room is full (${maxRoomSize} participants at most).` : "That room is full.";
}

async function joinRoom(room) {
  showError("join-error", "");
  if (!ROOM_RE.test(room)) {
    showError("join-error", `Use lower-case letters, digits and dashes (up to ${MAX_ROOM_CHARS}).`);
    return;
  }
  $("join-button").disabled = true;
  try {
    await openLocalMedia();
    if (!app.client) {
      const scheme = location.protocol === "https:" ? "wss:" : "ws:";
      const url = new URL("ws", location.href);
      url.protocol = scheme;
      const client = new SignalingClient({ url: url.href, token: app.session.token, name: app.session.name });
      wireClient(client);
      app.client = client;
      setConn("warn", "Connecting…");
      try {
        await client.connect();
      } catch (err) {
        app.client = null;
        if (err.code === CLOSE.UNAUTHORIZED) {
          stopLocalMedia();
          saveSession(null);
          show("signin");
          showError("signin-error", "Your session has ended. Please sign in again.");
        } else {
          show("lobby");    // a Rejoin lands here too, the room filled in for another try
          $("room").value = room;
          showError("join-error", err.message);
        }
        return;
      }
    }
    app.room = room;
    app.client.join(room);
  } finally {
    $("join-button").disabled = false;
  }
}

function leaveCall() {
  removeAllPeers();
  if (app.client && app.room) app.client.leave();   // others drop us at once, not after a timeout
  app.room = null;
  if (app.client) app.client.close();
  app.client = null;
  app.selfId = null;
}

/**
 * Leave: every connection closed, the signaling connection closed cleanly, the camera and
 * microphone released (the camera's light goes out), and a way back into the same room.
 */
function leaveRoom() {
  app.lastRoom = app.room;
  leaveCall();
  stopLocalMedia();
  $("left-room").textContent = app.lastRoom ? `Room “${app.lastRoom}”` : "";
  $("rejoin-button").hidden = !app.lastRoom;
  show("left");
  $("rejoin-button").focus();
}

// ---------------------------------------------------------------- wiring

function init() {
  $("signin-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    showError("signin-error", "");
    $("signin-button").disabled = true;
    try {
      saveSession(await signIn($("username").value.trim(), $("password").value));
      $("password").value = "";
      show("lobby");
      openLocalMedia();
      $("room").focus();
    } catch (err) {
      showError("signin-error", err.message);
    } finally {
      $("signin-button").disabled = false;
    }
  });
  $("room").addEventListener("input", (e) => {
    // Room names are lower-case with dashes: "Board Room" becomes "board-room" as it is typed.
    const el = e.target;
    const fixed = el.value.toLowerCase().replace(/[\s_]+/g, "-");
    if (fixed !== el.value) el.value = fixed;
  });
  $("join-form").addEventListener("submit", (e) => {
    e.preventDefault();
    joinRoom($("room").value.trim().toLowerCase());
  });
  $("btn-mic").addEventListener("click", () => setMuted(!media.muted));
  $("btn-cam").addEventListener("click", () => setCamera(!media.cameraOn));
  $("btn-devices").addEventListener("click", () => showDevicePanel($("call-devices").hidden));
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Escape" || $("call-devices").hidden) return;
    showDevicePanel(false);
    $("btn-devices").focus();
  });
  $("btn-leave").addEventListener("click", leaveRoom);
  $("rejoin-button").addEventListener("click", async () => {
    $("rejoin-button").disabled = true;
    try { await joinRoom(app.lastRoom); } finally { $("rejoin-button").disabled = false; }
  });
  $("lobby-button").addEventListener("click", () => {
    show("lobby");
    if (app.lastRoom) $("room").value = app.lastRoom;
    openLocalMedia();
  });
  watchPickers(chooseDevice, refreshPickers);
  $("signout").addEventListener("click", () => {
    leaveCall();
    stopLocalMedia();
    saveSession(null);
    show("signin");
  });
  window.addEventListener("pagehide", () => { if (app.client) app.client.close(); });

  let sweeping = false;
  setInterval(async () => {
    if (sweeping) return;
    sweeping = true;
    try { await housekeeping(); } finally { sweeping = false; }
  }, 1000);

  $("room").maxLength = MAX_ROOM_CHARS;
  renderControls();
  app.session = loadSession();
  const roomFromUrl = new URLSearchParams(location.search).get("room");
  if (roomFromUrl && ROOM_RE.test(roomFromUrl)) $("room").value = roomFromUrl;
  if (app.session) {
    show("lobby");
    openLocalMedia();
  } else {
    show("signin");
  }
}

// ---------------------------------------------------------------- test/operator hook

window.wallmesh = Object.freeze({
  /** Per-peer figures: what this page receives from (and sends to) each participant. */
  async stats() {
    const peers = {};
    for (const [id, { peer, stale }] of app.peers) peers[id] = { ...(await peer.stats()), stale };
    return { peer_id: app.selfId, room: app.room, signaling: app.client ? app.client.state : "closed", peers };
  },
  /** The last peer events ({t: ms since the epoch, type: added|adopted|removed, peer_id, name}). */
  events() {
    return app.events.slice();
  },
  state() {
    return {
      peer_id: app.selfId, room: app.room, muted: media.muted, camera: media.cameraOn,
      signaling: app.client ? app.client.state : "closed", peers: [...app.peers.keys()],
      mode: app.mode,
      devices: media.inUse(),
      capturing: media.capturing(),
    };
  },
});

init();
