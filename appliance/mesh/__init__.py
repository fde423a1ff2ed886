"""The unit's WebRTC full mesh: one connection per remote participant, one encoder for all of them.

Where things live:

* :mod:`~appliance.mesh.mesh` — ``Mesh``, the set of links in the current room: reacts to
  the signaling session (roster, ``peer-joined``/``peer-left``, relayed ``signal``\\ s) and
  to a housekeeping tick. The roster decisions are made here: the room cap, who offers
  (the joiner), re-keying a live link after the signaling server came back, retiring
  stale ones. Links come from a ``peer_factory`` and are used through ``MeshPeer``.
* :mod:`~appliance.mesh.peer` — ``Peer``, one ``RTCPeerConnection`` with one remote:
  negotiation (perfect negotiation, rebuilt on failure), its receivers, its figures.
* :mod:`~appliance.mesh.fanout` — ``SharedVideo``: what the unit's one H.264 encoder
  delivers (the ``EncodedVideoSource`` port of :mod:`appliance.capture.base`: libx264 in
  :mod:`appliance.capture.x264` or the Pi's hardware encoder in
  :mod:`appliance.capture.picamera`), fanned out to one ``FanoutTrack`` per peer.
* :mod:`~appliance.mesh.audio` — the microphone Opus-encoded once for every peer
  (``SharedAudio``), and the mix of every remote to the speaker (``AudioMixer``).
* :mod:`~appliance.mesh.receive` — receiving one remote: newest-only decoded video, audio
  to the mixer.
* :mod:`~appliance.mesh.quality` — the pure video-tier policy over mesh size, upload budget
  and loss.
* :mod:`~appliance.mesh.ice` — which host candidates a unit offers and accepts
  (``IcePolicy``); :mod:`~appliance.mesh.negotiation` — H.264 constrained baseline with
  every peer; :mod:`~appliance.mesh.stats` — per-peer figures from ``getStats()``;
  :mod:`~appliance.mesh.budget` — when work may run on the event loop.
* ``appliance.mesh.aiortc_hooks`` and ``appliance.mesh.aioice_hooks`` — the only modules
  that touch aiortc's or aioice's internals (the receive path's decoder queue, jitter
  buffer and bandwidth estimator, a sender's keyframe requests, host-address gathering).

Where the decisions are made:

* **Keyframe on join** — ``SharedVideo.track()`` asks for one for every new track, and
  ``SharedVideo`` coalesces requests (PLI/FIR included) into at most one IDR per
  ``min_keyframe_spacing``; the unit's gated track (:mod:`appliance.unit.media`) takes its
  track as soon as ICE completes, so the IDR is waiting when DTLS is up.
* **Camera privacy** — :mod:`appliance.unit.media` (``UnitMedia.set_camera``, the gated
  video track): with the camera off no peer holds a fan-out track, so nothing is sent
  and the software encoder encodes nothing.
* **Video tier** — :class:`~appliance.mesh.quality.QualityPolicy` picks it;
  ``UnitMedia.apply_quality`` (run on every change of the mesh) hands it to
  ``SharedVideo.reconfigure``, which applies it at the encoder's next packet.
* **Opus packet length** — :func:`~appliance.mesh.audio.auto_packet_ms` (40 ms from four
  remote peers on, back to 20 ms only at two or fewer), applied by
  ``UnitMedia.apply_quality`` when ``audio.packet_ms`` is automatic.
"""
