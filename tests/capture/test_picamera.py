"""The Pi camera adapter, against a fake picamera2 that honours its API (the hardware edge)."""

from __future__ import annotations

import asyncio
import fractions
import threading
import time

import av
import pytest

from appliance.capture.pattern import read_stamp
from appliance.capture.picamera import PiCameraSource
from appliance.errors import DeviceError
from appliance.mesh.fanout import SharedVideo

from .fake_picamera2 import FakeH264Encoder, FakeOutput, FakePicamera2


class Packets:
    """The port's consumer: every packet, and the thread it arrived on."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[av.Packet] = asyncio.Queue()
        self.threads: set[int] = set()

    def __call__(self, packet: av.Packet) -> None:
        self.threads.add(threading.get_ident())
        self.queue.put_nowait(packet)

    async def next(self, timeout: float = 5) -> av.Packet:
        return await asyncio.wait_for(self.queue.get(), timeout)


def _source(**kw):
    return PiCameraSource(camera_class=FakePicamera2, encoder_class=FakeH264Encoder, output_class=FakeOutput, **kw)


async def _until_size(source_packets: Packets, size: tuple[int, int], seconds: float) -> tuple[int, int] | None:
    dec = av.CodecContext.create("h264", "r")
    deadline = time.monotonic() + seconds
    seen, synced = None, False
    while time.monotonic() < deadline and seen != size:
        packet = await source_packets.next()
        synced = synced or packet.is_keyframe  # a fresh decoder starts at an IDR
        for frame in dec.decode(packet) if synced else []:
            seen = (frame.width, frame.height)
    return seen


async def test_encoder_is_set_up_for_webrtc_and_chunks_reach_the_loop():
    source = _source(width=320, height=240, fps=30, bitrate=250_000)
    out = Packets()
    await source.start(out)
    packets = [await out.next() for _ in range(10)]
    encoder = FakeH264Encoder.made[-1]
    assert encoder.repeat is True and encoder.profile == "constrained baseline" and encoder.iperiod == 150
    assert out.threads == {threading.get_ident()}  # handed from the encoder's thread to the loop
    assert packets[0].is_keyframe
    assert all(p.time_base == fractions.Fraction(1, 90000) for p in packets)
    dec = av.CodecContext.create("h264", "r")
    decoded = [f for p in packets for f in dec.decode(p)]
    assert decoded and read_stamp(decoded[-1]).sender == 99
    camera = source._camera
    await source.close()
    await source.close()
    assert camera.closed
    await asyncio.sleep(0.1)
    out.queue = asyncio.Queue()
    await asyncio.sleep(0.1)
    assert out.queue.empty()  # nothing reaches the consumer after close


async def test_shared_video_forces_hardware_keyframes_on_request():
    video = SharedVideo(_source(), width=320, height=240, fps=30, bitrate=250_000)
    await video.start()
    try:
        track = video.track()
        assert (await asyncio.wait_for(track.recv(), 5)).is_keyframe
        for _ in range(15):
            await track.recv()
        encoder = FakeH264Encoder.made[-1]
        forced = encoder.forced
        late = video.track()
        for _ in range(5):
            video.request_keyframe()
        assert (await asyncio.wait_for(late.recv(), 2)).is_keyframe
        await asyncio.sleep(0.3)  # past the keyframe spacing: the coalesced requests stay coalesced
        assert encoder.forced == forced + 1
    finally:
        await video.close()


async def test_configure_restarts_the_camera_at_the_new_size():
    source = _source(width=320, height=240, fps=30, bitrate=250_000)
    out = Packets()
    await source.start(out)
    await out.next()
    source.configure(640, 480, 30, 500_000)
    size = await _until_size(out, (640, 480), 5)
    await source.close()
    assert size == (640, 480)
    assert FakeH264Encoder.made[-1].bitrate == 500_000


async def test_settings_changed_during_a_restart_never_open_the_camera_twice():
    class CountingCamera(FakePicamera2):
        live = 0
        most = 0

        def start_recording(self, encoder, output, **kw):
            CountingCamera.live += 1
            CountingCamera.most = max(CountingCamera.most, CountingCamera.live)
            time.sleep(0.05)  # a real camera takes a while to start
            super().start_recording(encoder, output, **kw)

        def close(self):
            if not self.closed:
                CountingCamera.live -= 1
            super().close()

    source = PiCameraSource(camera_class=CountingCamera, encoder_class=FakeH264Encoder, output_class=FakeOutput, width=320, height=240)
    out = Packets()
    await source.start(out)
    await out.next()
    source.configure(640, 480, 30, 500_000)
    await asyncio.sleep(0)
    source.configure(480, 360, 30, 400_000)  # the quality policy changed its mind mid-restart
    size = await _until_size(out, (480, 360), 10)
    await source.close()
    assert size == (480, 360)
    assert CountingCamera.most == 1 and CountingCamera.live == 0


async def test_a_camera_that_will_not_restart_ends_the_stream_with_the_reason():
    class FragileCamera(FakePicamera2):
        opened = 0

        def configure(self, config):
            FragileCamera.opened += 1
            if FragileCamera.opened > 1:
                raise RuntimeError("Failed to configure camera")
            super().configure(config)

    source = PiCameraSource(camera_class=FragileCamera, encoder_class=FakeH264Encoder, output_class=FakeOutput, width=320, height=240)
    out = Packets()
    await source.start(out)
    await out.next()
    source.configure(640, 480, 30, 500_000)
    with pytest.raises(DeviceError) as err:
        await asyncio.wait_for(source.ended(), 5)
    assert err.value.key == "video.type" and "640x480" in str(err.value)
    await source.close()


async def test_shared_video_reports_a_camera_that_stopped():
    class FragileCamera(FakePicamera2):
        opened = 0

        def configure(self, config):
            FragileCamera.opened += 1
            if FragileCamera.opened > 1:
                raise RuntimeError("Failed to configure camera")
            super().configure(config)

    source = PiCameraSource(camera_class=FragileCamera, encoder_class=FakeH264Encoder, output_class=FakeOutput, width=320, height=240)
    video = SharedVideo(source, width=320, height=240, fps=30, bitrate=250_000)
    await video.start()
    try:
        track = video.track()
        await asyncio.wait_for(track.recv(), 5)
        video.reconfigure(type("Tier", (), {"width": 640, "height": 480, "bitrate": 500_000})())
        deadline = time.monotonic() + 5
        while video.state == "running" and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert video.state == "failed" and "640x480" in (video.error or "")
    finally:
        await video.close()


async def test_an_older_picamera2_without_profile_still_records():
    class OldH264Encoder(FakeH264Encoder):
        def __init__(self, bitrate, repeat=False, iperiod=None):  # picamera2 0.3.12's signature
            super().__init__(bitrate=bitrate, repeat=repeat, iperiod=iperiod)

    source = PiCameraSource(camera_class=FakePicamera2, encoder_class=OldH264Encoder, output_class=FakeOutput, width=320, height=240)
    out = Packets()
    await source.start(out)
    try:
        assert (await out.next()).is_keyframe
        assert FakeH264Encoder.made[-1].repeat is True
    finally:
        await source.close()


async def test_missing_picamera2_names_the_key():
    try:
        import picamera2  # noqa: F401
    except ImportError:
        with pytest.raises(DeviceError, match="video.type"):
            await PiCameraSource().start(Packets())
    else:
        pytest.skip("picamera2 is installed here; the absent-library path cannot be shown")


@pytest.mark.hardware
async def test_real_pi_camera_produces_keyframes():
    source = PiCameraSource(width=640, height=480, fps=30, bitrate=500_000)
    out = Packets()
    await source.start(out)
    try:
        first = await out.next()
        source.request_keyframe()
        packets = [await out.next(2) for _ in range(10)]
        assert first.is_keyframe or any(p.is_keyframe for p in packets)
    finally:
        await source.close()
