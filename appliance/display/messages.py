"""Sentences for the error screen: what happened, and what a person in the room can do.

People in a meeting room never see a log. The unit daemon turns what went wrong
(a device that did not open, a refusal from the signaling server, a server it
cannot reach) into one of these sentences before it enters the error state.
"""

from __future__ import annotations

from appliance.errors import AuthError, DeviceError, ProtocolError, WallmeshError

DEVICES = {
    "camera": "Camera not found — call IT",
    "video": "Camera not found — call IT",  # a device path (/dev/video0) or its key (video.device)
    "microphone": "Microphone not found — call IT",
    "input_device": "Microphone not found — call IT",
    "speaker": "Speaker not found — call IT",
    "output_device": "Speaker not found — call IT",
    "audio": "Sound device not found — call IT",
    "display": "Display problem — call IT",
    "gpio": "Buttons not working — call IT",
    "button": "Buttons not working — call IT",
    "led": "Status lights not working — call IT",
}

SERVER_CODES = {
    "room_full": "This room is full — try again when someone leaves",
    "forbidden": "This unit may not join this room — call IT",
    "unauthorized": "This unit is not signed in — call IT",
    "rate_limited": "Too many attempts — the unit tries again shortly",
}

UNREACHABLE = "Cannot reach the meeting server — check the network cable, then call IT"
FALLBACK = "Something went wrong — call IT"


def for_error(exc: BaseException) -> str:
    """The sentence to show for ``exc``."""
    if isinstance(exc, DeviceError):
        # adapters name the device by its path or ALSA name; the config key says what it is
        for where in (exc.device.lower(), exc.key.lower()):
            for word, sentence in DEVICES.items():
                if word in where:
                    return sentence
        return f"{exc.device.capitalize()} not working — call IT"
    if isinstance(exc, (ProtocolError, AuthError)):
        return for_code(exc.code)
    if isinstance(exc, OSError):  # refused, reset, no route, DNS, timed out, nobody answered mDNS
        return UNREACHABLE
    if isinstance(exc, WallmeshError):
        return FALLBACK
    return FALLBACK


def for_code(code: str | None) -> str:
    """The sentence for a signaling ``error`` code (wire protocol v1)."""
    return SERVER_CODES.get(code or "", FALLBACK)
