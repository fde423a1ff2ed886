"""The video receiver's record of freezes: gaps between pictures the room would notice."""

from __future__ import annotations

import time

import av

from appliance.mesh.receive import FREEZE_S, VideoReceiver


def test_gaps_over_the_freeze_threshold_are_recorded_with_when_they_ended():
    rx = VideoReceiver(track=None, label="test")
    frame = av.VideoFrame(64, 48, "yuv420p")
    for _ in range(3):  # a steady stream: no freeze
        rx.accept(frame)
        time.sleep(0.02)
    assert list(rx.freezes) == []
    time.sleep(FREEZE_S + 0.1)
    rx.accept(frame)
    ended = time.monotonic()
    assert len(rx.freezes) == 1
    end, gap = rx.freezes[0]
    assert FREEZE_S + 0.1 <= gap < FREEZE_S + 1.0 and abs(end - ended) < 0.05
    assert rx.frames == 4
