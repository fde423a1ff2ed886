"""A fake picamera2 that honours its API: the one hardware edge that cannot exist off a Pi.

``Picamera2`` produces the test pattern on a thread of its own and encodes it with libx264
the way the VideoCore encoder does (SPS/PPS repeated, ``force_key_frame()`` honoured), so
each chunk reaches the adapter's ``Output.outputframe`` on a foreign thread, as on a Pi.
"""

from __future__ import annotations

import asyncio
import fractions
import threading
import time

import av

from appliance.capture.pattern import PatternSource


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
