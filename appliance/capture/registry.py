"""The adapter table: which class each config ``type`` names, and the factories that open one.

Every adapter is named by a ``"module:Class"`` string, the way gpiozero declares its pin
factories as entry points, and imported only when a config chooses it. So this module
imports no adapter — importing ``appliance`` never loads a Pi-only library or touches
``/dev`` — and the adapters depend on :mod:`appliance.capture.base` without the ports
depending on them. Only the composition root (:mod:`appliance.unit.media`) and the tools
that build units open sources through here.

The factories read a settings object (:mod:`appliance.capture.settings`, or anything with
the same attributes; ``None`` means every default) and return the adapter unstarted. An
unknown ``type`` is a :class:`~appliance.errors.ConfigError` naming the key and the allowed
values; an absent device surfaces later, from ``start()``, as a
:class:`~appliance.errors.DeviceError` naming its key.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from appliance.errors import ConfigError

if TYPE_CHECKING:
    from appliance.capture.base import AudioSink, AudioSource, EncodedVideoSource, VideoSource


@dataclass(frozen=True)
class Request:
    """What an adapter is opened from: the config section, and who the unit is."""

    settings: Any
    sender: int
    prefix: str  # the config section's name, for the keys errors name
    room: Any = None  # the unit's SimulatedRoom, shared by a ``room`` source and sink

    def shared_room(self) -> Any:
        """The room the composition root made, or a new one from the settings (a lone adapter)."""
        return self.room if self.room is not None else simulated_room(self.settings)

    def get(self, name: str, default: Any) -> Any:
        return getattr(self.settings, name, default) if self.settings is not None else default


@dataclass(frozen=True)
class Adapter:
    """One config ``type``: the class it names and the constructor keywords it takes."""

    target: str  # "module:Class", imported by load()
    options: Callable[[Request], dict[str, Any]]

    def load(self) -> type:
        return resolve(self.target)


def resolve(target: str) -> Any:
    """The object a ``"module:attr"`` string names, importing its module now."""
    module, sep, attr = target.partition(":")
    if not (module and sep and attr):
        raise ValueError(f"adapter target {target!r} is not of the form 'module:Class'")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _size(r: Request) -> dict[str, Any]:
    return {"width": r.get("width", 640), "height": r.get("height", 480), "fps": r.get("fps", 30)}


def _av_options(kind: str) -> Callable[[Request], dict[str, Any]]:
    def options(r: Request) -> dict[str, Any]:
        return {
            "kind": kind, "device": r.get("device", "") or "/dev/video0", **_size(r),
            "input_format": r.get("input_format", ""), "key": f"{r.prefix}.device",
        }

    return options


#: ``[video] type``: raw sources, and ``picamera``, which encodes in hardware (an
#: :class:`~appliance.capture.base.EncodedVideoSource`). ``sender`` is stamped into
#: test-pattern frames.
VIDEO_SOURCES: Mapping[str, Adapter] = MappingProxyType({
    "pattern": Adapter("appliance.capture.pattern:PatternSource", lambda r: {**_size(r), "sender": r.sender}),
    "v4l2": Adapter("appliance.capture.v4l2:AvVideoSource", _av_options("v4l2")),
    "file": Adapter("appliance.capture.v4l2:AvVideoSource", _av_options("file")),
    "picamera": Adapter("appliance.capture.picamera:PiCameraSource", lambda r: {**_size(r), "bitrate": r.get("bitrate", 500_000)}),
})

#: ``[audio] source``: the microphone.
AUDIO_SOURCES: Mapping[str, Adapter] = MappingProxyType({
    "synthetic": Adapter("appliance.capture.synthetic:SyntheticAudioSource", lambda r: {"sender": r.sender}),
    "alsa": Adapter(
        "appliance.capture.alsa:AlsaMicrophone",
        lambda r: {"device": r.get("input_device", "default"), "key": f"{r.prefix}.input_device"},
    ),
    "room": Adapter("appliance.capture.roomsim:RoomSource", lambda r: {"room": r.shared_room()}),
})

#: ``[audio] sink``: the speaker; ``null`` discards at the real rate.
AUDIO_SINKS: Mapping[str, Adapter] = MappingProxyType({
    "null": Adapter("appliance.capture.synthetic:NullAudioSink", lambda r: {"buffer_ms": r.get("buffer_ms", 60)}),
    "alsa": Adapter(
        "appliance.capture.alsa:AlsaSpeaker",
        lambda r: {
            "device": r.get("output_device", "default"), "key": f"{r.prefix}.output_device",
            "buffer_ms": r.get("buffer_ms", 60),
        },
    ),
    "room": Adapter("appliance.capture.roomsim:RoomSpeaker", lambda r: {"room": r.shared_room()}),
})


def _open(table: Mapping[str, Adapter], field: str, default: str, what: str, request: Request) -> Any:
    kind = request.get(field, default)
    adapter = table.get(kind)
    if adapter is None:
        raise ConfigError(None, f"{request.prefix}.{field}", f"unknown {what} {kind!r}; allowed: {', '.join(table)}")
    return adapter.load()(**adapter.options(request))


def open_video_source(settings: Any, *, sender: int = 0, prefix: str = "video") -> VideoSource | EncodedVideoSource:
    """Build the video source named by ``settings.type`` (default ``pattern``), not started."""
    return _open(VIDEO_SOURCES, "type", "pattern", "video source", Request(settings, sender, prefix))


def simulated_room(settings: Any, *, name: str = "unit") -> Any:
    """The one room a ``room`` microphone and speaker share, when ``settings`` names either
    (None otherwise): the composition root makes it and passes it to both openers."""
    if "room" not in (getattr(settings, "source", None), getattr(settings, "sink", None)):
        return None
    room_class = resolve("appliance.capture.roomsim:SimulatedRoom")
    return room_class(
        getattr(settings, "room", "small"), talker=getattr(settings, "talker", True),
        buffer_ms=getattr(settings, "buffer_ms", 60), name=name,
    )


def open_audio_source(settings: Any, *, sender: int = 0, prefix: str = "audio", room: Any = None) -> AudioSource:
    """Build the microphone named by ``settings.source`` (default ``synthetic``), not started.
    ``room`` is the simulated room a ``room`` source listens in (share it with the sink)."""
    return _open(AUDIO_SOURCES, "source", "synthetic", "audio source", Request(settings, sender, prefix, room))


def open_audio_sink(settings: Any, *, prefix: str = "audio", room: Any = None) -> AudioSink:
    """Build the speaker named by ``settings.sink`` (default ``null``), not started.
    ``room`` is the simulated room a ``room`` sink plays into (share it with the source)."""
    return _open(AUDIO_SINKS, "sink", "null", "audio sink", Request(settings, 0, prefix, room))
