"""The test pattern: stamps that survive low-bitrate H.264, scaling and RGB; content that moves."""

from __future__ import annotations

import fractions
import time

import av
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.capture.pattern import PatternSource, Stamp, read_stamp, sender_id, stamp_frame


def _blank(width: int, height: int) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(np.full((height, width, 3), 90, np.uint8), format="rgb24")


@settings(max_examples=60, deadline=None)
@given(
    sender=st.integers(0, 0xFFFF),
    counter=st.integers(0, 0xFFFFFFFF),
    ms=st.integers(0, 2**47),
    size=st.sampled_from([(320, 240), (640, 480), (1280, 720), (1920, 1080), (176, 144)]),
)
def test_stamp_round_trip(sender, counter, ms, size):
    stamp = Stamp(sender, counter, ms / 1000)
    frame = stamp_frame(_blank(*size), stamp)
    assert frame.format.name == "yuv420p"
    assert read_stamp(frame) == stamp


def test_no_stamp_reads_as_none_and_corruption_is_caught():
    assert read_stamp(_blank(320, 240)) is None
    frame = stamp_frame(_blank(320, 240), Stamp(7, 99, 1700000000.123))
    luma = frame.to_ndarray()[:240].copy()
    assert read_stamp(luma) == Stamp(7, 99, 1700000000.123)
    # flip one payload block: the CRC must reject it rather than return a wrong stamp
    u = 320 / 36
    y0, x0 = int(1.5 * u + u / 2), int((2 + 20) * u + u / 2)
    luma[y0 - 2 : y0 + 3, x0 - 2 : x0 + 3] = 255 - luma[y0, x0]
    assert read_stamp(luma) is None


async def test_stamps_survive_h264_at_250_kbps_and_rescaling():
    source = PatternSource(width=320, height=240, fps=30, sender=sender_id("unit-1"))
    await source.start()
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = 320, 240, "yuv420p"
    enc.time_base, enc.framerate, enc.bit_rate = fractions.Fraction(1, 90000), 30, 250_000
    enc.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline"}
    dec = av.CodecContext.create("h264", "r")
    sent, read, wrong, scaled_ok, size = [], 0, 0, 0, 0
    for _ in range(90):
        frame = await source.read()
        sent.append(read_stamp(frame))
        for packet in enc.encode(frame):
            size += packet.size
            for out in dec.decode(packet):
                stamp = read_stamp(out)
                if stamp is None:
                    continue
                read += 1
                wrong += stamp not in sent
                big = out.reformat(width=640, height=480, format="rgb24").to_ndarray()
                scaled_ok += read_stamp(big) == stamp
    await source.close()
    assert size * 8 / 3 < 400_000  # the encoder really ran at a low bitrate
    assert wrong == 0
    assert read >= 85
    assert scaled_ok >= 80
    assert [s.counter for s in sent] == list(range(90))


async def test_pattern_moves_is_paced_and_carries_wall_clock_time():
    source = PatternSource(width=640, height=480, fps=30, sender=3)
    await source.start()
    started = time.monotonic()
    frames = [await source.read() for _ in range(31)]
    elapsed = time.monotonic() - started
    await source.close()
    assert 0.8 < elapsed < 4.0  # 30 fps pacing; generous on a shared machine
    lumas = [f.to_ndarray()[:480].astype(np.int16) for f in frames]
    assert np.std(lumas[0]) > 25  # textured, not a flat field
    diffs = [np.mean(np.abs(a[60:] - b[60:])) for a, b in zip(lumas, lumas[1:])]
    assert min(diffs) > 3  # every frame changes
    stamps = [read_stamp(f) for f in frames]
    assert all(abs(s.capture_time - time.time()) < 5 for s in stamps)
    pts = [f.pts for f in frames]
    assert pts == sorted(pts) and frames[0].time_base == fractions.Fraction(1, 90000)


async def test_pattern_reconfigure_changes_size():
    source = PatternSource(width=320, height=240, fps=30)
    await source.start()
    assert (await source.read()).width == 320
    source.reconfigure(640, 480, 15)
    frame = await source.read()
    assert (frame.width, frame.height) == (640, 480)
    assert read_stamp(frame) is not None
    await source.close()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 300), min_size=1, max_size=3), st.integers(0, 2**32 - 1))
def test_arbitrary_arrays_never_crash_the_reader(shape, seed):
    noise = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    assert read_stamp(noise) is None


def test_non_numeric_input_reads_as_none():
    assert read_stamp(np.array([["a"] * 100] * 100)) is None
