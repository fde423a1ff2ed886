"""One contract for the encoded-video port, run against every encoder behind it.

:class:`~appliance.capture.x264.SoftwareH264` runs for real (libx264 on the test pattern);
:class:`~appliance.capture.picamera.PiCameraSource` runs against the fake picamera2 (the
hardware edge), which encodes on a thread of its own as the Pi's encoder does.
"""

from __future__ import annotations

import asyncio
import fractions
import threading
import time

import av
import pytest

from appliance.capture.base import EncodedVideoSource
from appliance.capture.pattern import PatternSource, read_stamp
from appliance.capture.picamera import PiCameraSource
from appliance.capture.x264 import SoftwareH264

from .fake_picamera2 import FakeH264Encoder, FakeOutput, FakePicamera2


def software() -> EncodedVideoSource:
    source = SoftwareH264(PatternSource(width=320, height=240, fps=30, sender=99), bitrate=250_000, keyframe_interval=60)
    source.set_active(True)
    return source


def hardware() -> EncodedVideoSource:
    return PiCameraSource(camera_class=FakePicamera2, encoder_class=FakeH264Encoder, output_class=FakeOutput,
                          width=320, height=240, fps=30, bitrate=250_000, keyframe_interval=60)


@pytest.fixture(params=[software, hardware], ids=["x264", "picamera"])
def encoder(request):
    return request.param()


class Packets:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[av.Packet] = asyncio.Queue()
        self.threads: set[int] = set()

    def __call__(self, packet: av.Packet) -> None:
        self.threads.add(threading.get_ident())
        self.queue.put_nowait(packet)

    async def next(self, timeout: float = 5) -> av.Packet:
        return await asyncio.wait_for(self.queue.get(), timeout)


async def test_access_units_reach_the_one_consumer_on_the_loop(encoder):
    out = Packets()
    await encoder.start(out)
    try:
        packets = [await out.next() for _ in range(12)]
    finally:
        await encoder.close()
    assert packets[0].is_keyframe and not any(p.is_keyframe for p in packets[1:])
    assert b"\x00\x00\x01\x67" in bytes(packets[0])[:64]  # SPS before the IDR
    assert out.threads == {threading.get_ident()}
    assert all(p.time_base == fractions.Fraction(1, 90000) for p in packets)
    pts = [p.pts for p in packets]
    assert pts == sorted(pts) and len(set(pts)) == len(pts)
    dec = av.CodecContext.create("h264", "r")
    frames = [f for p in packets for f in dec.decode(p)]
    assert len(frames) >= 10 and read_stamp(frames[-1]).sender == 99


async def test_a_requested_keyframe_comes_at_once(encoder):
    out = Packets()
    await encoder.start(out)
    try:
        for _ in range(10):
            await out.next()
        encoder.request_keyframe()
        waited = [await out.next() for _ in range(3)]  # the fake camera's thread may have one picture in hand
        assert any(p.is_keyframe for p in waited)
    finally:
        await encoder.close()


async def test_configure_changes_the_size_at_a_keyframe(encoder):
    out = Packets()
    await encoder.start(out)
    try:
        dec = av.CodecContext.create("h264", "r")
        for _ in range(3):
            dec.decode(await out.next())
        encoder.configure(640, 480, 30, 500_000)
        assert (encoder.width, encoder.height, encoder.bitrate) == (640, 480, 500_000)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            packet = await out.next()
            frames = dec.decode(packet)
            if frames and (frames[0].width, frames[0].height) == (640, 480):
                assert packet.is_keyframe
                break
        else:
            raise AssertionError("never switched to 640x480")
    finally:
        await encoder.close()


async def test_close_is_idempotent_stops_delivery_and_start_may_follow(encoder):
    out = Packets()
    await encoder.start(out)
    await out.next()
    await encoder.close()
    await encoder.close()
    await asyncio.wait_for(encoder.ended(), 1)  # a closed stream has ended, without error
    await asyncio.sleep(0.1)
    late = Packets()
    out.queue = late.queue
    await asyncio.sleep(0.2)
    assert late.queue.empty()
    again = Packets()
    await encoder.start(again)
    try:
        assert (await again.next()).is_keyframe
    finally:
        await encoder.close()


async def test_the_software_encoder_encodes_nothing_while_inactive():
    encoder = software()
    out = Packets()
    await encoder.start(out)
    try:
        await out.next()
        encoder.set_active(False)
        await asyncio.sleep(0.1)
        out.queue = asyncio.Queue()
        encoded = encoder.stats.frames_encoded
        read = encoder.stats.frames_in
        await asyncio.sleep(0.3)
        assert out.queue.empty() and encoder.stats.frames_encoded == encoded
        assert encoder.stats.frames_in > read  # the camera keeps running (the self-view stays live)
        encoder.set_active(True)
        await out.next()
    finally:
        await encoder.close()


async def test_the_software_encoder_ends_when_its_camera_fails():
    from appliance.errors import DeviceError

    class DyingCamera(PatternSource):
        frames = 0

        async def read(self) -> av.VideoFrame:
            self.frames += 1
            if self.frames > 5:
                raise DeviceError("/dev/video0", "video.device", "capture stopped: unplugged")
            return await super().read()

    encoder = SoftwareH264(DyingCamera(width=320, height=240))
    encoder.set_active(True)
    await encoder.start(Packets())
    with pytest.raises(DeviceError, match="unplugged"):
        await asyncio.wait_for(encoder.ended(), 5)
    await encoder.close()
