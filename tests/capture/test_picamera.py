"""The Pi camera adapter, against a fake picamera2 that honours its API (the hardware edge)."""

from __future__ import annotations

import asyncio
import fractions
import threading
import time

import av
import pytest

from appliance.capture.pattern import PatternSource, read_stamp
from appliance.capture.picamera import PiCameraSource
from appliance.errors import DeviceError
from appliance.mesh.fanout import SharedVideo


class FakeOutput:
    """picamera2.outputs.Output: encoders call outputframe(frame, keyframe, timestamp, packet, audio)."""

    def __init__(self, pts=None):
        self.recording = False

    def start(self):
        self.recording = True

    def stop(self):
        self.recording = False


class FakeH264Encoder:
    """picamera2.encoders.H264Encoder's constructor and force_key_frame(); encodes with libx264."""

    PROFILES = ("baseline", "constrained baseline", "main", "high")
    made: list[FakeH264Encoder] = []

    def __init__(self, bitrate=None, repeat=True, iperiod=None, framerate=None, enable_sps_framerate=False, qp=None, profile=None):
        if profile is not None and profile.lower() not in self.PROFILES:
            raise RuntimeError("Profile " + profile + " not recognised")
        self.bitrate, self.repeat, self.iperiod, self.framerate, self.profile = bitrate, repeat, iperiod, framerate, profile
        self.forced = 0
        self._force = threading.Event()
        FakeH264Encoder.made.append(self)

    def force_key_frame(self):
        self.forced += 1
        self._force.set()


class FakePicamera2:
    """The slice of Picamera2 the adapter uses; frames come from the test pattern on a thread."""

    def __init__(self, camera_num=0):
        self.config = None
        self.closed = False
        self._stop = threading.Event()
        self._thread = None

    def create_video_configuration(self, main=None, controls=None, **kw):
        return {"main": dict(main or {}), "controls": dict(controls or {})}

    def configure(self, config):
        self.config = config

    def start_recording(self, encoder, output, **kw):
        assert self.config is not None, "configure() first"
        output.start()
        self._thread = threading.Thread(target=self._run, args=(encoder, output), daemon=True)
        self._thread.start()

    def _run(self, encoder, output):
        width, height = self.config["main"]["size"]
        fps = self.config["controls"]["FrameRate"]
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
        ctx.time_base, ctx.framerate, ctx.bit_rate = fractions.Fraction(1, 1_000_000), fps, encoder.bitrate
        ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline",
                       "forced-idr": "1", "x264-params": f"repeat-headers=1:keyint={encoder.iperiod}"}
        pattern = PatternSource(width=width, height=height, fps=fps, sender=99)
        loop = asyncio.new_event_loop()
        try:
            while not self._stop.is_set():
                frame = loop.run_until_complete(pattern.read())
                micros = time.monotonic_ns() // 1000
                frame.pts, frame.time_base = micros, fractions.Fraction(1, 1_000_000)
                if encoder._force.is_set():
                    encoder._force.clear()
                    frame.pict_type = av.video.frame.PictureType.I
                for packet in ctx.encode(frame):
                    output.outputframe(bytes(packet), packet.is_keyframe, micros)
        finally:
            loop.close()

    def stop_recording(self):
        self._stop.set()
        if self._thread:
            self._thread.join(2)

    def close(self):
        self.closed = True


def _source(**kw):
    return PiCameraSource(camera_class=FakePicamera2, encoder_class=FakeH264Encoder, output_class=FakeOutput, **kw)


async def test_encoder_is_set_up_for_webrtc_and_chunks_reach_the_loop():
    source = _source(width=320, height=240, fps=30, bitrate=250_000)
    await source.start()
    packets = [await asyncio.wait_for(source.read(), 5) for _ in range(10)]
    encoder = FakeH264Encoder.made[-1]
    assert encoder.repeat is True and encoder.profile == "constrained baseline" and encoder.iperiod == 150
    assert packets[0].is_keyframe
    assert all(p.time_base == fractions.Fraction(1, 90000) for p in packets)
    dec = av.CodecContext.create("h264", "r")
    decoded = [f for p in packets for f in dec.decode(p)]
    assert decoded and read_stamp(decoded[-1]).sender == 99
    camera = source._camera
    await source.close()
    await source.close()
    assert camera.closed


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
        assert encoder.forced == forced + 1  # coalesced
    finally:
        await video.close()


async def test_reconfigure_restarts_the_camera_at_the_new_size():
    source = _source(width=320, height=240, fps=30, bitrate=250_000)
    await source.start()
    await asyncio.wait_for(source.read(), 5)
    source.reconfigure(640, 480, 30, 500_000)
    dec = av.CodecContext.create("h264", "r")
    deadline = time.monotonic() + 5
    size, synced = None, False
    while time.monotonic() < deadline and size != (640, 480):
        packet = await asyncio.wait_for(source.read(), 5)
        synced = synced or packet.is_keyframe  # a fresh decoder starts at an IDR
        for frame in dec.decode(packet) if synced else []:
            size = (frame.width, frame.height)
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
    await source.start()
    await asyncio.wait_for(source.read(), 5)
    source.reconfigure(640, 480, 30, 500_000)
    await asyncio.sleep(0)
    source.reconfigure(480, 360, 30, 400_000)  # the quality policy changed its mind mid-restart
    dec = av.CodecContext.create("h264", "r")
    deadline = time.monotonic() + 10
    size, synced = None, False
    while time.monotonic() < deadline and size != (480, 360):
        packet = await asyncio.wait_for(source.read(), 5)
        synced = synced or packet.is_keyframe
        for frame in dec.decode(packet) if synced else []:
            size = (frame.width, frame.height)
    await source.close()
    assert size == (480, 360)
    assert CountingCamera.most == 1 and CountingCamera.live == 0


async def test_a_camera_that_will_not_restart_fails_read():
    class FragileCamera(FakePicamera2):
        opened = 0

        def configure(self, config):
            FragileCamera.opened += 1
            if FragileCamera.opened > 1:
                raise RuntimeError("Failed to configure camera")
            super().configure(config)

    source = PiCameraSource(camera_class=FragileCamera, encoder_class=FakeH264Encoder, output_class=FakeOutput, width=320, height=240)
    await source.start()
    await asyncio.wait_for(source.read(), 5)
    source.reconfigure(640, 480, 30, 500_000)
    with pytest.raises(DeviceError) as err:
        for _ in range(200):
            await asyncio.wait_for(source.read(), 5)
    assert err.value.key == "video.type" and "640x480" in str(err.value)
    await source.close()


async def test_an_older_picamera2_without_profile_still_records():
    class OldH264Encoder(FakeH264Encoder):
        def __init__(self, bitrate, repeat=False, iperiod=None):  # picamera2 0.3.12's signature
            super().__init__(bitrate=bitrate, repeat=repeat, iperiod=iperiod)

    source = PiCameraSource(camera_class=FakePicamera2, encoder_class=OldH264Encoder, output_class=FakeOutput, width=320, height=240)
    await source.start()
    try:
        assert (await asyncio.wait_for(source.read(), 5)).is_keyframe
        assert FakeH264Encoder.made[-1].repeat is True
    finally:
        await source.close()


async def test_missing_picamera2_names_the_key():
    from appliance.errors import DeviceError

    try:
        import picamera2  # noqa: F401
    except ImportError:
        with pytest.raises(DeviceError, match="video.type"):
            await PiCameraSource().start()
    else:
        pytest.skip("picamera2 is installed here; the absent-library path cannot be shown")


@pytest.mark.hardware
async def test_real_pi_camera_produces_keyframes():
    source = PiCameraSource(width=640, height=480, fps=30, bitrate=500_000)
    await source.start()
    try:
        first = await asyncio.wait_for(source.read(), 5)
        source.force_keyframe()
        packets = [await asyncio.wait_for(source.read(), 2) for _ in range(10)]
        assert first.is_keyframe or any(p.is_keyframe for p in packets)
    finally:
        await source.close()
