"""Error sentences a person in the room can act on."""

from __future__ import annotations

from appliance.display.messages import UNREACHABLE, for_code, for_error
from appliance.errors import AuthError, DeviceError, ProtocolError, StoreUnavailable


def test_devices():
    assert for_error(DeviceError("camera", "video.device", "/dev/video0 missing")) == "Camera not found — call IT"
    assert for_error(DeviceError("microphone", "audio.source", "no card")).startswith("Microphone")
    assert for_error(DeviceError("call button", "buttons.call", "pin busy")) == "Buttons not working — call IT"
    assert "call IT" in for_error(DeviceError("thermometer", "x", "y"))


def test_server_refusals_and_outages():
    assert for_error(ProtocolError("room_full", "room is full")).startswith("This room is full")
    assert for_error(AuthError("forbidden", "no")) == for_code("forbidden")
    assert for_error(ConnectionRefusedError()) == UNREACHABLE
    assert for_error(StoreUnavailable("x")) == UNREACHABLE
    assert for_code("weird") == for_code(None)
    assert "Traceback" not in for_error(RuntimeError("boom"))
