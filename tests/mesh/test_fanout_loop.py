"""The shared encoder never blocks the event loop: small pictures are encoded on it (cheaper
than a hand-off), big or costly ones on the encoder's own thread."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from appliance.capture.pattern import PatternSource
from appliance.capture import x264
from appliance.mesh import fanout
from appliance.mesh.quality import tier_named


@pytest.fixture
def encodes(monkeypatch) -> list[tuple[int, int]]:
    """(picture width, thread id) of every encode the shared encoder does in the test."""
    seen: list[tuple[int, int]] = []
    original = x264.X264Encoder.encode

    def spy(self, frame, keyframe):
        seen.append((self.width, threading.get_ident()))
        return original(self, frame, keyframe)

    monkeypatch.setattr(x264.X264Encoder, "encode", spy)
    return seen


async def small_video(frames: int, **options) -> None:
    """Run a 320×240 shared encoder for one peer until ``frames`` packets came out."""
    video = fanout.SharedVideo(PatternSource(width=320, height=240), width=320, height=240, bitrate=250_000, **options)
    await video.start()
    track = video.track()
    try:
        for _ in range(frames):
            await asyncio.wait_for(track.recv(), 2)
    finally:
        track.stop()
        await video.close()


async def test_big_pictures_are_encoded_off_the_loop_and_no_callback_is_slow(encodes, caplog):
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = 0.3  # generous: the machine is shared; a real block (an encode, a 1080p texture build) is caught
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
        threads = {width: {t for w, t in encodes if w == width} for width, _ in encodes}
        assert threads[640] == {threading.get_ident()}  # small: on the loop
        assert threads[1920] and threading.get_ident() not in threads[1920]
        slow = [r.getMessage() for r in caplog.records if "Executing" in r.getMessage()]
        assert not slow, slow
    finally:
        for task in tasks:
            task.cancel()
        await video.close()
        loop.set_debug(False)


async def test_a_small_picture_that_encodes_slowly_moves_off_the_loop(encodes, monkeypatch):
    monkeypatch.setattr(x264, "INLINE_ENCODE_MS", 0.0)  # every encode is "too slow" for the loop
    await small_video(14)
    seen = [t for _, t in encodes]
    assert set(seen[:10]) == {threading.get_ident()}  # on the loop while its cost is measured
    assert seen[-1] != threading.get_ident()  # then handed to the encoder thread for good


def test_loop_budget_waits_for_a_fair_sample_then_follows_the_cost():
    from appliance.mesh.budget import LoopBudget

    budget = LoopBudget(1.0, warmup=3)

    def spend(ms):
        import time

        budget.start()
        end = time.thread_time() + ms / 1000
        while time.thread_time() < end:
            pass
        return budget.stop()

    assert not spend(8.0)  # one costly call (a keyframe) is no verdict
    assert not spend(0.1)
    assert spend(0.1)  # mean of the first three: ~2.7 ms, over budget
    cheap = LoopBudget(1.0, warmup=3)
    budget = cheap
    assert [spend(0.1) for _ in range(5)] == [False] * 5
    assert cheap.ms is not None and cheap.ms < 1.0


async def test_a_configured_multithreaded_encoder_never_runs_on_the_loop(encodes):
    # the loop thread's CPU clock would not see x264's helper threads: no inline verdict possible
    await small_video(3, threads=2)
    assert encodes and threading.get_ident() not in {t for _, t in encodes}
