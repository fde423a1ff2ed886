"""The site's signaling server: rooms, relay, accounts and devices, on one aiohttp app.

Where things live:

* :mod:`~appliance.signaling.server` — ``SignalServer``, the composition root (store, keys,
  TLS, listener, mDNS); what ``wallmesh signal``, the demo and every test start.
* :mod:`~appliance.signaling.app` — ``create_app``: the HTTP API, ``/ws``, ``/metrics``;
  background jobs (store probe, revocation poll, heartbeat sweep) in its ``cleanup_ctx``.
* :mod:`~appliance.signaling.state` — ``Services`` and the app keys, below both ``app`` and
  ``ws`` so that neither imports the other.
* :mod:`~appliance.signaling.webclient` — the browser client's static files and
  ``protocol.js``, the room rule and close codes rendered from :mod:`appliance.protocol`.
* :mod:`~appliance.signaling.ws` / :mod:`~appliance.signaling.rooms` /
  :mod:`~appliance.signaling.outbox` — one coroutine per connection, the in-memory rooms
  (a ``Participant`` per signed-in client), and the per-connection queue that turns a loop
  turn's frames into one socket write.
* :mod:`~appliance.signaling.auth` — Ed25519 JWTs (``EdDSA`` pinned at verification, keys
  rotatable by ``kid``), argon2id in a bounded thread pool, per-account login throttling.
* :mod:`~appliance.signaling.store` / :mod:`~appliance.signaling.embedded` — pymongo's async
  client against MongoDB or the embedded ``nx-27017``; the store failing never stops rooms.
* :mod:`~appliance.signaling.admin` / :mod:`~appliance.signaling.offline` — what
  ``wallmesh user``/``device`` do, with or without a running server.

Choices worth knowing:

* **Frame size.** aiohttp reads frames up to 256 KiB (after inflating permessage-deflate;
  it stops inflating there), so a frame a little over the 64 KiB protocol limit is
  answered ``too_large`` and the connection lives on; anything bigger, a decompression
  bomb included, is refused by aiohttp with close code 1009 before it is held in memory.
* **Close codes.** 4401 (no hello in time, bad token, revoked device), 4429 (flooding past
  the rate limit), 4400 (sustained malformed frames), 1001 (silent past the heartbeat
  timeout, or server stopping), 1009 (frame too big to read), 1013 (a client that does
  not read what it is sent). There is no 4403: a room the token does not grant is answered
  ``error`` ``forbidden`` and the connection stays usable for another room.
* **Liveness.** Any frame from a client, a pong included, proves it alive. A connection
  silent for ``heartbeat.idle_s`` gets one ping; one silent for ``heartbeat.timeout_s``
  is dropped and its room hears ``peer-left`` with reason ``timeout`` at once.
* **Sharing the embedded store.** Its owner (server or CLI) holds ``store/owner.lock`` and
  publishes ``store.uri``; a CLI command run beside a live server uses that URI rather
  than opening the SQLite files from a second process.
* **Enrollment tokens** are JWTs of kind ``enroll`` whose claims ``url`` and ``fp`` (the
  server certificate's SHA-256 fingerprint, colon hex) tell a unit where to go and what
  certificate to pin; the server also checks the token's id against the store, so it can
  be revoked (``wallmesh device token --revoke ID``).
"""
