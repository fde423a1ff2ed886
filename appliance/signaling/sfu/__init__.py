"""Rooms beyond the mesh cap, through the site's Janus (``[sfu]`` in ``signal.toml``).

* :mod:`~appliance.signaling.sfu.janus` — a small client of Janus's HTTP API.
* :mod:`~appliance.signaling.sfu.broker` — ``SfuBroker``: each room's mode, its VideoRoom,
  and the relay of descriptions between clients and Janus under the reserved peer id
  :data:`appliance.protocol.SFU_PEER_ID`.
* :mod:`~appliance.signaling.sfu.policy` — when a room escalates and when it returns (pure).
* :mod:`~appliance.signaling.sfu.janusconf` — Janus's configuration as wallmesh writes it.
* :mod:`~appliance.signaling.sfu.lab` — a Janus in a network namespace of its own (tests, bench).

``docs/sfu.md`` describes the protocol additions and how a site runs it.
"""
