"""Peer connections complete their DTLS handshake where writable+executable memory is refused.

The unit runs with ``MemoryDenyWriteExecute=yes``; Linux 6.3+ gives a process the same
rule (``prctl(PR_SET_MDWE)``). A child process turns it on, installs the unit's DTLS hook
(:mod:`appliance.mesh.aiortc_hooks.dtls`), and connects two real peer connections over
loopback with a data channel; the handshake must complete and a message must arrive.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent(
    """
    import asyncio, ctypes, mmap, sys
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
        print("unsupported", ctypes.get_errno()); sys.exit(3)
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        print("not enforced"); sys.exit(4)
    except PermissionError:
        pass
    from aiortc import RTCConfiguration, RTCPeerConnection
    from appliance.mesh import aiortc_hooks
    from appliance.mesh.ice import IcePolicy, process_default
    assert aiortc_hooks.install_dtls_verify()

    async def main():
        a, b = (RTCPeerConnection(RTCConfiguration(iceServers=[])) for _ in range(2))
        got = asyncio.get_running_loop().create_future()
        b.on("datachannel", lambda ch: ch.on("message", lambda m: got.done() or got.set_result(m)))
        channel = a.createDataChannel("probe")
        channel.on("open", lambda: channel.send("through DTLS"))
        await a.setLocalDescription(await a.createOffer())
        await b.setRemoteDescription(a.localDescription)
        await b.setLocalDescription(await b.createAnswer())
        await a.setRemoteDescription(b.localDescription)
        try:
            print(await asyncio.wait_for(got, 30))
        finally:
            await a.close(); await b.close()

    with process_default(IcePolicy(addresses=("127.0.0.1",))):
        asyncio.run(main())
    """
)


@pytest.mark.timeout(120)
def test_a_dtls_handshake_needs_no_writable_executable_memory() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], check=False, capture_output=True, text=True, timeout=110)
    if done.returncode == 3 and done.stdout.startswith("unsupported"):
        pytest.skip(f"this kernel has no PR_SET_MDWE (Linux < 6.3): {done.stdout.strip()}")
    assert done.returncode == 0 and done.stdout.strip().endswith("through DTLS"), done.stdout + done.stderr[-2000:]
