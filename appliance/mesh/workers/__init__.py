"""A unit's peer connections spread over worker processes, so it can use every core of a Pi.

With ``[media] workers`` above one, each remote participant's RTCPeerConnection — ICE,
DTLS, SRTP both ways, depacketizing, decoding — runs in one of that many worker processes
(:mod:`.process`) instead of on the unit's event loop; the unit keeps what must stay
single: the one encoder, the microphone and its Opus stream, the mixer's clock, the display,
signaling and the roster. Nothing is encoded twice and nothing is pickled per packet:

* the encoder's access units and the Opus packets go to each worker once, as records on a
  Unix socket (:mod:`.wire`), and are fanned out to its peers there;
* decoded pictures come back through shared memory (:mod:`.frames`), remote audio (decoded
  in the worker) as records to the unit's mixer;
* commands and state go as small control records, the figures twice a second.

:mod:`.pool` is the unit's side: the processes, restarted when one dies (its peers start
over with fresh offers, the others never notice), and :class:`~.pool.WorkerPeer`, which the
mesh, the wall and ``/status`` use like a :class:`~appliance.mesh.peer.Peer`. With one
worker the unit runs exactly as without any: its peers live on its own loop.
"""

from __future__ import annotations

import os


def worker_count(setting: int, cpus: int | None = None, max_peers: int = 5) -> int:
    """``[media] workers``: 0 means one per core but one (the encoder's, the mixer's), at least one;
    never more than a room has remote peers."""
    cpus = cpus or os.cpu_count() or 1
    wanted = setting if setting > 0 else cpus - 1
    return max(1, min(wanted, max_peers))
