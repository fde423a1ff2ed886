"""Fixtures for in-process peer-connection tests.

``loopback_ice`` makes aioice gather host candidates on 127.0.0.1 only, for this test
process, so two real RTCPeerConnections in one process connect over loopback (aioice
skips 127.0.0.1 by default), through :func:`appliance.mesh.ice.process_default`. ``new_pc`` makes peer connections closed at teardown; ``connect_pair`` runs a full offer/answer between two peers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest


@pytest.fixture
def loopback_ice():
    """Peer connections made during the test gather on 127.0.0.1: the unit's own loopback mode."""
    from appliance.mesh.ice import IcePolicy, process_default

    with process_default(IcePolicy(addresses=("127.0.0.1",))):
        yield


@pytest.fixture
async def new_pc(loopback_ice):
    """A factory of RTCPeerConnections (no ICE servers: never aiortc's public STUN), closed after."""
    from aiortc import RTCConfiguration, RTCPeerConnection

    made = []

    def make():
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        made.append(pc)
        return pc

    yield make
    for pc in made:
        await pc.close()


async def negotiate(offerer, answerer, before_answer: Callable[[object], None] | None = None) -> None:
    """Offer/answer (candidates are gathered into the SDP by aiortc), then wait for 'connected'."""
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    if before_answer is not None:
        before_answer(answerer)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)
    for _ in range(200):
        if offerer.connectionState == "connected" and answerer.connectionState == "connected":
            return
        if "failed" in (offerer.connectionState, answerer.connectionState):
            break
        await asyncio.sleep(0.05)
    raise AssertionError(f"peers did not connect: {offerer.connectionState}/{answerer.connectionState}")


@pytest.fixture
def connect_pair(loopback_ice) -> Callable[..., Awaitable[None]]:
    return negotiate
