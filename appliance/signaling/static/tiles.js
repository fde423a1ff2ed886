// wallmesh browser client: the grid of remote participants.
//
// One <figure> per participant, cloned from the page's template: video, name,
// muted badge, an avatar while their camera is off, and the link's state. The
// grid's columns follow the participant count so tiles stay as large as possible;
// on a narrow (phone) screen the tiles stack in one column.

import { icon } from "./icons.js";

const $ = (id) => document.getElementById(id);
const NARROW = window.matchMedia("(max-width: 640px)");
NARROW.addEventListener("change", () => layoutGrid());

/**
 * The account the server knows a participant by (user name or device), when it says one
 * and it differs from the display name; otherwise "".
 */
export function accountOf(info) {
  const account = info && typeof info.account === "string" ? info.account : "";
  return account && account !== info.name ? account : "";
}

/** How notices name a participant: the display name, with the account beside it when it differs. */
export function displayName(info) {
  const name = info.name || info.peer_id;
  const account = accountOf(info);
  return account ? `${name} (${account})` : name;
}

export function initials(name) {
  const parts = String(name || "?").trim().split(/[\s._-]+/).filter(Boolean);
  return (parts.length > 1 ? parts[0][0] + parts[1][0] : String(name || "?").slice(0, 2)).toUpperCase();
}

export function addTile(info) {
  const tile = $("tile-template").content.firstElementChild.cloneNode(true);
  tile.dataset.peer = info.peer_id;
  tile.querySelector(".name").textContent = info.name || info.peer_id;
  tile.querySelector(".account").textContent = accountOf(info);
  tile.querySelector(".kind").textContent = info.kind === "device" ? "wall unit" : "";
  tile.querySelector(".avatar").textContent = initials(info.name || info.peer_id);
  tile.querySelector(".badge-muted").innerHTML = icon("mic-off");
  $("grid").appendChild(tile);
  layoutGrid();
  return tile;
}

export function updateTile(entry) {
  const { tile, info, peer } = entry;
  const state = info.state || {};
  const cameraOn = state.camera !== false;
  tile.querySelector(".account").textContent = accountOf(info);   // it may come with a later frame
  tile.classList.toggle("camera-off", !cameraOn);
  tile.querySelector(".badge-muted").hidden = !state.muted;
  const conn = peer ? peer.pc.connectionState : "new";
  tile.dataset.conn = conn;
  const status = tile.querySelector(".tile-status");
  status.textContent = conn === "connected" ? "" : conn === "failed" ? "Connection lost, retrying…" : "Connecting…";
}

export function layoutGrid() {
  const grid = $("grid");
  const n = grid.children.length;
  const cols = n <= 1 || NARROW.matches ? 1 : n <= 4 ? 2 : 3;
  grid.style.setProperty("--cols", String(cols));
  grid.style.setProperty("--rows", String(Math.max(1, Math.ceil(n / cols))));
  grid.dataset.count = String(n);
  $("empty").hidden = n > 0;
}
