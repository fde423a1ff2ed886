// wallmesh browser client: signing in and keeping the session for this tab.
//
// The JWT from POST /api/auth/login lives in sessionStorage (this tab only, gone
// when it closes) with its expiry; it is never shown or logged.

const TOKEN_KEY = "wallmesh.session";

export function loadSession() {
  try {
    const s = JSON.parse(sessionStorage.getItem(TOKEN_KEY) || "null");
    if (s && s.token && s.expiresAt > Date.now() + 30000) return s;
  } catch (_) { /* ignore a corrupt entry */ }
  return null;
}

export function storeSession(s) {
  if (s) sessionStorage.setItem(TOKEN_KEY, JSON.stringify(s));
  else sessionStorage.removeItem(TOKEN_KEY);
}

export async function signIn(username, password) {
  let res;
  try {
    res = await fetch("api/auth/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username, password }),
    });
  } catch (_) {
    throw new Error("Cannot reach the wallmesh server.");
  }
  let body = {};
  try { body = await res.json(); } catch (_) { /* not JSON */ }
  if (res.ok && body.token) {
    const expiresIn = Number(body.expires_in) || 3600;
    return { token: body.token, name: username, expiresAt: Date.now() + expiresIn * 1000 };
  }
  const code = body.error && body.error.code;
  if (res.status === 429 || code === "rate_limited") throw new Error("Too many attempts. Wait a minute and try again.");
  if (res.status === 401) throw new Error("Wrong username or password.");
  throw new Error((body.error && body.error.message) || `Sign-in failed (HTTP ${res.status}).`);
}
