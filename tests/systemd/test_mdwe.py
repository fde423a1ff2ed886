"""``MemoryDenyWriteExecute=yes`` in the units is safe for wallmesh's stack.

systemd's option forbids memory that is both writable and executable (and
making writable memory executable later). JIT compilers and some FFI
trampolines need exactly that and would crash under it. Linux 6.3+ offers the
same rule per process (``prctl(PR_SET_MDWE)``), so a child process switches it
on and then does what the daemon does: imports aiortc and PyAV, encodes H.264,
VP8 and Opus, hashes with argon2 (cffi), makes a TLS key (cryptography),
draws with pygame, calls back through ctypes and runs uvloop's event loop. A violation kills the child.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1

CHILD = textwrap.dedent(
    f"""
    import ctypes, fractions, os, sys
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) != 0:
        print("unsupported", ctypes.get_errno()); sys.exit(3)
    import mmap
    try:  # the rule is really on: writable+executable memory is refused
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        print("not enforced"); sys.exit(4)
    except PermissionError:
        pass
    import numpy as np, av
    from aiortc.codecs import get_encoder
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters
    frame = av.VideoFrame.from_ndarray(np.zeros((240, 320, 3), np.uint8), format="rgb24").reformat(format="yuv420p")
    frame.pts, frame.time_base = 0, fractions.Fraction(1, 90000)
    for mime in ("video/H264", "video/VP8"):
        packets, _ = get_encoder(RTCRtpCodecParameters(mimeType=mime, clockRate=90000)).encode(frame)
        assert packets, mime
    audio = av.AudioFrame.from_ndarray(np.zeros((1, 960 * 2), np.int16), format="s16", layout="stereo")
    audio.sample_rate, audio.pts, audio.time_base = 48000, 0, fractions.Fraction(1, 48000)
    opus = get_encoder(RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2))
    assert opus.encode(audio)[0]
    from argon2 import PasswordHasher
    PasswordHasher(memory_cost=1024, time_cost=1).hash("secret")
    from cryptography.hazmat.primitives.asymmetric import ec
    ec.generate_private_key(ec.SECP256R1())
    os.environ["SDL_VIDEODRIVER"] = "dummy"
    import pygame
    pygame.init(); screen = pygame.display.set_mode((64, 48)); screen.fill((1, 2, 3)); pygame.display.flip()
    callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda x: x + 1)
    assert callback(1) == 2
    import asyncio, uvloop  # the unit daemon's event loop
    async def tick():
        await asyncio.sleep(0.01)
        return 7
    assert uvloop.run(tick()) == 7
    print("ok")
    """
)


@pytest.mark.timeout(120)
def test_media_stack_runs_with_write_xor_execute() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=110)
    if done.returncode == 3 and done.stdout.startswith("unsupported"):
        pytest.skip(f"this kernel has no PR_SET_MDWE (Linux < 6.3): {done.stdout.strip()}")
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout + done.stderr[-2000:]
