"""Config sections for the unit's media devices (``[video]`` and ``[audio]`` in unit.toml).

The unit's config schema embeds these with ``section(VideoSettings)`` /
``section(AudioSettings)``; the factories in :mod:`appliance.capture.registry` read them, and
its adapter tables are the allowed ``type``/``source``/``sink`` values.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.audio.processing import BINDINGS, DEFAULT_BINDING
from appliance.audio.room import ROOMS
from appliance.capture.registry import AUDIO_SINKS, AUDIO_SOURCES, VIDEO_SOURCES
from appliance.config import setting


@dataclass(frozen=True)
class VideoSettings:
    type: str = setting(
        "pattern",
        help="camera: 'pattern' (test pattern), 'v4l2' (webcam), 'file' (a video file), 'picamera' (Pi camera)",
        choices=tuple(VIDEO_SOURCES),
    )
    device: str = setting("", help="V4L2 device (default /dev/video0) or the video file's path")
    width: int = setting(640, help="capture width in pixels", min=160, max=1920)
    height: int = setting(480, help="capture height in pixels", min=120, max=1080)
    fps: int = setting(30, help="frames per second", min=1, max=60)
    input_format: str = setting(
        "", help="V4L2 pixel format to ask the webcam for, e.g. 'mjpeg' (most USB webcams need it for 30 fps); empty: the driver's default"
    )
    bitrate: int = setting(500_000, help="initial encoder bitrate in bit/s", min=100_000, max=8_000_000)


@dataclass(frozen=True)
class AudioSettings:
    source: str = setting(
        "synthetic", help="microphone: 'synthetic' (a test tone), 'alsa', or 'room' (the room simulator)", choices=tuple(AUDIO_SOURCES)
    )
    input_device: str = setting("default", help="ALSA capture device, e.g. 'default' or 'hw:1,0'")
    sink: str = setting(
        "null", help="speaker: 'null' (discard), 'alsa', or 'room' (plays into the room simulator)", choices=tuple(AUDIO_SINKS)
    )
    output_device: str = setting("default", help="ALSA playback device, e.g. 'default' or 'hw:0,0'")
    buffer_ms: int = setting(60, help="speaker buffer; older audio is dropped beyond it", min=20, max=500)
    packet_ms: int = setting(
        0,
        help=(
            "Opus packet length sent to peers, ms: 10, 20, 40 or 60 (longer packets cost less CPU per peer and add"
            " delay), or 0 to follow the mesh size: 20 up to 3 peers, 40 from 4 on (back to 20 at 2)"
        ),
        choices=(0, 10, 20, 40, 60),
    )
    processing: str = setting(
        "webrtc",
        help=(
            "microphone processing: 'webrtc' (echo cancellation, noise suppression, gain in the unit), 'off', or"
            " 'device' (a USB speakerphone that cancels echo itself: the unit does not process at all)"
        ),
        choices=("webrtc", "off", "device"),
    )
    binding: str = setting(
        DEFAULT_BINDING,
        help="which WebRTC audio-processing library: 'webrtc' (pywebrtc-audio) or 'livekit'",
        choices=tuple(b for b in BINDINGS if b != "off"),
    )
    device_delay_ms: int = setting(
        0,
        help=(
            "speaker-to-microphone latency of the devices not in the sink's reported delay, ms; the reference is"
            " read this much (less 20 ms) earlier. 0: let the canceller's delay estimator find it (docs/room-audio.md)"
        ),
        min=0,
        max=500,
    )
    room: str = setting(
        "small", help="simulated room of a 'room' source/sink (docs/room-audio.md)", choices=tuple(ROOMS)
    )
    talker: bool = setting(True, help="a 'room' microphone also hears a near-end talker (speech with pauses)")
