"""Doctor checks for the unit's hardware, read from sysfs, procfs and /dev.

Camera: V4L2 devices (``/sys/class/video4linux``) and media controllers;
the Pi camera additionally needs libcamera's picamera2 from Raspberry Pi OS.
Audio: ALSA cards and PCM streams from ``/proc/asound``. Display: DRM
connectors in ``/sys/class/drm`` and their ``status``/``modes``. GPIO:
``/dev/gpiochip*`` and the configured pins. Temperature: thermal zones.
Throttling: the firmware's ``get_throttled`` bits (sysfs, else vcgencmd). Audio processing:
the configured echo-cancellation binding is loaded, as the unit would load it. Board: the
device tree's model; off a Raspberry Pi (a laptop, an emulated arm64 root) it names the
checks whose findings only the unit's own hardware can settle.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from appliance.fleet.doctor.findings import Context, Finding, read_text

#: the checks that look at the unit's own hardware (the report names them off a Pi)
HARDWARE_CHECKS = ("camera", "microphone", "speaker", "display", "gpio", "temperature", "throttling")


def board_model(ctx: Context) -> str:
    """The device tree's model string ("Raspberry Pi 4 Model B Rev 1.5"), "" where there is none."""
    for path in (ctx.sys_root / "firmware/devicetree/base/model", ctx.proc_root / "device-tree/model"):
        model = read_text(path).rstrip("\0").strip()
        if model:
            return model
    return ""


def check_board(ctx: Context) -> Iterator[Finding]:
    model, machine = board_model(ctx), platform.machine() or "unknown architecture"
    if "Raspberry Pi" in model:
        yield Finding("board", "ok", f"{model} ({machine})")
        return
    what = f"{model}, {machine}" if model else f"{machine}, no device-tree model"
    yield Finding("board", "warn", f"not a Raspberry Pi ({what}): {', '.join(HARDWARE_CHECKS)} need the unit's own "
                  "hardware, so what they report here says nothing about a unit",
                  "run `wallmesh doctor` on the wall unit itself for those")


def check_camera(ctx: Context) -> Iterator[Finding]:
    video = ctx.config.video
    if video.type in ("pattern", "file"):
        sends = "a test pattern" if video.type == "pattern" else "a video file"
        yield Finding("camera", "warn", f"no camera in use: video.type = {video.type!r} sends {sends}",
                      'set video.type = "picamera" (or "v4l2" for a USB webcam) in the unit config')
        return
    v4l = sorted((ctx.sys_root / "class/video4linux").glob("video*"))
    names = {p.name: read_text(p / "name") for p in v4l}
    if video.type == "v4l2":
        device = Path(video.device or "/dev/video0")
        node = ctx.dev_root / device.relative_to("/dev") if device.is_absolute() and device.parts[1:2] == ("dev",) else device
        if not node.exists():
            found = f" (found {', '.join(names)})" if names else " and no video devices at all"
            yield Finding("camera", "fail", f"no webcam: {device} does not exist{found}",
                          "plug in the USB webcam, or set video.device to one of the /dev/video* devices")
        elif not os.access(node, os.R_OK | os.W_OK):
            yield Finding("camera", "fail", f"{device} exists but this user may not open it",
                          "run as the wallmesh user (member of the video group) or add the user to group video")
        else:
            yield Finding("camera", "ok", f"webcam {device} ({names.get(device.name, 'unnamed')})")
        return
    # picamera: libcamera finds the sensor through the media controller
    media = sorted(ctx.dev_root.glob("media*"))
    if not media and not v4l:
        yield Finding("camera", "fail", "no camera found: no /dev/media* and no video devices",
                      "check the camera ribbon cable (contacts facing the right way, latch closed) "
                      "and camera_auto_detect=1 in config.txt, then reboot")
    elif not media:
        yield Finding("camera", "fail", f"video devices ({', '.join(sorted(names.values()) or names)}) but no media controller for the Pi camera",
                      'if this is a USB webcam set video.type = "v4l2"; otherwise check the camera cable and camera_auto_detect=1')
    else:
        yield Finding("camera", "ok", f"{len(media)} media controller(s), video devices: {', '.join(sorted(set(names.values()))) or 'none named'}")
    if importlib.util.find_spec("picamera2") is None:
        yield Finding("camera", "fail", "picamera2 is not installed (it comes from Raspberry Pi OS, not PyPI)",
                      "apt install python3-picamera2, and create the virtualenv with --system-site-packages")


def _alsa_cards(ctx: Context) -> dict[int, str]:
    """ALSA card number -> id, from /proc/asound/cards."""
    cards: dict[int, str] = {}
    for line in read_text(ctx.proc_root / "asound/cards").splitlines():
        m = re.match(r"\s*(\d+)\s+\[(\S+)\s*\]", line)
        if m:
            cards[int(m.group(1))] = m.group(2)
    return cards


def _alsa_target(device: str, cards: dict[int, str]) -> tuple[int | None, int]:
    """(card number, pcm device) for hw:/plughw: names; card None when the name does not say."""
    m = re.match(r"^(?:plug)?hw:(?:CARD=)?([^,]+)(?:,(?:DEV=)?(\d+))?$", device)
    if not m:
        return None, 0
    card, dev = m.group(1), int(m.group(2) or 0)
    if card.isdigit():
        return int(card), dev
    for number, ident in cards.items():
        if ident == card:
            return number, dev
    return -1, dev


def _check_pcm(ctx: Context, check: str, device: str, stream: str) -> Iterator[Finding]:
    cards = _alsa_cards(ctx)
    what = "capture" if stream == "c" else "playback"
    if not cards:
        yield Finding(check, "fail", "no sound cards at all (/proc/asound/cards is empty)",
                      "plug in the USB microphone/speaker; for HDMI audio keep dtoverlay=vc4-kms-v3d in config.txt")
        return
    card, dev = _alsa_target(device, cards)
    listing = ", ".join(f"{n}:{i}" for n, i in sorted(cards.items()))
    if card is None:
        yield Finding(check, "ok", f"ALSA device {device!r} for {what}; cards present: {listing}")
        return
    if card == -1 or card not in cards:
        key, tool = ("input", "arecord") if stream == "c" else ("output", "aplay")
        yield Finding(check, "fail", f"ALSA device {device!r} names a card that is not there (cards: {listing})",
                      f"set audio.{key}_device to one of the cards above, e.g. 'hw:CARD=<id>,DEV=0' (see `{tool} -l`)")
        return
    if not (ctx.proc_root / f"asound/card{card}/pcm{dev}{stream}").exists():
        yield Finding(check, "fail", f"card {card} ({cards[card]}) has no {what} device {dev}",
                      f"pick a card that can {'record' if stream == 'c' else 'play'} (see `{'arecord' if stream == 'c' else 'aplay'} -l`)")
        return
    yield Finding(check, "ok", f"ALSA {what} on card {card} ({cards[card]}), device {dev}")


def check_microphone(ctx: Context) -> Iterator[Finding]:
    audio = ctx.config.audio
    if audio.source != "alsa":
        yield Finding("microphone", "warn", f"no microphone in use: audio.source = {audio.source!r}", 'set audio.source = "alsa"')
        return
    yield from _check_pcm(ctx, "microphone", audio.input_device, "c")


def check_speaker(ctx: Context) -> Iterator[Finding]:
    audio = ctx.config.audio
    if audio.sink != "alsa":
        yield Finding("speaker", "warn", f"sound is discarded: audio.sink = {audio.sink!r}", 'set audio.sink = "alsa"')
        return
    yield from _check_pcm(ctx, "speaker", audio.output_device, "p")


def check_audio_processing(ctx: Context) -> Iterator[Finding]:
    """Load the configured echo-cancellation binding the way the unit does, and make one processor."""
    audio = ctx.config.audio
    mode = getattr(audio, "processing", "webrtc")
    if mode == "device":
        yield Finding("audio processing", "ok", "left to the audio device (audio.processing = 'device': a speakerphone that cancels its own echo)")
        return
    if mode == "off":
        yield Finding("audio processing", "warn", "audio.processing = 'off': remote participants hear themselves through this unit's speaker",
                      'set audio.processing = "webrtc" (or "device" for a USB speakerphone with its own echo cancellation)')
        return
    from appliance.audio.processing import ProcessingUnavailable, load_processor

    binding = getattr(audio, "binding", "webrtc")
    try:
        processor = load_processor(binding)
    except ProcessingUnavailable as exc:
        other = "livekit" if binding == "webrtc" else "webrtc"
        package = "pywebrtc-audio" if binding == "webrtc" else "livekit"
        yield Finding("audio processing", "fail", f"{exc}; the unit runs its calls without echo cancellation",
                      f"install {package} in /opt/wallmesh (pip install {package}), or set audio.binding = {other!r}")
        return
    yield Finding("audio processing", "ok", f"echo cancellation, noise suppression and gain by binding {processor.name!r}")


def check_display(ctx: Context) -> Iterator[Finding]:
    backend = getattr(ctx.config.display, "backend", "kmsdrm")
    if backend != "kmsdrm":
        yield Finding("display", "warn", f"display.backend = {backend!r}: not drawing on the HDMI screen", 'set display.backend = "kmsdrm"')
        return
    drm = ctx.sys_root / "class/drm"
    connectors = sorted(p for p in drm.glob("card*-*") if (p / "status").exists())
    if not connectors:
        yield Finding("display", "fail", "no KMS display driver: /sys/class/drm has no connectors",
                      "enable the KMS driver with dtoverlay=vc4-kms-v3d in config.txt and reboot")
        return
    connected = [p for p in connectors if read_text(p / "status") == "connected"]
    if not connected:
        names = ", ".join(p.name.split("-", 1)[1] for p in connectors)
        yield Finding("display", "fail", f"no screen connected (connectors: {names})",
                      "plug the HDMI cable into the port next to the power socket (HDMI0) and switch the screen on")
        return
    for p in connected:
        card = p.name.split("-", 1)[0]
        node = ctx.dev_root / "dri" / card
        modes = read_text(p / "modes").splitlines()
        if not node.exists():
            yield Finding("display", "fail", f"{p.name} is connected but /dev/dri/{card} is missing", "check that udev runs; reboot")
        elif not os.access(node, os.R_OK | os.W_OK):
            yield Finding("display", "fail", f"/dev/dri/{card} is not accessible to this user", "run as the wallmesh user (groups video, render)")
        else:
            yield Finding("display", "ok", f"{p.name.split('-', 1)[1]} connected" + (f", {modes[0]}" if modes else ""))


def sdl_video_drivers() -> list[str] | None:
    """The video drivers compiled into pygame's SDL (no SDL init, no device opened); None if unknown."""
    import ctypes
    import ctypes.util
    import glob

    spec = importlib.util.find_spec("pygame")
    candidates = []
    if spec and spec.origin:
        pkg = Path(spec.origin).parent
        for libs in ("pygame_ce.libs", "pygame.libs"):
            candidates += sorted(glob.glob(str(pkg.parent / libs / "libSDL2-*")))
    system = ctypes.util.find_library("SDL2")
    candidates += [system] if system else []
    for lib in candidates:
        try:
            sdl = ctypes.CDLL(lib)
            sdl.SDL_GetVideoDriver.restype = ctypes.c_char_p
            return [sdl.SDL_GetVideoDriver(i).decode() for i in range(sdl.SDL_GetNumVideoDrivers())]
        except (OSError, AttributeError):
            continue
    return None


def check_sdl(ctx: Context) -> Iterator[Finding]:
    if getattr(ctx.config.display, "backend", "kmsdrm") != "kmsdrm":
        return
    drivers = sdl_video_drivers()
    if drivers is None:
        yield Finding("display", "fail", "pygame's SDL library was not found", "install wallmesh's dependencies (pygame-ce) in /opt/wallmesh")
    elif not any(d.lower() == "kmsdrm" for d in drivers):
        yield Finding("display", "fail", f"pygame's SDL cannot draw without a desktop (drivers: {', '.join(drivers)})",
                      "install the pygame-ce wheel from PyPI, whose SDL includes KMSDRM")
    else:
        yield Finding("display", "ok", "SDL can draw on KMS (kmsdrm driver present)")


def _pins(ctx: Context) -> dict[str, str]:
    pins: dict[str, str] = {}
    for section in ("buttons", "leds"):
        conf = getattr(ctx.config, section, None)
        for name, value in vars(conf).items() if conf is not None else ():
            if isinstance(value, str) and re.fullmatch(r"(GPIO|BCM)?\d{1,2}|BOARD\d{1,2}", value):
                if section == "leds" and name.startswith("rgb_") != (getattr(conf, "kind", "") == "rgb"):
                    continue
                if section == "leds" and getattr(conf, "kind", "") == "none":
                    continue
                pins[f"{section}.{name}"] = value
    return pins


def check_gpio(ctx: Context) -> Iterator[Finding]:
    pins = _pins(ctx)
    if not pins:
        yield Finding("gpio", "skip", "no buttons or LEDs configured")
        return
    seen: dict[str, str] = {}
    for key, pin in pins.items():
        norm = re.sub(r"^(GPIO|BCM)", "", pin)
        if norm in seen:
            yield Finding("gpio", "fail", f"{key} and {seen[norm]} both use {pin}", "give every button and LED its own pin in the unit config")
        seen.setdefault(norm, key)
    if getattr(ctx.config.buttons, "pin_factory", "") == "mock":
        yield Finding("gpio", "warn", "buttons.pin_factory = 'mock': the buttons are simulated", 'set buttons.pin_factory = "auto"')
        return
    chips = sorted(ctx.dev_root.glob("gpiochip*"))
    if not chips:
        yield Finding("gpio", "fail", "no GPIO controller (/dev/gpiochip*): this is not a Raspberry Pi, or the kernel lacks GPIO",
                      "run on the Pi; the buttons and LEDs need its GPIO header")
        return
    if not any(os.access(c, os.R_OK | os.W_OK) for c in chips):
        yield Finding("gpio", "fail", "the GPIO controllers are not accessible to this user", "run as the wallmesh user (group gpio)")
        return
    yield Finding("gpio", "ok", f"{len(chips)} GPIO controller(s); pins in use: {', '.join(f'{k}={v}' for k, v in pins.items())}")


def check_temperature(ctx: Context) -> Iterator[Finding]:
    zones = sorted((ctx.sys_root / "class/thermal").glob("thermal_zone*"))
    readings = []
    for zone in zones:
        raw = read_text(zone / "temp")
        if raw.lstrip("-").isdigit():
            readings.append((read_text(zone / "type") or zone.name, int(raw) / 1000))
    if not readings:
        yield Finding("temperature", "skip", "no temperature sensor found (not a Raspberry Pi?)")
        return
    name, hottest = max(readings, key=lambda r: r[1])
    if hottest >= 80:
        yield Finding("temperature", "fail", f"{name} at {hottest:.0f} °C: the CPU slows down to protect itself",
                      "give the unit air: a heatsink or fan, and keep it out of the screen's hot exhaust")
    elif hottest >= 70:
        yield Finding("temperature", "warn", f"{name} at {hottest:.0f} °C, close to the 80 °C throttling point", "add a heatsink or fan")
    else:
        yield Finding("temperature", "ok", f"{name} at {hottest:.0f} °C")


THROTTLE_BITS = {
    0: "under-voltage now", 1: "ARM frequency capped now", 2: "throttled now", 3: "soft temperature limit now",
    16: "under-voltage has occurred", 17: "frequency capping has occurred", 18: "throttling has occurred",
    19: "soft temperature limit has occurred",
}


def decode_throttled(value: int) -> list[str]:
    return [text for bit, text in THROTTLE_BITS.items() if value & (1 << bit)]


def _throttled(ctx: Context) -> int | None:
    for path in (ctx.sys_root / "devices/platform/soc/soc:firmware/get_throttled",
                 ctx.sys_root / "devices/platform/soc/soc:firmware/raspberrypi-hwmon/get_throttled"):
        raw = read_text(path)
        if raw:
            try:
                return int(raw, 16)
            except ValueError:
                pass
    exe = shutil.which(ctx.vcgencmd) if ctx.vcgencmd else None
    if exe:
        try:
            out = subprocess.run([exe, "get_throttled"], check=False, capture_output=True, text=True, timeout=5).stdout
            m = re.search(r"throttled=(0x[0-9a-fA-F]+)", out)
            if m:
                return int(m.group(1), 16)
        except (OSError, subprocess.TimeoutExpired):
            pass
    return None


def check_throttling(ctx: Context) -> Iterator[Finding]:
    value = _throttled(ctx)
    if value is None:
        yield Finding("throttling", "skip", "no firmware throttling report (get_throttled; not a Raspberry Pi?)")
        return
    flags = decode_throttled(value)
    if value & 0b1111:
        yield Finding("throttling", "fail", f"0x{value:x}: {', '.join(flags)}",
                      "use the official 5 V power supply (5.1 V, 3 A for a Pi 4, 5 A for a Pi 5) and a short cable; cool the unit")
    elif value:
        yield Finding("throttling", "warn", f"0x{value:x}: {', '.join(flags)} since boot", "check the power supply and cooling")
    else:
        yield Finding("throttling", "ok", "no under-voltage or throttling since boot")
