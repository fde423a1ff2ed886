"""The shared encoder never blocks the event loop: encoding runs on its own thread."""

from __future__ import annotations

import asyncio
import logging
import threading

from appliance.capture.pattern import PatternSource
from appliance.mesh import fanout
from appliance.mesh.quality import tier_named


async def test_encoding_happens_off_the_loop_and_no_callback_is_slow(monkeypatch, caplog):
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = 0.3  # generous: the machine is shared; a real block (an encode, a 1080p texture build) is caught
    threads: set[int] = set()
    original = fanout.X264Encoder.encode

    def spy(self, frame, keyframe):
        threads.add(threading.get_ident())
        return original(self, frame, keyframe)

    monkeypatch.setattr(fanout.X264Encoder, "encode", spy)
    video = fanout.SharedVideo(PatternSource(width=640, height=480), width=640, height=480, bitrate=500_000)
    await video.start()
    tracks = [video.track(), video.track()]

    async def drain(track):
        while True:
            await track.recv()

    tasks = [asyncio.create_task(drain(t)) for t in tracks]
    try:
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            await asyncio.sleep(1.0)
            video.reconfigure(tier_named("fullhd"))  # new encoder and a 1080p pattern texture
            await asyncio.sleep(2.0)
        assert video.width == 1920 and video.stats.frames_encoded > 20
        assert threads and threading.get_ident() not in threads
        slow = [r.getMessage() for r in caplog.records if "Executing" in r.getMessage()]
        assert not slow, slow
    finally:
        for task in tasks:
            task.cancel()
        await video.close()
        loop.set_debug(False)
