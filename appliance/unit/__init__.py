"""The unit daemon (``wallmesh run``): one wall unit, assembled from the other parts.

Where things live:

* :mod:`~appliance.unit.app` — ``UnitDaemon``, the composition root: builds every
  part from a ``UnitConfig``, owns the order of start-up (signaling while the
  devices open; the join waits for them) and shutdown, and is the production
  :class:`~appliance.wall.controller.UnitController` that buttons, LEDs, the status
  endpoint and the display drive. It also builds the ``GET /status`` document.
* :mod:`~appliance.unit.main` — the daemon as a process: uvloop, SIGTERM/SIGINT,
  systemd readiness and watchdog; :mod:`~appliance.unit.notify` — the systemd
  notify protocol (``READY=1``, ``STATUS=``, ``STOPPING=1``, watchdog pings that
  stop when the loop or the display thread stops beating).
* :mod:`~appliance.unit.config` — ``UnitConfig``, the ``unit.toml`` tree (its
  ``[display]``, ``[buttons]`` and ``[leds]`` sections come from ``display/`` and
  ``controls/``).
* :mod:`~appliance.unit.signaling` — ``SignalClient``: locate the server (the
  configured URL, or mDNS via :mod:`~appliance.unit.discovery`), pin its
  certificate, enroll and get a token (:mod:`~appliance.unit.credentials`),
  ``hello``/``join``, relay signals, reconnect with capped jittered backoff (cut short
  when :mod:`~appliance.unit.links` sees a network link come back up).
* :mod:`~appliance.unit.media` — ``UnitMedia``, the unit's media as the mesh sees
  it: the camera behind one shared encoder, the microphone read once for all
  peers, the speaker mixer, the self-view tee, and the per-peer video gate.
* :mod:`~appliance.unit.status` — ``StatusServer``: ``GET /status`` and ``POST
  /actions/{name}`` on loopback; the document's fields are typed and documented
  in :mod:`appliance.wall.status`.
* :mod:`~appliance.unit.frontpanel` — ``FrontPanel``: the display thread, buttons
  and LEDs attached to a controller, and display snapshots.

Where the decisions are made:

* **Keyframe on join.** Each peer gets its own track of the shared encoder
  (:mod:`appliance.mesh.fanout`), whose first packet is a keyframe produced at
  once; :func:`~appliance.mesh.fanout.gated_video_track` wraps it, and the peer
  primes the gate when ICE completes (:mod:`appliance.mesh.peer`), so that
  keyframe is being encoded while DTLS finishes. A peer's PLI/FIR reaches the
  encoder through ``SharedVideo.attach`` (``UnitMedia.bind_video_sender``) as one
  coalesced keyframe.
* **Camera privacy and mute.** ``UnitDaemon.set_camera`` → ``UnitMedia.set_camera``
  closes every peer's video gate (no video leaves, and the encoder stops once no
  peer reads it); ``set_muted`` cuts the shared microphone at the source. The
  state machine (:mod:`appliance.wall.machine`) records both, unmutes at call end
  when ``call.mute_resets`` says so, and the room hears them as a ``state``
  message.
* **Quality tier and audio packet length.** After every change the daemon calls
  ``UnitMedia.apply_quality(participants, worst loss our peers report)``
  (``UnitDaemon._notify``). The video tier comes from
  :class:`~appliance.mesh.quality.QualityPolicy` (mesh size against
  ``quality.upload_kbps``, loss with hysteresis; only with ``quality.adaptive``)
  and the encoder switches at its next keyframe; the Opus packet length comes
  from :func:`~appliance.mesh.audio.auto_packet_ms` unless ``audio.packet_ms``
  fixes it.
* **What the room reads on the error screen.** ``UnitDaemon`` picks the sentence
  from :mod:`appliance.display.messages` (``room_full``, ``forbidden``, refused
  credentials); the server's own words stay in the log.

Dependencies: ``unit/`` may import ``display/``, ``controls/``, ``wall/``,
``mesh/`` and ``capture/``; none of them imports ``unit/``
(``tests/wall/test_layering.py`` checks every import).
"""
