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


def test_a_device_named_by_its_path_is_known_by_its_config_key() -> None:
    """Adapters name what they opened (/dev/video2, hw:1,0); the room needs to hear which part."""
    from appliance.errors import DeviceError

    assert for_error(DeviceError("/dev/video2", "video.device", "no such camera device")) == "Camera not found — call IT"
    assert for_error(DeviceError("hw:1,0", "audio.input_device", "no card")) == "Microphone not found — call IT"
    assert for_error(DeviceError("hw:2,0", "audio.output_device", "no card")) == "Speaker not found — call IT"


def test_every_network_failure_is_the_unreachable_sentence() -> None:
    """What a connect to an absent server raises is an OSError, not always a ConnectionError."""
    import aiohttp

    from appliance.unit.discovery import DiscoveryError

    assert for_error(OSError(113, "No route to host")) == UNREACHABLE
    assert for_error(DiscoveryError("no signaling server answered")) == UNREACHABLE
    refused = aiohttp.ClientConnectorError(aiohttp.client_reqrep.ConnectionKey("127.0.0.1", 9, False, True, None, None, None),
                                           ConnectionRefusedError(111, "Connect call failed"))
    assert for_error(refused) == UNREACHABLE
